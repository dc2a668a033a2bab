// The API-key lifecycle over real HTTP (DESIGN §3, §4): create, update (role, labels,
// expiry), rotate with a grace period, revoke; the rules' 4xx answers; and the audit trail.
import fs from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  api,
  createKey,
  newDataDir,
  readAdminKeyFile,
  type ServerProcess,
  startServerProcess,
} from "./helpers/server_process.js";

type Json = Record<string, unknown>;
let dataDir: string;
let server: ServerProcess;
let adminKey: string;

const keyIdOf = (key: string) => key.slice("stm_".length, "stm_".length + 12);

beforeAll(async () => {
  dataDir = newDataDir();
  server = await startServerProcess({ dataDir, shards: 1 });
  adminKey = readAdminKeyFile(dataDir);
});

afterAll(async () => {
  await server?.kill9();
  if (dataDir !== undefined) fs.rmSync(dataDir, { recursive: true, force: true });
});

const admin = () => api(server.baseUrl, adminKey);
const assertWith = (key: string, value: number) =>
  api(server.baseUrl, key).request("POST", "/v1/assert", {
    concept: "keys/x",
    value,
    confidence: 0.5,
  });

describe("API key lifecycle", () => {
  it("rotates a key: the new secret at once, the old one for the grace period, same principal", async () => {
    const v1 = await createKey(server.baseUrl, adminKey, "agent", "rotating");
    const id = keyIdOf(v1);
    const res = await admin().request("POST", "/v1/admin/api_keys/rotate", {
      key_id: id,
      grace_period_s: 3,
    });
    expect(res.status, res.text).toBe(200);
    const body = res.json as Json;
    expect(body).toMatchObject({ key_id: id, principal: "rotating", secret_version: 2 });
    const v2 = body.key as string;
    expect(keyIdOf(v2)).toBe(id);
    expect(body.previous_secret_expires_at as number).toBeGreaterThan(Date.now());
    const written = await assertWith(v2, 1);
    expect(written.status, written.text).toBe(201);
    expect((await assertWith(v1, 2)).status).toBe(201);
    // After the grace period the old secret is refused like any unknown key.
    await new Promise((r) =>
      setTimeout(r, Math.max(0, (body.previous_secret_expires_at as number) - Date.now() + 50)),
    );
    const old = await assertWith(v1, 3);
    expect(old.status).toBe(401);
    expect((old.json as { error: Json }).error.code).toBe("invalid_api_key");
    expect((await assertWith(v2, 4)).status).toBe(201);
    // The listing shows versions, never a secret or hash.
    const list = await admin().request("GET", "/v1/admin/api_keys");
    expect(list.text).not.toContain(v2.slice(-43));
    expect((list.json as { items: Json[] }).items.find((k) => k.key_id === id)).toMatchObject({
      secret_version: 2,
    });
  });

  it("updates role, labels and expiry; a reader may no longer write", async () => {
    const key = await createKey(server.baseUrl, adminKey, "agent", "demoted");
    const id = keyIdOf(key);
    const res = await admin().request("PATCH", "/v1/admin/api_keys", {
      key_id: id,
      role: "reader",
      labels: { team: "ops" },
    });
    expect(res.status, res.text).toBe(200);
    expect(res.json).toMatchObject({ key_id: id, role: "reader", labels: { team: "ops" } });
    const refused = await assertWith(key, 1);
    expect(refused.status).toBe(403);
    const expires = Date.now() + 60_000;
    const exp = await admin().request("PATCH", "/v1/admin/api_keys", {
      key_id: id,
      expires_at: expires,
    });
    expect(exp.json).toMatchObject({ role: "reader", expires_at: expires });
    const never = await admin().request("PATCH", "/v1/admin/api_keys", {
      key_id: id,
      expires_at: null,
    });
    expect(never.json).toMatchObject({ expires_at: null });
  });

  it("answers bad key changes with the documented 4xx", async () => {
    const key = await createKey(server.baseUrl, adminKey, "agent", "checked");
    const id = keyIdOf(key);
    const cases: Array<[string, string, unknown, number, string]> = [
      ["PATCH", "/v1/admin/api_keys", { key_id: id }, 422, "no_change"],
      ["PATCH", "/v1/admin/api_keys", { key_id: id, principal: "x" }, 422, "invalid_request"],
      ["PATCH", "/v1/admin/api_keys", { key_id: id, role: "root" }, 422, "invalid_request"],
      ["PATCH", "/v1/admin/api_keys", { key_id: id, expires_at: 1 }, 422, "invalid_expiry"],
      ["PATCH", "/v1/admin/api_keys", { key_id: "aaaaaaaaaaaa", role: "agent" }, 404, "not_found"],
      ["PATCH", "/v1/admin/api_keys", "{", 400, "malformed_json"],
      ["POST", "/v1/admin/api_keys/rotate", { key_id: "short" }, 422, "invalid_request"],
      [
        "POST",
        "/v1/admin/api_keys/rotate",
        { key_id: id, grace_period_s: -1 },
        422,
        "invalid_request",
      ],
      [
        "POST",
        "/v1/admin/api_keys/rotate",
        { key_id: id, grace_period_s: 2_592_001 },
        422,
        "invalid_request",
      ],
      ["POST", "/v1/admin/api_keys/rotate", { key_id: "aaaaaaaaaaaa" }, 404, "not_found"],
    ];
    for (const [method, path, body, status, code] of cases) {
      const res = await admin().request(method, path, body);
      expect(res.status, `${method} ${path} ${JSON.stringify(body)}: ${res.text}`).toBe(status);
      expect((res.json as { error: Json }).error.code).toBe(code);
    }
    // Only admins manage keys.
    const agent = await api(server.baseUrl, key).request("POST", "/v1/admin/api_keys/rotate", {
      key_id: id,
    });
    expect(agent.status).toBe(403);
    // The last active admin key keeps its role; a revoked key cannot be changed.
    const adminId = keyIdOf(adminKey);
    const demote = await admin().request("PATCH", "/v1/admin/api_keys", {
      key_id: adminId,
      role: "agent",
    });
    expect(demote.status).toBe(409);
    expect((demote.json as { error: Json }).error.code).toBe("last_admin_key");
    const noGrace = await admin().request("POST", "/v1/admin/api_keys/rotate", {
      key_id: adminId,
      grace_period_s: 0,
    });
    expect(noGrace.status).toBe(409);
    expect((noGrace.json as { error: Json }).error.code).toBe("last_admin_key");
    expect((await admin().request("DELETE", `/v1/admin/api_keys/${id}`)).status).toBe(200);
    for (const [method, path, body] of [
      ["PATCH", "/v1/admin/api_keys", { key_id: id, role: "reader" }],
      ["POST", "/v1/admin/api_keys/rotate", { key_id: id }],
    ] as const) {
      const res = await admin().request(method, path, body);
      expect(res.status).toBe(409);
      expect((res.json as { error: Json }).error.code).toBe("key_revoked");
    }
  });

  it("audits every change with who did it", async () => {
    const key = await createKey(server.baseUrl, adminKey, "agent", "audited");
    const id = keyIdOf(key);
    await admin().request("PATCH", "/v1/admin/api_keys", { key_id: id, role: "reader" });
    await admin().request("POST", "/v1/admin/api_keys/rotate", { key_id: id, grace_period_s: 0 });
    const res = await admin().request("GET", "/v1/audit?limit=1000");
    expect(res.status, res.text).toBe(200);
    const mine = (res.json as { items: Json[] }).items.filter((e) => e.target === id);
    expect(mine.map((e) => e.action)).toEqual(
      expect.arrayContaining(["api_key.create", "api_key.update", "api_key.rotate"]),
    );
    expect(mine.find((e) => e.action === "api_key.update")?.details).toEqual({
      role: { before: "agent", after: "reader" },
    });
    expect(mine.find((e) => e.action === "api_key.rotate")?.details).toEqual({
      grace_period_s: 0,
      secret_version: 2,
    });
    expect(res.text).not.toContain(key.slice(-43));
  });

  it("exports the age of the oldest active secret (APIKeyRotationDue)", async () => {
    const text = await (await fetch(`${server.baseUrl}/metrics`)).text();
    const m = /^stemedb_api_key_oldest_secret_age_seconds (\S+)$/m.exec(text);
    expect(m, "gauge missing").not.toBeNull();
    // The admin key was made when this file's server started: seconds, not days.
    const ageS = Number(m?.[1]);
    expect(ageS).toBeGreaterThan(0);
    expect(ageS).toBeLessThan(600);
  });

  it("rewrites admin.key when the key in it is rotated", async () => {
    const adminId = keyIdOf(adminKey);
    const res = await admin().request("POST", "/v1/admin/api_keys/rotate", {
      key_id: adminId,
      grace_period_s: 600,
    });
    expect(res.status, res.text).toBe(200);
    const rotated = (res.json as { key: string }).key;
    expect(readAdminKeyFile(dataDir)).toBe(rotated);
    expect(fs.statSync(`${dataDir}/admin.key`).mode & 0o777).toBe(0o600);
    const list = await api(server.baseUrl, rotated).request("GET", "/v1/admin/api_keys");
    expect(list.status).toBe(200);
    // Neither secret nor hash is ever listed.
    const item = (list.json as { items: Json[] }).items.find((k) => k.key_id === adminId);
    expect(item).toMatchObject({ secret_version: 2 });
    expect(item?.secret_set_at as number).toBeGreaterThan(Date.now() - 60_000);
    expect(list.text).not.toMatch(/[0-9a-f]{64}/);
    expect(list.text).not.toContain(rotated.slice(-43));
  });
});
