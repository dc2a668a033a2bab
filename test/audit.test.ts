// The audit log: hash chain, bounds, paging and verify in-process; over HTTP the entries the
// server writes (key changes, clock moves), the routes, and tamper detection after a stored
// entry is modified in the meta LMDB of a stopped server.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { open } from "lmdb";
import { afterAll, afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  type AuditEntry,
  AuditLog,
  auditHash,
  GENESIS_HASH,
  MAX_AUDIT_DETAILS_BYTES,
} from "../src/audit/audit_log.js";
import { TestClock } from "../src/domain/clock.js";
import { META_DIR, MetaStore } from "../src/store/meta_store.js";
import {
  api,
  createKey,
  newDataDir,
  readAdminKeyFile,
  type ServerProcess,
  startServerProcess,
} from "./helpers/server_process.js";

const T0 = 1_700_000_000_000;

describe("AuditLog (in-process)", () => {
  let dir: string;
  let meta: MetaStore;
  let clock: TestClock;
  let log: AuditLog;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "stemedb-"));
    meta = MetaStore.open(dir);
    clock = new TestClock({ nowMs: () => T0 });
    log = new AuditLog(meta.root, clock);
  });
  afterEach(async () => {
    await meta.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it("chains entries by hash, from the genesis hash, in call order", async () => {
    const [a, b] = await Promise.all([
      log.append({ actor: "admin", action: "api_key.create", target: "k1", outcome: "ok" }),
      log.append({ actor: "admin", action: "api_key.revoke", target: "k1", outcome: "ok" }),
    ]);
    clock.advance(5);
    const c = await log.append({
      actor: "system",
      action: "trust.decay",
      outcome: "ok",
      requestId: "r-1",
      details: { agents: 2 },
    });
    expect(a).toMatchObject({ seq: 1, prev_hash: GENESIS_HASH, time_ms: T0, request_id: null });
    expect(b?.prev_hash).toBe(a?.hash);
    expect(c).toMatchObject({
      seq: 3,
      prev_hash: b?.hash,
      time_ms: T0 + 5,
      details: { agents: 2 },
    });
    const { hash, ...body } = c;
    expect(auditHash(body)).toBe(hash);
    expect(hash).toMatch(/^[0-9a-f]{64}$/);
    expect(log.get(2)).toEqual(b);
    expect(log.get(4)).toBeNull();
    expect(await log.verify()).toEqual({
      ok: true,
      checked: 3,
      head_seq: 3,
      head_hash: hash,
      first_broken_seq: null,
      reason: null,
    });
    // The head survives a reopen, and the chain continues from it.
    await meta.close();
    meta = MetaStore.open(dir);
    log = new AuditLog(meta.root, clock);
    expect((await log.append({ actor: "a", action: "x", outcome: "ok" })).prev_hash).toBe(hash);
  });

  it("bounds details and refuses bad action or outcome names", async () => {
    const big = await log.append({
      actor: "admin",
      action: "x",
      outcome: "ok",
      details: { blob: "y".repeat(MAX_AUDIT_DETAILS_BYTES) },
    });
    expect(big.details).toEqual({ truncated: true, size_bytes: MAX_AUDIT_DETAILS_BYTES + 11 });
    // A value at a request body's depth bound (a gold standard's) sits one level deeper in an
    // entry than the bound allows: it is replaced, and the append still succeeds.
    let deep: unknown = 1;
    for (let i = 0; i < 31; i++) deep = [deep];
    const nested = await log.append({
      actor: "admin",
      action: "x",
      outcome: "ok",
      details: { value: deep },
    });
    expect(nested.details).toEqual({ invalid_details: true });
    await expect(log.append({ actor: "a", action: "Bad Action", outcome: "ok" })).rejects.toThrow(
      RangeError,
    );
    await expect(log.append({ actor: "a", action: "x", outcome: "OK!" })).rejects.toThrow(
      RangeError,
    );
    expect(log.head.seq).toBe(2);
  });

  it("pages by seq with filters", async () => {
    for (let i = 0; i < 7; i++) {
      await log.append({
        actor: i % 2 === 0 ? "admin" : "ops",
        action: `a${i % 3}`,
        outcome: "ok",
      });
    }
    const p1 = log.list({ afterSeq: 0, limit: 3 });
    expect(p1.items.map((e) => e.seq)).toEqual([1, 2, 3]);
    expect(p1.nextAfterSeq).toBe(3);
    const p2 = log.list({ afterSeq: 3, limit: 10 });
    expect(p2.items.map((e) => e.seq)).toEqual([4, 5, 6, 7]);
    expect(p2.nextAfterSeq).toBeNull();
    expect(
      log.list({ afterSeq: 0, limit: 10, action: "a0", actor: "admin" }).items.map((e) => e.seq),
    ).toEqual([1, 7]);
  });

  it("names the first entry whose content, link or place was changed", async () => {
    for (let i = 0; i < 4; i++) await log.append({ actor: "admin", action: "x", outcome: "ok" });
    const raw = meta.root.openDB<AuditEntry, number>({ name: "audit", encoding: "json" });
    const second = raw.get(2) as AuditEntry;
    await raw.put(2, { ...second, outcome: "denied" });
    expect(await log.verify()).toMatchObject({ ok: false, first_broken_seq: 2, checked: 1 });
    await raw.put(2, second);
    expect((await log.verify()).ok).toBe(true);
    // Re-hashing a changed entry does not help: the next entry's link breaks instead.
    const forged = { ...second, outcome: "denied" };
    const { hash: _old, ...body } = forged;
    await raw.put(2, { ...forged, hash: auditHash(body) });
    expect(await log.verify()).toMatchObject({ ok: false, first_broken_seq: 3 });
    await raw.put(2, second);
    await raw.remove(3);
    expect(await log.verify()).toMatchObject({ ok: false, first_broken_seq: 3 });
    await raw.remove(4);
    // Entries cut off the end are caught against the head this process wrote.
    expect(await log.verify()).toMatchObject({ ok: false, first_broken_seq: 3 });
  });
});

describe("audit over HTTP (real server)", () => {
  let dataDir: string;
  let server: ServerProcess;
  const env = { STEMEDB_TEST_CLOCK: "on" };
  afterAll(async () => {
    await server?.kill9();
    if (dataDir !== undefined) fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it("audits key changes and clock moves, serves the log, and detects a tampered entry", async () => {
    dataDir = newDataDir();
    server = await startServerProcess({ dataDir, env });
    const adminKey = readAdminKeyFile(dataDir);
    const admin = api(server.baseUrl, adminKey);
    const created = await admin.request("POST", "/v1/admin/api_keys", {
      role: "agent",
      principal: "agent-q",
    });
    expect(created.status).toBe(201);
    const keyId = (created.json as { key_id: string }).key_id;
    const revoked = await admin.request("DELETE", `/v1/admin/api_keys/${keyId}`);
    expect(revoked.status).toBe(200);
    const moved = await admin.request("POST", "/v1/admin/test/clock", { advance_ms: 60_000 });
    expect(moved.status).toBe(200);

    const all = await admin.request("GET", "/v1/audit");
    expect(all.status).toBe(200);
    const page = all.json as { items: AuditEntry[]; next_cursor: string | null; head_seq: number };
    const byAction = (a: string) => page.items.find((e) => e.action === a);
    expect(byAction("api_key.create")).toMatchObject({
      actor: "admin",
      target: keyId,
      outcome: "ok",
      request_id: created.headers.get("x-request-id"),
      details: { role: "agent", principal: "agent-q" },
    });
    expect(byAction("api_key.revoke")).toMatchObject({
      target: keyId,
      request_id: revoked.headers.get("x-request-id"),
    });
    expect(byAction("test_clock.advance")).toMatchObject({ details: { advance_ms: 60_000 } });
    expect(byAction("trust.decay")).toMatchObject({ actor: "system" }); // first run at startup
    expect(page.next_cursor).toBeNull();

    const first = await admin.request("GET", "/v1/audit?limit=1");
    const cursor = (first.json as { next_cursor: string }).next_cursor;
    const second = await admin.request("GET", `/v1/audit?limit=1&cursor=${cursor}`);
    expect((second.json as { items: AuditEntry[] }).items[0]?.seq).toBe(2);
    expect((await admin.request("GET", "/v1/audit?cursor=zzz")).status).toBe(400);
    expect((await admin.request("GET", "/v1/audit?action=Not%20Valid")).status).toBe(422);
    expect((await admin.request("GET", "/v1/audit/2")).json).toEqual(page.items[1]);
    expect((await admin.request("GET", "/v1/audit/999")).status).toBe(404);
    expect((await admin.request("GET", "/v1/audit/abc")).status).toBe(400);
    const readerKey = await createKey(server.baseUrl, adminKey, "reader");
    expect((await api(server.baseUrl, readerKey).request("GET", "/v1/audit")).status).toBe(403);

    const verified = await admin.request("GET", "/v1/audit/verify");
    expect(verified.status).toBe(200);
    expect(verified.json).toMatchObject({ ok: true, first_broken_seq: null });

    // Tamper: stop the server, rewrite entry 2's outcome in the meta LMDB, restart.
    expect(await server.stop()).toBe(0);
    const env2 = open({ path: path.join(dataDir, META_DIR), maxDbs: 32 });
    const raw = env2.openDB<AuditEntry, number>({ name: "audit", encoding: "json" });
    const entry = raw.get(2) as AuditEntry;
    await raw.put(2, { ...entry, outcome: "denied" });
    await env2.close();
    server = await startServerProcess({ dataDir, env });
    const broken = await api(server.baseUrl, adminKey).request("GET", "/v1/audit/verify");
    expect(broken.status).toBe(200);
    expect(broken.json).toMatchObject({ ok: false, first_broken_seq: 2, checked: 1 });
  });

  it("has no test clock route unless STEMEDB_TEST_CLOCK=on", async () => {
    await server.stop();
    server = await startServerProcess({ dataDir });
    const res = await api(server.baseUrl, readAdminKeyFile(dataDir)).request(
      "POST",
      "/v1/admin/test/clock",
      {
        advance_ms: 1,
      },
    );
    expect(res.status).toBe(404);
  });
});
