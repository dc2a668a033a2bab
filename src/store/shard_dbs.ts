// The layout of one shard's LMDB environment: which named databases exist, their key and
// value encodings, and the meta entries that tie the env to its shard and format version.
// Opening the databases and checking the meta is done once at start; keeping it here leaves
// shard_store.ts with the store's behaviour (apply, reads, checkpoints).
//
// Named databases inside the environment:
//   records     id -> Assertion FlatBuffer bytes, exactly as received (no re-encode)
//   by_concept  [concept, lsn] -> id          (time order per concept)
//   by_agent    [agent, lsn] -> id            (time order per agent)
//   latest      concept -> id of the newest assertion inserted ACTIVE (a hint: its status
//               may have changed since; lenses check, see state_reads.ts)
//   concepts_held  concept -> 1 for concepts whose assertions arrived quarantined (so subtree
//               scans find concepts that have no active insert)
//   status_log  [id, lsn] -> {k, a, o?, r?, at}  supersede/retract/approve/reject of id
//   votes       [id, lsn] -> {a, d, w, at}       every vote on id (newest per voter counts)
//   sources     id -> SourceRecord
//   held        lsn -> id of assertions waiting in quarantine (removed by any decision)
//   meta        "applied_lsn" | "format_version" | "shard_id" -> number
//   apply_chain "chain" -> 0, versioned: its version is the applied LSN. Every async apply is
//               conditional on it (lmdb-js ifVersion), so with two commits in flight a
//               failed one makes the next a no-op instead of leaving a gap behind appliedLsn.
//
// The status of an assertion as of LSN L is its insert status folded with its status_log
// entries up to L; that one rule serves live reads (L = infinity) and as_of_epoch reads.
import assert from "node:assert/strict";
import type { Database, RootDatabase } from "lmdb";
import type { SourceRecord } from "../domain/state_events.js";

export const STORE_FORMAT_VERSION = 1;
// Six dbs today; room for votes, supersession links, sources... without reopening.
export const MAX_DBS = 32;

export const META_APPLIED_LSN = "applied_lsn";
export const APPLY_CHAIN_KEY = "chain";
const META_FORMAT_VERSION = "format_version";
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

/** The databases state_reads.ts reads (one env, one owning thread). */
export interface StateDbs {
  records: Database<Buffer, string>;
  byConcept: Database<string, IndexKey>;
  latest: Database<string, string>;
  conceptsHeld: Database<number, string>;
  statusLog: Database<StatusLogValue, IndexKey>;
  votes: Database<VoteValue, IndexKey>;
  sources: Database<SourceRecord, string>;
  /** lsn -> id of assertions quarantined and not yet decided (the admin's pending list). */
  held: Database<string, number>;
}

/** Every database of the env: the lens reads' ones plus the agent index and meta. */
export interface ShardDbs extends StateDbs {
  byAgent: Database<string, IndexKey>;
  meta: Database<number, string>;
  /** One entry whose version is the applied LSN (see the layout above). */
  applyChain: Database<number, string>;
}

/** Opens (creating when absent) every named database of a shard's env. */
export function openShardDbs(root: RootDatabase): ShardDbs {
  const opt = { compression: false, cache: false } as const;
  return {
    records: root.openDB<Buffer, string>({ name: "records", encoding: "binary", ...opt }),
    byConcept: root.openDB<string, IndexKey>({ name: "by_concept", encoding: "string", ...opt }),
    byAgent: root.openDB<string, IndexKey>({ name: "by_agent", encoding: "string", ...opt }),
    latest: root.openDB<string, string>({ name: "latest", encoding: "string", ...opt }),
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
    byConcept: dbs.byConcept,
    latest: dbs.latest,
    conceptsHeld: dbs.conceptsHeld,
    statusLog: dbs.statusLog,
    votes: dbs.votes,
    sources: dbs.sources,
    held: dbs.held,
  };
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
      `shard ${shardId}: store format ${String(storedVersion)} unsupported (want ${STORE_FORMAT_VERSION})`,
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
