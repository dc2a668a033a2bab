// The meta store: global state with a single owner (the main thread), in one LMDB
// environment under `<data>/meta`. This file owns the `api_keys` database; other global
// tables (agents, aliases, epochs, audit) can be opened on `root` by their own modules.
//
// Auth is on every request's hot path, so verify() never touches LMDB: it reads an
// in-memory Map (keyId → record + hash bytes) that is replaced after every committed change
// (copy-on-write, so a reader never sees a half-applied update). Writes are awaited until
// LMDB has flushed them to disk before the caller is told a key exists or is revoked.

import fs from "node:fs";
import path from "node:path";
import { type Database, open, type RootDatabase } from "lmdb";
import {
  type ApiKeyInfo,
  type ApiKeyRecord,
  defaultPrincipal,
  formatApiKey,
  generateKeyId,
  generateSecret,
  hashSecret,
  hashSecretHex,
  isRole,
  isValidPrincipal,
  parseApiKey,
  type Role,
  safeEqual,
} from "../domain/api_keys.js";
import { MAX_API_KEY_LABELS, MAX_API_KEYS, MAX_TIME_MS } from "../domain/limits.js";
import { type EnsureAdminKeyResult, ensureAdminKey } from "./admin_key.js";

/** A key change the rules refuse: `code` is the API's error code (409). */
export class KeyRuleError extends Error {
  constructor(
    readonly code: "key_limit" | "last_admin_key" | "key_revoked",
    message: string,
  ) {
    super(message);
    this.name = "KeyRuleError";
  }
}

export const META_DIR = "meta";
const KEY_ID_ATTEMPTS = 8;

export interface CreateKeyOptions {
  role: Role;
  principal?: string | null;
  labels?: Record<string, string>;
  expiresAtMs?: number | null;
}

export interface KeyUpdate {
  role?: Role;
  labels?: Record<string, string>;
  /** null: never expires. */
  expiresAtMs?: number | null;
}

interface CachedKey {
  info: ApiKeyInfo;
  hash: Buffer;
  /** The secret before the last rotation, while info.previousValidUntilMs has not passed. */
  previousHash: Buffer | null;
}

/** Stands in for a missing record so an unknown keyId costs the same compare as a known one. */
const DUMMY_HASH = hashSecret("stemedb-dummy-secret");

function toInfo(r: ApiKeyRecord): ApiKeyInfo {
  return Object.freeze({
    keyId: r.keyId,
    role: r.role,
    principal: r.principal,
    labels: Object.freeze({ ...r.labels }) as Record<string, string>,
    createdAtMs: r.createdAtMs,
    expiresAtMs: r.expiresAtMs,
    revokedAtMs: r.revokedAtMs,
    secretVersion: r.secretVersion ?? 1,
    secretSetAtMs: r.secretSetAtMs ?? r.createdAtMs,
    previousValidUntilMs: r.previousValidUntilMs ?? null,
  });
}

/** An admin key that never expires and is not revoked (the last-admin rule keeps one). */
function isLastingAdmin(k: { role: Role; expiresAtMs: number | null; revokedAtMs: number | null }) {
  return k.role === "admin" && k.expiresAtMs === null && k.revokedAtMs === null;
}

/** Whether a key's previous secret (one rotation back) is still accepted at nowMs. */
function previousStillValid(info: ApiKeyInfo, nowMs: number): boolean {
  return info.previousValidUntilMs !== null && nowMs < info.previousValidUntilMs;
}

export class MetaStore {
  readonly root: RootDatabase;
  private readonly keys: Database<ApiKeyRecord, string>;
  private cache: ReadonlyMap<string, CachedKey> = new Map();
  /** Revocations, rotations and updates run one at a time (the last-admin rule reads all). */
  private changing: Promise<unknown> = Promise.resolve();

  private constructor(root: RootDatabase) {
    this.root = root;
    this.keys = root.openDB<ApiKeyRecord, string>({ name: "api_keys", encoding: "json" });
    this.reload();
  }

  /** Open (creating if needed) `<dataDir>/meta`. */
  static open(dataDir: string): MetaStore {
    const dir = path.join(dataDir, META_DIR);
    fs.mkdirSync(dir, { recursive: true });
    // Meta writes are rare (key changes, admin actions); LMDB's own synced commits make them
    // durable without the WAL.
    const root = open({ path: dir, maxDbs: 32 });
    return new MetaStore(root);
  }

  async close(): Promise<void> {
    await this.root.close();
  }

  /** Rebuild the in-memory snapshot from LMDB. */
  private reload(): void {
    const next = new Map<string, CachedKey>();
    for (const { key, value } of this.keys.getRange()) {
      const previous = value.previousSecretHash ?? null;
      next.set(key, {
        info: toInfo(value),
        hash: Buffer.from(value.secretHash, "hex"),
        previousHash: previous === null ? null : Buffer.from(previous, "hex"),
      });
    }
    this.cache = next;
  }

  private async commit(record: ApiKeyRecord): Promise<void> {
    await this.keys.put(record.keyId, record);
    await this.keys.flushed;
    this.reload();
  }

  /** Number of keys (revoked and expired included). */
  get size(): number {
    return this.cache.size;
  }

  /** Create a key. The returned `key` is the only time the secret is ever available. */
  async createKey(
    opts: CreateKeyOptions,
    nowMs: number = Date.now(),
  ): Promise<{ key: string; record: ApiKeyInfo }> {
    return this.insertKey(opts, nowMs, null);
  }

  /**
   * Creates a key; `imported` gives its id and secret (the first admin key: admin_key.ts).
   * The returned `key` is the only time the secret is ever available.
   */
  async insertKey(
    opts: CreateKeyOptions,
    nowMs: number,
    imported: { keyId: string; secret: string } | null,
  ): Promise<{ key: string; record: ApiKeyInfo }> {
    if (!isRole(opts.role)) throw new RangeError(`unknown role ${JSON.stringify(opts.role)}`);
    if (opts.principal != null && !isValidPrincipal(opts.principal)) {
      throw new RangeError(`principal ${JSON.stringify(opts.principal)} is not a valid agent id`);
    }
    const labels = opts.labels ?? {};
    if (Object.keys(labels).length > MAX_API_KEY_LABELS) {
      throw new RangeError(`a key has at most ${MAX_API_KEY_LABELS} labels`);
    }
    const expiresAtMs = opts.expiresAtMs ?? null;
    if (expiresAtMs !== null && (!Number.isSafeInteger(expiresAtMs) || expiresAtMs > MAX_TIME_MS)) {
      throw new RangeError(`expiresAtMs must be an integer ms timestamp, got ${expiresAtMs}`);
    }
    if (this.cache.size >= MAX_API_KEYS) {
      throw new KeyRuleError(
        "key_limit",
        `The meta store holds the maximum of ${MAX_API_KEYS} API keys (revoked ones count).`,
      );
    }
    let keyId = imported?.keyId ?? generateKeyId();
    for (let attempt = 1; this.cache.has(keyId); attempt++) {
      if (imported !== null) throw new RangeError(`key id ${keyId} already exists`);
      if (attempt >= KEY_ID_ATTEMPTS) throw new Error("could not find a free key id");
      keyId = generateKeyId();
    }
    const secret = imported?.secret ?? generateSecret();
    const record: ApiKeyRecord = {
      keyId,
      role: opts.role,
      principal: opts.principal ?? defaultPrincipal(opts.role, keyId),
      labels: { ...labels },
      createdAtMs: nowMs,
      expiresAtMs,
      revokedAtMs: null,
      secretHash: hashSecretHex(secret),
      secretVersion: 1,
      secretSetAtMs: nowMs,
      previousSecretHash: null,
      previousValidUntilMs: null,
    };
    await this.commit(record);
    const info = this.cache.get(keyId)?.info;
    if (info === undefined) throw new Error(`key ${keyId} missing from the snapshot after commit`);
    return { key: formatApiKey(keyId, secret), record: info };
  }

  /**
   * The key's record if `presentedKey` is a well-formed, known, unrevoked, unexpired key
   * whose secret matches; otherwise null. Synchronous, no I/O; never throws on bad input.
   */
  verify(presentedKey: string, nowMs: number): ApiKeyInfo | null {
    // Every call hashes and compares in constant time (≈ 0.9 µs here): no presented key is
    // kept in memory, and no lookup keyed by a secret can leak it through timing.
    const parsed = parseApiKey(presentedKey);
    if (parsed === null) return null;
    const cached = this.cache.get(parsed.keyId);
    const version = this.matchedVersion(cached, hashSecret(parsed.secret), nowMs);
    if (cached === undefined || version === null) return null;
    const { info } = cached;
    if (info.revokedAtMs !== null) return null;
    if (info.expiresAtMs !== null && nowMs >= info.expiresAtMs) return null;
    return info;
  }

  /**
   * Which secret version of its key `presentedKey` is (for a WebSocket connection to recheck
   * on each message, see credentialActive), or null when verify() would refuse it.
   */
  presentedVersion(presentedKey: string, nowMs: number): number | null {
    const parsed = parseApiKey(presentedKey);
    if (parsed === null) return null;
    const cached = this.cache.get(parsed.keyId);
    const version = this.matchedVersion(cached, hashSecret(parsed.secret), nowMs);
    return version !== null && this.isActive(parsed.keyId, nowMs) ? version : null;
  }

  /** Both comparisons always run, so timing tells nothing about which secret matched. */
  private matchedVersion(
    cached: CachedKey | undefined,
    presentedHash: Buffer,
    nowMs: number,
  ): number | null {
    const current = safeEqual(presentedHash, cached?.hash ?? DUMMY_HASH);
    const previous = safeEqual(presentedHash, cached?.previousHash ?? DUMMY_HASH);
    if (cached === undefined) return null;
    if (current) return cached.info.secretVersion;
    if (previous && cached.previousHash !== null && previousStillValid(cached.info, nowMs))
      return cached.info.secretVersion - 1;
    return null;
  }

  /**
   * Revoke a key. Returns false if there is no such key; revoking twice keeps the first time.
   * The last active admin key cannot be revoked (KeyRuleError `last_admin_key`): nothing
   * could create another. Revocations run one at a time, so two cannot both pass that check.
   */
  revoke(keyId: string, nowMs: number = Date.now()): Promise<boolean> {
    return this.serialized(async () => {
      const current = this.keys.get(keyId);
      if (current === undefined) return false;
      if (current.revokedAtMs !== null) return true;
      this.keepAnAdmin(current, "revoking it", nowMs);
      await this.commit({ ...current, revokedAtMs: nowMs });
      return true;
    });
  }

  /**
   * Gives the key a new secret (returned once, like a new key's); the one it replaces is
   * still accepted for `graceMs` (0: not at all), and one rotated out before it no longer is.
   * null: no such key. Refused (KeyRuleError) for a revoked key, and with no grace for the
   * last lasting admin key (an answer lost on the way would lock every admin out).
   */
  rotate(
    keyId: string,
    graceMs: number,
    nowMs: number = Date.now(),
  ): Promise<{ key: string; record: ApiKeyInfo } | null> {
    if (!Number.isSafeInteger(graceMs) || graceMs < 0)
      throw new RangeError(`graceMs must be a non-negative integer, got ${graceMs}`);
    return this.serialized(async () => {
      const current = this.changeable(keyId);
      if (current === null) return null;
      if (graceMs === 0) this.keepAnAdmin(current, "rotating it without a grace period", nowMs);
      const secret = generateSecret();
      await this.commit({
        ...current,
        secretHash: hashSecretHex(secret),
        secretVersion: (current.secretVersion ?? 1) + 1,
        secretSetAtMs: nowMs,
        previousSecretHash: graceMs === 0 ? null : current.secretHash,
        previousValidUntilMs: graceMs === 0 ? null : nowMs + graceMs,
      });
      return { key: formatApiKey(keyId, secret), record: this.get(keyId) as ApiKeyInfo };
    });
  }

  /**
   * Changes a key's role, labels or expiry (each only when given); the record before and
   * after, or null for no such key. Refused (KeyRuleError) for a revoked key, and when it
   * would leave no lasting admin key (see keepAnAdmin).
   */
  update(
    keyId: string,
    change: KeyUpdate,
    nowMs: number = Date.now(),
  ): Promise<{ before: ApiKeyInfo; after: ApiKeyInfo } | null> {
    if (change.role !== undefined && !isRole(change.role))
      throw new RangeError(`unknown role ${JSON.stringify(change.role)}`);
    if (change.labels !== undefined && Object.keys(change.labels).length > MAX_API_KEY_LABELS)
      throw new RangeError(`a key has at most ${MAX_API_KEY_LABELS} labels`);
    return this.serialized(async () => {
      const current = this.changeable(keyId);
      if (current === null) return null;
      const next: ApiKeyRecord = {
        ...current,
        role: change.role ?? current.role,
        labels: change.labels === undefined ? current.labels : { ...change.labels },
        expiresAtMs: change.expiresAtMs === undefined ? current.expiresAtMs : change.expiresAtMs,
      };
      if (!isLastingAdmin(next)) this.keepAnAdmin(current, "changing it so", nowMs);
      const before = this.get(keyId) as ApiKeyInfo;
      await this.commit(next);
      return { before, after: this.get(keyId) as ApiKeyInfo };
    });
  }

  private serialized<T>(change: () => Promise<T>): Promise<T> {
    const run = this.changing.then(change);
    this.changing = run.catch(() => {});
    return run;
  }

  /** The stored record of a key that may be changed; null when unknown. */
  private changeable(keyId: string): ApiKeyRecord | null {
    const current = this.keys.get(keyId);
    if (current === undefined) return null;
    if (current.revokedAtMs !== null)
      throw new KeyRuleError("key_revoked", `API key ${keyId} is revoked; create a new key.`);
    return current;
  }

  /**
   * Throws `last_admin_key` if `key` is a lasting admin key (active, never expires) and no
   * other is: an admin key that expires later does not count, since nothing could make a
   * new admin key once it has (STEMEDB_ADMIN_KEY is read only for an empty store).
   */
  private keepAnAdmin(key: ApiKeyRecord, doing: string, nowMs: number): void {
    if (!isLastingAdmin(key) || !this.isActive(key.keyId, nowMs)) return;
    for (const { info } of this.cache.values())
      if (info.keyId !== key.keyId && isLastingAdmin(info) && this.isActive(info.keyId, nowMs))
        return;
    throw new KeyRuleError(
      "last_admin_key",
      `This is the last admin key without an expiry: create another before ${doing}.`,
    );
  }

  /** Whether a key verified earlier may still be used: known, not revoked, not expired. */
  isActive(keyId: string, nowMs: number): boolean {
    const info = this.cache.get(keyId)?.info;
    if (info === undefined || info.revokedAtMs !== null) return false;
    return info.expiresAtMs === null || nowMs < info.expiresAtMs;
  }

  /**
   * The key's record if a credential verified earlier as `secretVersion` (presentedVersion)
   * is still accepted: the key is active and that secret is current, or the previous one
   * within its grace period. Its role may have changed since; the caller checks it.
   */
  credentialActive(keyId: string, secretVersion: number, nowMs: number): ApiKeyInfo | null {
    if (!this.isActive(keyId, nowMs)) return null;
    const info = (this.cache.get(keyId) as CachedKey).info;
    if (secretVersion === info.secretVersion) return info;
    if (secretVersion === info.secretVersion - 1 && previousStillValid(info, nowMs)) return info;
    return null;
  }

  /** One key's public record, or null. */
  get(keyId: string): ApiKeyInfo | null {
    return this.cache.get(keyId)?.info ?? null;
  }

  /** Seconds since the oldest secret among active keys was made (0 with none): rotation due. */
  oldestActiveSecretAgeS(nowMs: number): number {
    let oldestMs = nowMs;
    for (const { info } of this.cache.values())
      if (info.secretSetAtMs < oldestMs && this.isActive(info.keyId, nowMs))
        oldestMs = info.secretSetAtMs;
    return (nowMs - oldestMs) / 1000;
  }

  /** All keys, without secret hashes, ordered by key id. */
  list(): ApiKeyInfo[] {
    return [...this.cache.values()].map((c) => c.info).sort((a, b) => (a.keyId < b.keyId ? -1 : 1));
  }

  /** On first start of an empty meta store, installs an admin key (admin_key.ts). */
  ensureAdminKey(opts: Parameters<typeof ensureAdminKey>[1]): Promise<EnsureAdminKeyResult> {
    return ensureAdminKey(this, opts);
  }
}
