// WAL vs LMDB half of `stemedb verify`: checks each WAL record as recovery replays it (kind,
// decoding, shard, LSN order, presence in LMDB relative to applied_lsn) and hands the
// records above applied_lsn to the LMDB pass (verify_lmdb.ts).
import { decodeSourceRecord, decodeStateEvent } from "../domain/state_events.js";
import { decodeAssertion } from "../store/assertion_codec.js";
import { lsnOfId } from "../store/shard_dbs.js";
import { WalRecordKind } from "../store/shard_store.js";
import type { Findings, LmdbView } from "./verify_lmdb.js";

/** WAL records above applied_lsn remembered for the LMDB pass (normally a few batches). */
const MAX_ABOVE_APPLIED_TRACKED = 1_000_000;

/** LSN LMDB holds the record `id` at, null when it lacks it ("corrupt": the pass reports it). */
function storedLsn(lmdb: LmdbView, id: string): number | null | "corrupt" {
  const lsn = lsnOfId(lmdb.ids, id);
  if (lsn === undefined) return null;
  return typeof lsn === "number" && Number.isSafeInteger(lsn) ? lsn : "corrupt";
}

/**
 * Per-record WAL check, run inside recoverWal's onRecord (the payload is only valid during
 * the call): kind, decoding, shard, LSN order, and presence in LMDB relative to applied_lsn.
 */
export function walCrossCheck(shardId: number, lmdb: LmdbView | null, f: Findings) {
  const aboveIds = new Map<number, string>();
  let aboveTracked = true;
  let partial = 0;
  let duplicates = 0;
  const state = {
    records: 0,
    firstLsn: null as number | null,
    lastLsn: null as number | null,
    aboveApplied: 0,
    onRecord(kind: number, lsn: number, payload: Buffer): void {
      state.records++;
      if (state.lastLsn !== null && lsn !== state.lastLsn + 1) {
        f.fail(`WAL LSNs are not contiguous: ${lsn} follows ${state.lastLsn}`);
      }
      state.firstLsn ??= lsn;
      state.lastLsn = lsn;
      if (kind === WalRecordKind.StateEvent || kind === WalRecordKind.SourceInsert) {
        // Votes, status changes and sources: check they decode (LMDB holds them in their
        // own databases, keyed by target and LSN; replay re-puts them idempotently).
        try {
          if (kind === WalRecordKind.StateEvent) decodeStateEvent(payload);
          else decodeSourceRecord(payload);
        } catch (err) {
          f.fail(
            `WAL record at LSN ${lsn} (kind ${kind}) does not decode: ${(err as Error).message}`,
          );
        }
        return;
      }
      if (kind !== WalRecordKind.AssertionInsert) {
        f.fail(`WAL record at LSN ${lsn} has unknown kind ${kind}`);
        return;
      }
      let id: string;
      try {
        const rec = decodeAssertion(payload);
        id = rec.id;
        if (rec.lsn !== lsn) f.fail(`WAL record at LSN ${lsn} (${id}) carries lsn ${rec.lsn}`);
        if (rec.shard !== shardId)
          f.fail(`WAL record at LSN ${lsn} (${id}) is for shard ${rec.shard}`);
      } catch (err) {
        f.fail(
          `WAL record at LSN ${lsn} does not decode as an assertion: ${(err as Error).message}`,
        );
        return;
      }
      if (lmdb === null) return;
      const stored = storedLsn(lmdb, id);
      if (lsn > lmdb.appliedLsn) {
        state.aboveApplied++;
        if (aboveIds.size < MAX_ABOVE_APPLIED_TRACKED) aboveIds.set(lsn, id);
        else aboveTracked = false;
        if (stored === lsn) partial++;
        return;
      }
      // A stored record that does not decode ("corrupt") is reported by the LMDB pass.
      if (stored === null) {
        f.fail(
          `WAL record at LSN ${lsn} (${id}) is at or below applied_lsn ${lmdb.appliedLsn} but LMDB lacks it`,
        );
      } else if (stored === "corrupt") {
        return;
      } else if (stored < lsn) {
        duplicates++; // the same id logged twice: the store keeps the first, by design
      } else if (stored !== lsn) {
        f.fail(`WAL record at LSN ${lsn} (${id}) is stored in LMDB with lsn ${stored}`);
      }
    },
    /** lsn -> id of the WAL records above applied_lsn; null when too many to track. */
    walIdsAboveApplied(): Map<number, string> | null {
      if (partial > 0) {
        f.warn(
          `${partial} WAL record(s) above applied_lsn are already in LMDB (an apply batch ` +
            "committed in parts before a stop or crash; replay re-applies them idempotently)",
        );
      }
      if (duplicates > 0) f.warn(`${duplicates} WAL record(s) repeat an id logged earlier`);
      return aboveTracked ? aboveIds : null;
    },
  };
  return state;
}
