// The first admin key of a new data directory (DESIGN §3 "Agent and API key"): taken from
// STEMEDB_ADMIN_KEY, or generated and written to a 0600 file before it is committed.
import fs from "node:fs";
import path from "node:path";
import { formatApiKey, generateKeyId, generateSecret, parseApiKey } from "../domain/api_keys.js";
import { writeFileAtomic } from "./manifest.js";
import type { MetaStore } from "./meta_store.js";

export const ADMIN_KEY_FILE = "admin.key";
const ADMIN_KEY_FILE_MODE = 0o600;

export interface EnsureAdminKeyResult {
  created: boolean;
  /** Only when a key was generated (or recovered from admin.key): print it once. */
  key?: string;
  /** generated | env (STEMEDB_ADMIN_KEY) | file (admin.key left by an interrupted first start) */
  source?: "generated" | "env" | "file";
  keyId?: string;
}

/**
 * On first start of an empty meta store, install an admin key: STEMEDB_ADMIN_KEY if given
 * (not written to disk, not returned: the operator already has it), else a key recovered
 * from `<data>/admin.key` (a first start that crashed before committing), else a new one,
 * written to `<data>/admin.key` (mode 0600, fsynced) *before* it is committed, so a crash
 * can never leave an admin key that nobody has. Returns { created: false } otherwise.
 */
export async function ensureAdminKey(
  meta: MetaStore,
  opts: {
    dataDir: string;
    envAdminKey?: string | null;
    nowMs?: number;
  },
): Promise<EnsureAdminKeyResult> {
  if (meta.size > 0) return { created: false };
  const nowMs = opts.nowMs ?? Date.now();
  if (opts.envAdminKey != null) {
    const parsed = parseApiKey(opts.envAdminKey);
    if (parsed === null) throw new RangeError("STEMEDB_ADMIN_KEY is not a well-formed StemeDB key");
    const { record } = await meta.insertKey({ role: "admin", principal: "admin" }, nowMs, parsed);
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
  const { key, record } = await meta.insertKey(
    { role: "admin", principal: "admin" },
    nowMs,
    parsed,
  );
  return { created: true, key, source, keyId: record.keyId };
}

/**
 * After `keyId` was rotated to `key`: if `<dataDir>/admin.key` holds that key id, it is
 * replaced (atomically, 0600) so `stemedb backup` and other local tools keep working.
 * Returns whether it was.
 */
export function replaceAdminKeyFile(dataDir: string, keyId: string, key: string): boolean {
  const file = path.join(dataDir, ADMIN_KEY_FILE);
  if (readAdminKeyFile(file)?.keyId !== keyId) return false;
  writeFileAtomic(dataDir, ADMIN_KEY_FILE, `${key}\n`, ADMIN_KEY_FILE_MODE);
  fs.chmodSync(file, ADMIN_KEY_FILE_MODE);
  return true;
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
