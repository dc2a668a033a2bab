// The layout of one shard's LMDB environment: which named databases exist, their key and
// value encodings, and the meta entries that tie the env to its shard and format version.
// Opening the databases and checking the meta is done once at start; keeping it here leaves
// shard_store.ts with the store's behaviour (apply, reads, checkpoints).
//
// Named databases inside the environment:
//   records     lsn -> Assertion FlatBuffer bytes, exactly as received (no re-encode)
//   ids         id (its 16 bytes) -> lsn      (the duplicate check and reads by id)
//   by_concept  [concept, lsn] -> (empty)     (time order per concept)
//   by_agent    [agent, lsn] -> (empty)       (time order per agent)
//   active      [concept, lsn] -> (empty)     assertions active now: the live lenses read it,
//               so any number of newer held, retracted or superseded ones cannot hide them
//               (format 3; a format 2 env gets it built at open, format_upgrade.ts)
//   latest      concept -> lsn of the newest assertion inserted ACTIVE (a hint: its status
//               may have changed since; lenses check, see state_reads.ts)
//   concepts_held  concept -> 1 for concepts whose assertions arrived quarantined (so subtree
//               scans find concepts that have no active insert)
//   status_log  [id, lsn] -> {k, a, o?, r?, at}  supersede/retract/approve/reject of id
//   votes       [id, lsn] -> {a, d, w, at}       every vote on id (newest per voter counts)
//   vote_now    [id, voter] -> {d, w, l, at}      each voter's newest vote on id (format 3):
//               live tallies and the "voted before" check read it, so no number of vote
//               changes by one agent pushes other voters (or its own first vote) out of reach
//   sources     id -> SourceRecord
//   held        lsn -> id of assertions waiting in quarantine (removed by any decision)
//   meta        "applied_lsn" | "format_version" | "shard_id" -> number
//   apply_chain "chain" -> 0, versioned: its version is the applied LSN. Every async apply is
//               conditional on it (lmdb-js ifVersion), so with two commits in flight a
//               failed one makes the next a no-op instead of leaving a gap behind appliedLsn.
//
// Why records are keyed by LSN (format 2): ids are content hashes, so an id-keyed record
// table takes every insert at a random page and each commit rewrote a page per record;
// LSNs only grow, so records append to the right edge of their B-tree and only the small
// id -> lsn entries land at random. The time indexes carry the LSN in their key and need no
// value. Ids are stored as their 16 bytes, not 32 hex characters: a smaller random-insert
// tree is fewer pages rewritten per commit. Measured with lmdb-js alone, 300k records over
// 10k concepts with hash ids: 60k -> 110-130k records/s (bench/RESULTS.md, 2026-12-04).
//
// The status of an assertion as of LSN L is its insert status folded with its status_log
// entries up to L; that one rule serves live reads (L = infinity) and as_of_epoch reads.
import assert from "node:assert/strict";
import type { Database, RootDatabase } from "lmdb";
import { ROUTABLE_ID_PATTERN } from "../domain/routable_id.js";
import type { SourceRecord } from "../domain/state_events.js";

export const STORE_FORMAT_VERSION = 3;
// Fourteen named dbs today (openShardDbs); room for more without reopening the env.
export const MAX_DBS = 32;

export const META_APPLIED_LSN = "applied_lsn";
export const APPLY_CHAIN_KEY = "chain";
export const META_FORMAT_VERSION = "format_version";
const META_SHARD_ID = "shard_id";

export interface StatusLogValue {
  k: "supersede" | "retract" | "approve" | "reject";
  a: string;
  /** supersede: the id of the new assertion. */
  o?: string;
  r?: string | null;
  at: number;
}

export interface VoteValue {
  a: string;
  d: 1 | -1;
  w: number;
  at: number;
}

export type IndexKey = [string, number];

/** vote_now's value: the voter's newest vote (`l`: its LSN). */
export interface VoteNowValue {
  d: 1 | -1;
  w: number;
  l: number;
  at: number;
}

/**
 * The value of every by_concept and by_agent entry: the key says everything. One shared
 * buffer, so a put allocates nothing for it (lmdb-js reads it when the batch commits).
 */
export const EMPTY_INDEX_VALUE: Buffer = Buffer.alloc(1);

export const ID_KEY_BYTES = 16;
const idScratch = Buffer.alloc(ID_KEY_BYTES);

/**
 * The `ids` key of an assertion id, in a buffer reused by the next call: lmdb-js copies a key
 * when get/put/doesExist is called, so pass it straight to one of those (a range start is
 * encoded later: use idKeyCopy). Throws RangeError for anything but 32 lowercase hex digits.
 */
export function idKey(id: string): Buffer {
  const key = idKeyOrNull(id);
  if (key === null) throw new RangeError(`not an assertion id: ${JSON.stringify(id)}`);
  return key;
}

/** idKey, or null for a string that is not an assertion id (nothing is stored under it). */
export function idKeyOrNull(id: string): Buffer | null {
  if (!ROUTABLE_ID_PATTERN.test(id)) return null;
  idScratch.write(id, "hex");
  return idScratch;
}

/** The LSN the `ids` index holds for `id`, undefined when none (or `id` is no assertion id). */
export function lsnOfId(ids: Database<number, Buffer>, id: string): number | undefined {
  const key = idKeyOrNull(id);
  return key === null ? undefined : ids.get(key);
}

/**
 * idKey for an id the writer already checked (ShardCore's records come from the front door,
 * which derives ids; replay checks them): skips the pattern test on the hot path but still
 * refuses anything that is not 16 bytes of hex.
 */
export function idKeyOfChecked(id: string): Buffer {
  if (id.length !== 32 || idScratch.write(id, "hex") !== ID_KEY_BYTES)
    throw new RangeError(`not an assertion id: ${JSON.stringify(id)}`);
  return idScratch;
}

/** idKey in a buffer of its own (for range bounds, which lmdb-js reads when iterating). */
export function idKeyCopy(id: string): Buffer {
  return Buffer.from(idKey(id));
}

/** The assertion id an `ids` key stands for. */
export function idOfKey(key: Uint8Array): string {
  return Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString("hex");
}

/** The databases state_reads.ts reads (one env, one owning thread). */
export interface StateDbs {
  records: Database<Buffer, number>;
  ids: Database<number, Buffer>;
  byConcept: Database<Buffer, IndexKey>;
  /** [concept, lsn] of every assertion active now (maintained by apply.ts). */
  active: Database<Buffer, IndexKey>;
  latest: Database<number, string>;
  conceptsHeld: Database<number, string>;
  statusLog: Database<StatusLogValue, IndexKey>;
  votes: Database<VoteValue, IndexKey>;
  /** [id, voter] -> that voter's newest vote on id (maintained by apply.ts). */
  voteNow: Database<VoteNowValue, [string, string]>;
  sources: Database<SourceRecord, string>;
  /** lsn -> id of assertions quarantined and not yet decided (the admin's pending list). */
  held: Database<string, number>;
}

/** Every database of the env: the lens reads' ones plus the agent index and meta. */
export interface ShardDbs extends StateDbs {
  byAgent: Database<Buffer, IndexKey>;
  meta: Database<number, string>;
  /** One entry whose version is the applied LSN (see the layout above). */
  applyChain: Database<number, string>;
}

/** Opens (creating when absent) every named database of a shard's env. */
export function openShardDbs(root: RootDatabase): ShardDbs {
  const opt = { compression: false, cache: false } as const;
  return {
    records: root.openDB<Buffer, number>({ name: "records", encoding: "binary", ...opt }),
    ids: root.openDB<number, Buffer>({
      name: "ids",
      encoding: "ordered-binary",
      keyEncoding: "binary",
      ...opt,
    }),
    byConcept: root.openDB<Buffer, IndexKey>({ name: "by_concept", encoding: "binary", ...opt }),
    byAgent: root.openDB<Buffer, IndexKey>({ name: "by_agent", encoding: "binary", ...opt }),
    active: root.openDB<Buffer, IndexKey>({ name: "active", encoding: "binary", ...opt }),
    latest: root.openDB<number, string>({ name: "latest", encoding: "ordered-binary", ...opt }),
    meta: root.openDB<number, string>({ name: "meta", encoding: "ordered-binary", ...opt }),
    conceptsHeld: root.openDB<number, string>({
      name: "concepts_held",
      encoding: "ordered-binary",
      ...opt,
    }),
    statusLog: root.openDB<StatusLogValue, IndexKey>({
      name: "status_log",
      encoding: "msgpack",
      ...opt,
    }),
    votes: root.openDB<VoteValue, IndexKey>({ name: "votes", encoding: "msgpack", ...opt }),
    voteNow: root.openDB<VoteNowValue, [string, string]>({
      name: "vote_now",
      encoding: "msgpack",
      ...opt,
    }),
    sources: root.openDB<SourceRecord, string>({ name: "sources", encoding: "msgpack", ...opt }),
    held: root.openDB<string, number>({ name: "held", encoding: "string", ...opt }),
    applyChain: root.openDB<number, string>({
      name: "apply_chain",
      encoding: "ordered-binary",
      useVersions: true,
      ...opt,
    }),
  };
}

/** The lens reads' view of the env (exactly the databases state_reads.ts uses). */
export function stateDbsOf(dbs: ShardDbs): StateDbs {
  return {
    records: dbs.records,
    ids: dbs.ids,
    byConcept: dbs.byConcept,
    active: dbs.active,
    latest: dbs.latest,
    conceptsHeld: dbs.conceptsHeld,
    statusLog: dbs.statusLog,
    votes: dbs.votes,
    voteNow: dbs.voteNow,
    sources: dbs.sources,
    held: dbs.held,
  };
}

/** Refuses an env stamped with another shard's id (before anything, an upgrade, writes). */
export function checkShardOf(meta: Database<number, string>, shardId: number): void {
  const storedShard = meta.get(META_SHARD_ID);
  if (storedShard !== undefined && storedShard !== shardId) {
    throw new Error(`LMDB env belongs to shard ${storedShard}, opened as shard ${shardId}`);
  }
}

/**
 * Stamps a new env with its shard id and format version, or checks an existing env's; returns
 * the applied LSN stored in it (0 for a new env).
 */
export function initMeta(
  root: RootDatabase,
  meta: Database<number, string>,
  shardId: number,
): number {
  const storedShard = meta.get(META_SHARD_ID);
  const storedVersion = meta.get(META_FORMAT_VERSION);
  if (storedShard === undefined) {
    root.transactionSync(() => {
      meta.put(META_SHARD_ID, shardId);
      meta.put(META_FORMAT_VERSION, STORE_FORMAT_VERSION);
      meta.put(META_APPLIED_LSN, 0);
    });
    return 0;
  }
  if (storedShard !== shardId) {
    throw new Error(`LMDB env belongs to shard ${storedShard}, opened as shard ${shardId}`);
  }
  if (storedVersion !== STORE_FORMAT_VERSION) {
    throw new Error(
      `shard ${shardId}: store format ${String(storedVersion)} unsupported (want ${STORE_FORMAT_VERSION}). ` +
        "Format 2 is upgraded at open; format 1 (records keyed by id) was written by builds before 2026-12-04 and has no in-place " +
        "upgrade: start this version on a new data directory (STEMEDB_DATA_DIR).",
    );
  }
  const lsn = meta.get(META_APPLIED_LSN);
  assert.ok(typeof lsn === "number" && Number.isSafeInteger(lsn) && lsn >= 0, "bad applied_lsn");
  return lsn;
}

/**
 * Points the apply chain at `appliedLsn` (meta is the authority: an env written before the
 * chain existed has none, and every later write moves both in one transaction).
 */
export function initApplyChain(
  root: RootDatabase,
  chain: Database<number, string>,
  appliedLsn: number,
): void {
  if (chain.getEntry(APPLY_CHAIN_KEY)?.version === appliedLsn) return;
  root.transactionSync(() => {
    chain.put(APPLY_CHAIN_KEY, 0, appliedLsn);
  });
}
