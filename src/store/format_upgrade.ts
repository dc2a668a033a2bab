// In-place upgrade of a shard's LMDB env from store format 2 to 3: format 3 adds the
// `active` and `vote_now` indexes (shard_dbs.ts), built here from the records, their status
// log and the vote log. Runs at open, before initMeta checks the version, in transactions
// of a bounded size; the version is stamped in a last one, so a crash part-way leaves
// format 2 and the next open starts over (the puts are idempotent).
import type { Database, RootDatabase } from "lmdb";
import {
  EMPTY_INDEX_VALUE,
  type IndexKey,
  META_FORMAT_VERSION,
  type ShardDbs,
  STORE_FORMAT_VERSION,
  stateDbsOf,
  type VoteValue,
} from "./shard_dbs.js";
import { LIVE_LSN, mustReadAt, statusAsOf } from "./state_reads.js";

/** by_concept entries looked at per upgrade transaction (bounds its dirty pages). */
const UPGRADE_BATCH_ENTRIES = 20_000;

export interface UpgradeReport {
  from: number;
  to: number;
  indexed: number;
}

/** Upgrades a format 2 env to format 3; null when the env is not format 2 (nothing done). */
export function upgradeStoreFormat(root: RootDatabase, dbs: ShardDbs): UpgradeReport | null {
  if (dbs.meta.get(META_FORMAT_VERSION) !== 2) return null;
  if (STORE_FORMAT_VERSION !== 3) throw new Error("format_upgrade.ts knows format 2 -> 3 only");
  const state = stateDbsOf(dbs);
  // A run cut short, then a format 2 build writing again, can have left entries that no
  // longer hold: start from empty.
  dbs.active.clearSync();
  dbs.voteNow.clearSync();
  const indexed = inBatches(root, dbs.byConcept, (key) => {
    const rec = mustReadAt(state, key[1], "by_concept");
    if (statusAsOf(state, rec, LIVE_LSN).status !== "active") return false;
    dbs.active.put([key[0], key[1]], EMPTY_INDEX_VALUE);
    return true;
  });
  // Votes in key order ([id, lsn] ascending): each voter's newest vote is put last.
  inBatches(root, dbs.votes, (key) => {
    const v = dbs.votes.get(key) as VoteValue;
    dbs.voteNow.put([key[0], v.a], { d: v.d, w: v.w, l: key[1], at: v.at });
    return true;
  });
  root.transactionSync(() => {
    dbs.meta.put(META_FORMAT_VERSION, 3);
  });
  return { from: 2, to: 3, indexed };
}

/** Calls `visit` on every key of `db` in order, UPGRADE_BATCH_ENTRIES per transaction. */
function inBatches<V>(
  root: RootDatabase,
  db: Database<V, IndexKey>,
  visit: (key: IndexKey) => boolean,
): number {
  let after: IndexKey | null = null;
  let counted = 0;
  for (;;) {
    let seen = 0;
    root.transactionSync(() => {
      const range = db.getKeys(
        after === null
          ? { limit: UPGRADE_BATCH_ENTRIES }
          : { start: after, exclusiveStart: true, limit: UPGRADE_BATCH_ENTRIES },
      );
      for (const key of range) {
        seen++;
        after = [key[0], key[1]];
        if (visit(after)) counted++;
      }
    });
    if (seen < UPGRADE_BATCH_ENTRIES) return counted;
  }
}
