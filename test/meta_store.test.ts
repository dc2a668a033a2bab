import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { generateApiKey, hashSecretHex, parseApiKey } from "../src/domain/api_keys.js";
import { ADMIN_KEY_FILE } from "../src/store/admin_key.js";
import { DecisionMarks } from "../src/store/decision_marks.js";
import { MetaStore } from "../src/store/meta_store.js";

let dir: string;
let store: MetaStore;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "stemedb-"));
  store = MetaStore.open(dir);
});
afterEach(async () => {
  await store.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

const NOW = 1_700_000_000_000;

describe("MetaStore keys", () => {
  it("creates a key that verifies, with a default agent principal", async () => {
    const { key, record } = await store.createKey({ role: "agent" }, NOW);
    expect(key).toMatch(/^stm_[a-z2-7]{12}_[A-Za-z0-9_-]{43}$/);
    expect(record.principal).toBe(`agent-${record.keyId}`);
    expect(record).toMatchObject({
      role: "agent",
      createdAtMs: NOW,
      expiresAtMs: null,
      revokedAtMs: null,
    });
    expect(store.verify(key, NOW)).toEqual(record);
    expect(Object.isFrozen(record)).toBe(true);
  });

  it("keeps principal and labels", async () => {
    const { key } = await store.createKey({
      role: "reader",
      principal: "dash:grafana",
      labels: { team: "ops" },
    });
    expect(store.verify(key, Date.now())).toMatchObject({
      role: "reader",
      principal: "dash:grafana",
      labels: { team: "ops" },
    });
    await expect(store.createKey({ role: "agent", principal: "bad principal" })).rejects.toThrow(
      RangeError,
    );
  });

  it("rejects wrong secrets, unknown ids and malformed keys without throwing", async () => {
    const { key, record } = await store.createKey({ role: "agent" }, NOW);
    const parsed = parseApiKey(key);
    if (parsed === null) throw new Error("unparseable");
    const wrongSecret = `stm_${record.keyId}_${generateApiKey().secret}`;
    expect(store.verify(wrongSecret, NOW)).toBeNull();
    expect(store.verify(generateApiKey().key, NOW)).toBeNull();
    for (const bad of ["", "Bearer x", key.slice(0, -1), `${key}A`, `stm_${record.keyId}_short`]) {
      expect(() => store.verify(bad, NOW)).not.toThrow();
      expect(store.verify(bad, NOW)).toBeNull();
    }
  });

  it("revokes keys", async () => {
    const { key, record } = await store.createKey({ role: "agent" }, NOW);
    expect(await store.revoke(record.keyId, NOW + 1)).toBe(true);
    expect(store.verify(key, NOW + 2)).toBeNull();
    expect(store.get(record.keyId)?.revokedAtMs).toBe(NOW + 1);
    expect(await store.revoke(record.keyId, NOW + 5)).toBe(true);
    expect(store.get(record.keyId)?.revokedAtMs).toBe(NOW + 1);
    expect(await store.revoke("nosuchkeyid0", NOW)).toBe(false);
  });

  it("expires keys at expiresAtMs", async () => {
    const { key } = await store.createKey({ role: "agent", expiresAtMs: NOW + 1000 }, NOW);
    expect(store.verify(key, NOW + 999)).not.toBeNull();
    expect(store.verify(key, NOW + 1000)).toBeNull();
  });

  it("refuses to revoke the last active admin key, even two at once", async () => {
    const first = await store.createKey({ role: "admin" }, NOW);
    await expect(store.revoke(first.record.keyId, NOW)).rejects.toMatchObject({
      code: "last_admin_key",
    });
    // An expired admin key does not count as another one.
    await store.createKey({ role: "admin", expiresAtMs: NOW + 10 }, NOW);
    await expect(store.revoke(first.record.keyId, NOW + 20)).rejects.toMatchObject({
      code: "last_admin_key",
    });
    const second = await store.createKey({ role: "admin" }, NOW);
    // Revoked one at a time: the second revocation finds the first done and refuses.
    const both = await Promise.allSettled([
      store.revoke(first.record.keyId, NOW + 20),
      store.revoke(second.record.keyId, NOW + 20),
    ]);
    expect(both.map((r) => r.status)).toEqual(["fulfilled", "rejected"]);
    expect(store.isActive(second.record.keyId, NOW + 20)).toBe(true);
  });

  it("never exposes secret hashes from list(), and persists across reopen", async () => {
    const a = await store.createKey({ role: "agent" }, NOW);
    const b = await store.createKey({ role: "admin" }, NOW);
    await store.createKey({ role: "admin" }, NOW); // so that b is not the last admin key
    await store.revoke(b.record.keyId, NOW);
    const listed = store.list();
    expect(listed).toHaveLength(3);
    const secretHash = hashSecretHex(parseApiKey(a.key)?.secret ?? "");
    const text = JSON.stringify(listed);
    expect(text).not.toContain("secretHash");
    expect(text).not.toContain(secretHash);
    await store.close();
    store = MetaStore.open(dir);
    expect(store.list()).toEqual(listed);
    expect(store.verify(a.key, NOW)?.keyId).toBe(a.record.keyId);
    expect(store.verify(b.key, NOW)).toBeNull();
  });
});

describe("MetaStore key rotation and updates", () => {
  it("rotates a secret: the old one works for the grace period, one rotated out before does not", async () => {
    const { key: v1, record } = await store.createKey({ role: "agent", principal: "a1" }, NOW);
    const id = record.keyId;
    const r2 = await store.rotate(id, 1000, NOW + 10);
    expect(r2?.record).toMatchObject({ keyId: id, principal: "a1", secretVersion: 2 });
    expect(r2?.record.previousValidUntilMs).toBe(NOW + 1010);
    const v2 = r2?.key as string;
    expect(parseApiKey(v2)?.keyId).toBe(id);
    expect(v2).not.toBe(v1);
    expect(store.verify(v2, NOW + 20)?.keyId).toBe(id);
    expect(store.verify(v1, NOW + 1009)?.keyId).toBe(id);
    expect(store.presentedVersion(v1, NOW + 1009)).toBe(1);
    expect(store.presentedVersion(v2, NOW + 1009)).toBe(2);
    expect(store.credentialActive(id, 1, NOW + 1009)?.keyId).toBe(id);
    // The grace period ends.
    expect(store.verify(v1, NOW + 1010)).toBeNull();
    expect(store.credentialActive(id, 1, NOW + 1010)).toBeNull();
    expect(store.credentialActive(id, 2, NOW + 1010)?.keyId).toBe(id);
    // A second rotation inside a grace period drops the oldest secret at once.
    const r3 = await store.rotate(id, 5000, NOW + 20);
    const v3 = r3?.key as string;
    expect(store.verify(v1, NOW + 21)).toBeNull();
    expect(store.verify(v2, NOW + 21)?.keyId).toBe(id);
    expect(store.verify(v3, NOW + 21)?.keyId).toBe(id);
    // No grace: only the new secret.
    const r4 = await store.rotate(id, 0, NOW + 30);
    expect(store.verify(v3, NOW + 31)).toBeNull();
    expect(store.verify(r4?.key as string, NOW + 31)?.keyId).toBe(id);
    // It survives a reopen; the hashes never leave the store.
    await store.close();
    store = MetaStore.open(dir);
    expect(store.verify(r4?.key as string, NOW + 32)?.secretVersion).toBe(4);
    expect(JSON.stringify(store.list())).not.toContain("ecretHash");
    expect(await store.rotate("nosuchkeyid0", 0, NOW)).toBeNull();
    await store.revoke(id, NOW + 40);
    await expect(store.rotate(id, 0, NOW + 41)).rejects.toMatchObject({ code: "key_revoked" });
  });

  it("updates role, labels and expiry, and keeps a lasting admin key", async () => {
    const admin = await store.createKey({ role: "admin" }, NOW);
    const { key, record } = await store.createKey({ role: "agent", labels: { team: "x" } }, NOW);
    const updated = await store.update(record.keyId, { role: "reader" }, NOW + 1);
    expect(updated?.before).toMatchObject({ role: "agent" });
    expect(updated?.after).toMatchObject({
      role: "reader",
      labels: { team: "x" },
      expiresAtMs: null,
    });
    expect(store.verify(key, NOW + 2)?.role).toBe("reader");
    await store.update(record.keyId, { labels: {}, expiresAtMs: NOW + 100 }, NOW + 3);
    expect(store.get(record.keyId)).toMatchObject({ labels: {}, expiresAtMs: NOW + 100 });
    expect(store.verify(key, NOW + 100)).toBeNull();
    await store.update(record.keyId, { expiresAtMs: null }, NOW + 101);
    expect(store.verify(key, NOW + 102)?.keyId).toBe(record.keyId);
    // The only admin key without an expiry may not lose its role, get any expiry (one in a
    // second would lock every admin out then), nor be rotated without a grace period.
    const id = admin.record.keyId;
    for (const change of [
      { role: "agent" as const },
      { expiresAtMs: NOW },
      { expiresAtMs: NOW + 10_000 },
    ]) {
      await expect(store.update(id, change, NOW)).rejects.toMatchObject({ code: "last_admin_key" });
    }
    await expect(store.rotate(id, 0, NOW)).rejects.toMatchObject({ code: "last_admin_key" });
    // An admin key that expires does not count as another one.
    await store.createKey({ role: "admin", expiresAtMs: NOW + 60_000 }, NOW);
    await expect(store.revoke(id, NOW)).rejects.toMatchObject({ code: "last_admin_key" });
    await store.createKey({ role: "admin" }, NOW);
    expect((await store.update(id, { role: "agent" }, NOW))?.after.role).toBe("agent");
    expect(await store.update("nosuchkeyid0", { role: "agent" }, NOW)).toBeNull();
    await store.revoke(record.keyId, NOW);
    await expect(store.update(record.keyId, { role: "agent" }, NOW)).rejects.toMatchObject({
      code: "key_revoked",
    });
  });

  it("reads and rotates a key record written before rotation existed", async () => {
    const { key } = await store.createKey({ role: "agent", principal: "old" }, NOW);
    const parsed = parseApiKey(key);
    if (parsed === null) throw new Error("bad key");
    // The record as older builds stored it: no secret version, set time or previous secret.
    const keys = store.root.openDB<Record<string, unknown>, string>({
      name: "api_keys",
      encoding: "json",
    });
    const stored = keys.get(parsed.keyId) as Record<string, unknown>;
    for (const field of [
      "secretVersion",
      "secretSetAtMs",
      "previousSecretHash",
      "previousValidUntilMs",
    ])
      delete stored[field];
    await keys.put(parsed.keyId, stored);
    await store.close();
    store = MetaStore.open(dir);
    expect(store.verify(key, NOW)).toMatchObject({
      secretVersion: 1,
      secretSetAtMs: NOW,
      previousValidUntilMs: null,
    });
    expect(store.oldestActiveSecretAgeS(NOW + 5000)).toBe(5);
    const rotated = await store.rotate(parsed.keyId, 1000, NOW + 10_000);
    expect(rotated?.record).toMatchObject({ secretVersion: 2, secretSetAtMs: NOW + 10_000 });
    expect(store.verify(key, NOW + 10_500)?.keyId).toBe(parsed.keyId);
    // A rotation resets the age of the secret (APIKeyRotationDue).
    expect(store.oldestActiveSecretAgeS(NOW + 11_000)).toBe(1);
  });
});

describe("MetaStore.ensureAdminKey", () => {
  it("generates an admin key once, in a 0600 file", async () => {
    const r = await store.ensureAdminKey({ dataDir: dir, envAdminKey: null });
    expect(r.created).toBe(true);
    expect(r.source).toBe("generated");
    if (r.key === undefined) throw new Error("expected a key");
    const file = path.join(dir, ADMIN_KEY_FILE);
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    expect(fs.readFileSync(file, "utf8").trim()).toBe(r.key);
    expect(store.verify(r.key, Date.now())).toMatchObject({ role: "admin", principal: "admin" });
    expect(fs.readdirSync(dir).filter((n) => n.includes(".tmp-"))).toEqual([]);
    expect(await store.ensureAdminKey({ dataDir: dir, envAdminKey: null })).toEqual({
      created: false,
    });
  });

  it("imports STEMEDB_ADMIN_KEY without writing or returning it", async () => {
    const env = generateApiKey().key;
    const r = await store.ensureAdminKey({ dataDir: dir, envAdminKey: env });
    expect(r).toMatchObject({ created: true, source: "env" });
    expect(r.key).toBeUndefined();
    expect(fs.existsSync(path.join(dir, ADMIN_KEY_FILE))).toBe(false);
    expect(store.verify(env, Date.now())?.role).toBe("admin");
    await expect(store.ensureAdminKey({ dataDir: dir, envAdminKey: "junk" })).resolves.toEqual({
      created: false,
    });
  });

  it("recovers the key file of an interrupted first start", async () => {
    const previous = generateApiKey().key;
    fs.writeFileSync(path.join(dir, ADMIN_KEY_FILE), `${previous}\n`, { mode: 0o644 });
    const r = await store.ensureAdminKey({ dataDir: dir });
    expect(r).toMatchObject({ created: true, source: "file", key: previous });
    expect(fs.statSync(path.join(dir, ADMIN_KEY_FILE)).mode & 0o777).toBe(0o600);
    expect(store.verify(previous, Date.now())?.role).toBe("admin");
  });

  it("does nothing when keys already exist", async () => {
    await store.createKey({ role: "agent" });
    expect(await store.ensureAdminKey({ dataDir: dir })).toEqual({ created: false });
    expect(fs.existsSync(path.join(dir, ADMIN_KEY_FILE))).toBe(false);
  });
});

describe("DecisionMarks", () => {
  it("counts a decision as counted when it has a mark or predates the marks", async () => {
    const marks = new DecisionMarks(store.root, NOW);
    const id = "a".repeat(32);
    expect(marks.sinceMs).toBe(NOW);
    expect(marks.counted(id, NOW - 1)).toBe(true); // made before marking began
    expect(marks.counted(id, NOW + 5)).toBe(false);
    await store.root.transaction(() => marks.putCounted(id, "approve"));
    expect(marks.counted(id, NOW + 5)).toBe(true);
    // The start of marking is kept across reopens, not moved to the next start.
    await store.close();
    store = MetaStore.open(dir);
    const again = new DecisionMarks(store.root, NOW + 1_000_000);
    expect(again.sinceMs).toBe(NOW);
    expect(again.counted("b".repeat(32), NOW + 10)).toBe(false);
  });
});
