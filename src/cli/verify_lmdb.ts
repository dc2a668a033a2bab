// LMDB half of `stemedb verify`: opens a shard's env read-only with the same named dbs as
// ShardStore (no ShardStore: its open writes meta into an empty env and it has no
// iteration), checks every record and index entry, and cross-checks WAL records against it.
import { type Database, open, type RootDatabase } from "lmdb";
import { decodeSourceRecord, decodeStateEvent } from "../domain/state_events.js";
import { AssertionStatus } from "../schema/generated/stemedb_generated.js";
import { assertionView, decodeAssertion } from "../store/assertion_codec.js";
import { STORE_FORMAT_VERSION, WalRecordKind } from "../store/shard_store.js";

/** Messages kept per shard; the rest are counted (a broken index could yield millions). */
const MAX_MESSAGES = 50;
/** WAL records above applied_lsn remembered for the LMDB pass (normally a few batches). */
const MAX_ABOVE_APPLIED_TRACKED = 1_000_000;

export class Findings {
  readonly problems: string[] = [];
  readonly warnings: string[] = [];
  problemCount = 0;
  warningCount = 0;

  fail(message: string): void {
    this.problemCount++;
    if (this.problems.length < MAX_MESSAGES) this.problems.push(message);
  }

  warn(message: string): void {
    this.warningCount++;
    if (this.warnings.length < MAX_MESSAGES) this.warnings.push(message);
  }
}

type IndexKey = [string, number];

export interface LmdbView {
  dir: string;
  appliedLsn: number;
  records: Database<Buffer, string>;
  byConcept: Database<string, IndexKey>;
  byAgent: Database<string, IndexKey>;
  latest: Database<string, string>;
  close(): void;
}

export interface LmdbSummary {
  dir: string;
  applied_lsn: number;
  records: number;
  by_concept: number;
  by_agent: number;
  latest: number;
}

/** Opens the env read-only; null (with a problem recorded) when it cannot be read. */
export function openLmdbReadOnly(dir: string, shardId: number, f: Findings): LmdbView | null {
  let root: RootDatabase;
  try {
    root = open({ path: dir, readOnly: true, noSubdir: false, maxDbs: 32, compression: false });
  } catch (err) {
    f.fail(`cannot open LMDB env ${dir} read-only: ${(err as Error).message}`);
    return null;
  }
  const close = (): void => void root.close();
  try {
    const opt = { compression: false, cache: false } as const;
    const named = <V, K extends string | IndexKey>(
      name: string,
      encoding: "binary" | "string" | "ordered-binary",
    ) => {
      try {
        return root.openDB<V, K>({ name, encoding, ...opt });
      } catch (err) {
        throw new Error(`named database "${name}" cannot be opened: ${(err as Error).message}`);
      }
    };
    const records = named<Buffer, string>("records", "binary");
    const byConcept = named<string, IndexKey>("by_concept", "string");
    const byAgent = named<string, IndexKey>("by_agent", "string");
    const latest = named<string, string>("latest", "string");
    const meta = named<number, string>("meta", "ordered-binary");
    const storedShard = meta.get("shard_id");
    const version = meta.get("format_version");
    const applied = meta.get("applied_lsn");
    if (storedShard !== shardId) {
      f.fail(`LMDB meta shard_id is ${String(storedShard)}, expected ${shardId}`);
    }
    if (version !== STORE_FORMAT_VERSION) {
      f.fail(`LMDB meta format_version is ${String(version)}, expected ${STORE_FORMAT_VERSION}`);
    }
    if (typeof applied !== "number" || !Number.isSafeInteger(applied) || applied < 0) {
      f.fail(`LMDB meta applied_lsn is ${String(applied)}, not a non-negative integer`);
      close();
      return null;
    }
    return { dir, appliedLsn: applied, records, byConcept, byAgent, latest, close };
  } catch (err) {
    f.fail(`LMDB env ${dir}: ${(err as Error).message}`);
    close();
    return null;
  }
}

/** lsn and id of the record `id`, or null when LMDB lacks it or it does not decode. */
function storedLsn(lmdb: LmdbView, id: string): number | null | "corrupt" {
  const buf = lmdb.records.getBinaryFast(id);
  if (buf === undefined) return null;
  try {
    return Number(assertionView(buf).lsn());
  } catch {
    return "corrupt";
  }
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

function isIndexKey(key: unknown): key is IndexKey {
  return (
    Array.isArray(key) &&
    key.length === 2 &&
    typeof key[0] === "string" &&
    typeof key[1] === "number" &&
    Number.isSafeInteger(key[1])
  );
}

/** Checks records, both time indexes and latest. `walAbove` is walCrossCheck's map. */
export function checkLmdb(
  lmdb: LmdbView,
  shardId: number,
  f: Findings,
  walAbove: Map<number, string> | null,
): LmdbSummary {
  const applied = lmdb.appliedLsn;
  const s: LmdbSummary = {
    dir: lmdb.dir,
    applied_lsn: applied,
    records: 0,
    by_concept: 0,
    by_agent: 0,
    latest: 0,
  };

  // 1. Every record decodes, belongs here, is applied, and has both index entries.
  for (const { key: id, value } of lmdb.records.getRange({})) {
    s.records++;
    let rec: ReturnType<typeof decodeAssertion>;
    try {
      rec = decodeAssertion(value); // copies out before the next read reuses buffers
    } catch (err) {
      f.fail(`record ${id} does not decode: ${(err as Error).message}`);
      continue;
    }
    if (rec.id !== id) f.fail(`record stored under key ${id} has id ${rec.id}`);
    if (rec.shard !== shardId) f.fail(`record ${id} is for shard ${rec.shard}`);
    // Above applied_lsn is fine only for a partially committed apply batch the WAL holds
    // (counted by the WAL pass; replay re-applies it).
    if (rec.lsn > applied && walAbove?.get(rec.lsn) !== id) {
      f.fail(
        `record ${id} has lsn ${rec.lsn} above applied_lsn ${applied} and the WAL does not hold it`,
      );
    }
    if (lmdb.byConcept.get([rec.concept, rec.lsn]) !== id) {
      f.fail(
        `by_concept entry missing for record ${id} (concept "${rec.concept}", lsn ${rec.lsn})`,
      );
    }
    if (lmdb.byAgent.get([rec.agent, rec.lsn]) !== id) {
      f.fail(`by_agent entry missing for record ${id} (agent "${rec.agent}", lsn ${rec.lsn})`);
    }
  }

  // 2. by_concept entries point at matching records; per concept (keys are grouped by
  //    concept, ascending lsn) the newest active record must be latest[concept].
  let concept: string | null = null;
  let newestActive: string | null = null;
  const finishConcept = (): void => {
    if (concept === null) return;
    const latestId = lmdb.latest.get(concept);
    if (newestActive === null && latestId !== undefined) {
      f.fail(`latest["${concept}"] is ${latestId} but the concept has no active record`);
    } else if (newestActive !== null && latestId !== newestActive) {
      f.fail(
        `latest["${concept}"] is ${latestId ?? "missing"}, expected the newest active record ${newestActive}`,
      );
    }
  };
  for (const { key, value: id } of lmdb.byConcept.getRange({})) {
    s.by_concept++;
    if (!isIndexKey(key)) {
      f.fail(`by_concept has a malformed key ${JSON.stringify(key)}`);
      continue;
    }
    if (key[0] !== concept) {
      finishConcept();
      concept = key[0];
      newestActive = null;
    }
    const buf = lmdb.records.getBinaryFast(id);
    if (buf === undefined) {
      f.fail(`by_concept ["${key[0]}", ${key[1]}] points to missing record ${id}`);
      continue;
    }
    try {
      const v = assertionView(buf);
      if (v.concept() !== key[0] || Number(v.lsn()) !== key[1]) {
        f.fail(
          `by_concept ["${key[0]}", ${key[1]}] points to ${id} with concept "${v.concept()}", lsn ${v.lsn()}`,
        );
      } else if (v.status() === AssertionStatus.Active) newestActive = id;
    } catch {
      // The record pass reports records that do not decode.
    }
  }
  finishConcept();

  // 3. by_agent entries point at matching records.
  for (const { key, value: id } of lmdb.byAgent.getRange({})) {
    s.by_agent++;
    if (!isIndexKey(key)) {
      f.fail(`by_agent has a malformed key ${JSON.stringify(key)}`);
      continue;
    }
    const buf = lmdb.records.getBinaryFast(id);
    if (buf === undefined) {
      f.fail(`by_agent ["${key[0]}", ${key[1]}] points to missing record ${id}`);
      continue;
    }
    try {
      const v = assertionView(buf);
      if (v.agent() !== key[0] || Number(v.lsn()) !== key[1]) {
        f.fail(
          `by_agent ["${key[0]}", ${key[1]}] points to ${id} with agent "${v.agent()}", lsn ${v.lsn()}`,
        );
      }
    } catch {}
  }

  // 4. latest entries point at an active record of that concept that by_concept knows
  //    (pass 2 covers concepts with index entries; this catches latest-only concepts).
  for (const { key: c, value: id } of lmdb.latest.getRange({})) {
    s.latest++;
    const buf = lmdb.records.getBinaryFast(id);
    if (buf === undefined) {
      f.fail(`latest["${c}"] points to missing record ${id}`);
      continue;
    }
    try {
      const v = assertionView(buf);
      const lsn = Number(v.lsn());
      if (v.concept() !== c) f.fail(`latest["${c}"] points to ${id} of concept "${v.concept()}"`);
      else if (v.status() !== AssertionStatus.Active)
        f.fail(`latest["${c}"] points to inactive ${id}`);
      else if (lmdb.byConcept.get([c, lsn]) !== id) {
        f.fail(`latest["${c}"] points to ${id}, which by_concept does not index`);
      }
    } catch {}
  }
  if (s.by_concept !== s.records || s.by_agent !== s.records) {
    f.fail(
      `index sizes differ from the record count: ${s.records} records, ${s.by_concept} by_concept, ${s.by_agent} by_agent`,
    );
  }
  return s;
}
