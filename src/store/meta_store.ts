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
import { writeFileAtomic } from "./manifest.js";

/** A key change the rules refuse: `code` is the API's error code (409). */
export class KeyRuleError extends Error {
  constructor(
    readonly code: "key_limit" | "last_admin_key",
    message: string,
  ) {
    super(message);
    this.name = "KeyRuleError";
  }
}

export const META_DIR = "meta";
export const ADMIN_KEY_FILE = "admin.key";
const ADMIN_KEY_FILE_MODE = 0o600;
const KEY_ID_ATTEMPTS = 8;

export interface CreateKeyOptions {
  role: Role;
  principal?: string | null;
  labels?: Record<string, string>;
  expiresAtMs?: number | null;
}

export interface EnsureAdminKeyResult {
  created: boolean;
  /** Only when a key was generated (or recovered from admin.key): print it once. */
  key?: string;
  /** generated | env (STEMEDB_ADMIN_KEY) | file (admin.key left by an interrupted first start) */
  source?: "generated" | "env" | "file";
  keyId?: string;
}

interface CachedKey {
  info: ApiKeyInfo;
  hash: Buffer;
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
  });
}

export class MetaStore {
  readonly root: RootDatabase;
  private readonly keys: Database<ApiKeyRecord, string>;
  private cache: ReadonlyMap<string, CachedKey> = new Map();
  private revoking: Promise<unknown> = Promise.resolve();

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
      next.set(key, { info: toInfo(value), hash: Buffer.from(value.secretHash, "hex") });
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

  private async insertKey(
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
    const presentedHash = hashSecret(parsed.secret);
    const matches = safeEqual(presentedHash, cached?.hash ?? DUMMY_HASH);
    if (cached === undefined || !matches) return null;
    const { info } = cached;
    if (info.revokedAtMs !== null) return null;
    if (info.expiresAtMs !== null && nowMs >= info.expiresAtMs) return null;
    return info;
  }

  /**
   * Revoke a key. Returns false if there is no such key; revoking twice keeps the first time.
   * The last active admin key cannot be revoked (KeyRuleError `last_admin_key`): nothing
   * could create another. Revocations run one at a time, so two cannot both pass that check.
   */
  revoke(keyId: string, nowMs: number = Date.now()): Promise<boolean> {
    const run = this.revoking.then(() => this.revokeNow(keyId, nowMs));
    this.revoking = run.catch(() => {});
    return run;
  }

  private async revokeNow(keyId: string, nowMs: number): Promise<boolean> {
    const current = this.keys.get(keyId);
    if (current === undefined) return false;
    if (current.revokedAtMs !== null) return true;
    if (current.role === "admin") {
      let otherAdmins = 0;
      for (const { info } of this.cache.values())
        if (info.role === "admin" && info.keyId !== keyId && this.isActive(info.keyId, nowMs))
          otherAdmins++;
      if (otherAdmins === 0) {
        throw new KeyRuleError(
          "last_admin_key",
          "This is the last active admin key: create another admin key before revoking it.",
        );
      }
    }
    await this.commit({ ...current, revokedAtMs: nowMs });
    return true;
  }

  /** Whether a key verified earlier may still be used: known, not revoked, not expired. */
  isActive(keyId: string, nowMs: number): boolean {
    const info = this.cache.get(keyId)?.info;
    if (info === undefined || info.revokedAtMs !== null) return false;
    return info.expiresAtMs === null || nowMs < info.expiresAtMs;
  }

  /** One key's public record, or null. */
  get(keyId: string): ApiKeyInfo | null {
    return this.cache.get(keyId)?.info ?? null;
  }

  /** All keys, without secret hashes, ordered by key id. */
  list(): ApiKeyInfo[] {
    return [...this.cache.values()].map((c) => c.info).sort((a, b) => (a.keyId < b.keyId ? -1 : 1));
  }

  /**
   * On first start of an empty meta store, install an admin key: STEMEDB_ADMIN_KEY if given
   * (not written to disk, not returned: the operator already has it), else a key recovered
   * from `<data>/admin.key` (a first start that crashed before committing), else a new one,
   * written to `<data>/admin.key` (mode 0600, fsynced) *before* it is committed, so a crash
   * can never leave an admin key that nobody has. Returns { created: false } otherwise.
   */
  async ensureAdminKey(opts: {
    dataDir: string;
    envAdminKey?: string | null;
    nowMs?: number;
  }): Promise<EnsureAdminKeyResult> {
    if (this.cache.size > 0) return { created: false };
    const nowMs = opts.nowMs ?? Date.now();
    if (opts.envAdminKey != null) {
      const parsed = parseApiKey(opts.envAdminKey);
      if (parsed === null)
        throw new RangeError("STEMEDB_ADMIN_KEY is not a well-formed StemeDB key");
      const { record } = await this.insertKey({ role: "admin", principal: "admin" }, nowMs, parsed);
      return { created: true, source: "env", keyId: record.keyId };
    }
    const file = path.join(opts.dataDir, ADMIN_KEY_FILE);
    let source: "generated" | "file" = "generated";
    let parsed = readAdminKeyFile(file);
    if (parsed !== null) {
      source = "file";
    } else {
      parsed = { keyId: generateKeyId(), secret: generateSecret() };
      fs.mkdirSync(opts.dataDir, { recursive: true });
      writeFileAtomic(
        opts.dataDir,
        ADMIN_KEY_FILE,
        `${formatApiKey(parsed.keyId, parsed.secret)}\n`,
        ADMIN_KEY_FILE_MODE,
      );
    }
    // The process umask may have narrowed the mode further, never widened it; make it exact.
    fs.chmodSync(file, ADMIN_KEY_FILE_MODE);
    const { key, record } = await this.insertKey(
      { role: "admin", principal: "admin" },
      nowMs,
      parsed,
    );
    return { created: true, key, source, keyId: record.keyId };
  }
}

/** The key in an existing admin.key file, or null if absent or not a well-formed key. */
function readAdminKeyFile(file: string): { keyId: string; secret: string } | null {
  try {
    // A key file is ~80 bytes; anything much larger is not one of ours (and is replaced).
    if (fs.statSync(file).size > 1024) return null;
    const text = fs.readFileSync(file, "utf8");
    return parseApiKey(text.trim());
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw e;
  }
}
