// LMDB half of `stemedb verify`: opens a shard's env read-only with the same named dbs as
// ShardStore (no ShardStore: its open writes meta into an empty env and it has no
// iteration) and checks every record and index entry (WAL records: verify_cross_check.ts).
import { type Database, open, type RootDatabase } from "lmdb";
import { AssertionStatus } from "../schema/generated/stemedb_generated.js";
import { assertionView, decodeAssertion } from "../store/assertion_codec.js";
import { ID_KEY_BYTES, idOfKey, lsnOfId } from "../store/shard_dbs.js";
import { STORE_FORMAT_VERSION } from "../store/shard_store.js";

/** Messages kept per shard; the rest are counted (a broken index could yield millions). */
const MAX_MESSAGES = 50;

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
  records: Database<Buffer, number>;
  ids: Database<number, Buffer>;
  byConcept: Database<Buffer, IndexKey>;
  byAgent: Database<Buffer, IndexKey>;
  latest: Database<number, string>;
  /** Absent in a format 2 env (verify then skips its checks). */
  active: Database<Buffer, IndexKey> | undefined;
  statusLog: Database<{ k: string }, IndexKey>;
  close(): void;
}

export interface LmdbSummary {
  dir: string;
  applied_lsn: number;
  records: number;
  ids: number;
  by_concept: number;
  by_agent: number;
  latest: number;
  active: number;
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
    const named = <V, K extends string | number | Buffer | IndexKey>(
      name: string,
      encoding: "binary" | "string" | "ordered-binary" | "msgpack",
      keyEncoding?: "binary",
    ) => {
      try {
        return root.openDB<V, K>({ name, encoding, keyEncoding, ...opt });
      } catch (err) {
        throw new Error(`named database "${name}" cannot be opened: ${(err as Error).message}`);
      }
    };
    const records = named<Buffer, number>("records", "binary");
    const ids = named<number, Buffer>("ids", "ordered-binary", "binary");
    const byConcept = named<Buffer, IndexKey>("by_concept", "binary");
    const byAgent = named<Buffer, IndexKey>("by_agent", "binary");
    const latest = named<number, string>("latest", "ordered-binary");
    const active = named<Buffer, IndexKey>("active", "binary");
    const statusLog = named<{ k: string }, IndexKey>("status_log", "msgpack");
    const meta = named<number, string>("meta", "ordered-binary");
    const storedShard = meta.get("shard_id");
    const version = meta.get("format_version");
    const applied = meta.get("applied_lsn");
    if (storedShard !== shardId) {
      f.fail(`LMDB meta shard_id is ${String(storedShard)}, expected ${shardId}`);
    }
    const upgradable = version === 2 && active === undefined;
    if (upgradable) {
      f.warn(
        "LMDB store format 2: this build upgrades it at its first start; active index not checked",
      );
    } else if (version !== STORE_FORMAT_VERSION) {
      f.fail(`LMDB meta format_version is ${String(version)}, expected ${STORE_FORMAT_VERSION}`);
    } else if (active === undefined) {
      f.fail('LMDB named database "active" is missing from a format 3 env');
    }
    if (typeof applied !== "number" || !Number.isSafeInteger(applied) || applied < 0) {
      f.fail(`LMDB meta applied_lsn is ${String(applied)}, not a non-negative integer`);
      close();
      return null;
    }
    return {
      dir,
      appliedLsn: applied,
      records,
      ids,
      byConcept,
      byAgent,
      latest,
      active,
      statusLog,
      close,
    };
  } catch (err) {
    f.fail(`LMDB env ${dir}: ${(err as Error).message}`);
    close();
    return null;
  }
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

/** An assertion's status now: its insert status folded with its status log (state_reads.ts). */
function activeAfterStatusLog(lmdb: LmdbView, id: string, insertedActive: boolean): boolean {
  let active = insertedActive;
  for (const { value } of lmdb.statusLog.getRange({
    start: [id, -1],
    end: [id, Number.MAX_SAFE_INTEGER],
  }))
    active = value.k === "approve";
  return active;
}

/** Checks records, the id index, both time indexes, latest and active. `walAbove`: walCrossCheck's map. */
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
    ids: 0,
    by_concept: 0,
    by_agent: 0,
    latest: 0,
    active: 0,
  };
  /** Records pass 3 found active now (the `active` index must hold exactly these). */
  let activeNow = 0;
  /** The record at `lsn` as a view (valid until the next read), or a reason it is unusable. */
  const at = (lsn: number): ReturnType<typeof assertionView> | "missing" | "corrupt" => {
    const buf = lmdb.records.getBinaryFast(lsn);
    if (buf === undefined) return "missing";
    try {
      const v = assertionView(buf);
      v.lsn(); // throws on a buffer too short to be a FlatBuffer
      return v;
    } catch {
      return "corrupt"; // the record pass reports it
    }
  };

  // 1. Every record decodes, sits at its own LSN, belongs here, is applied, and has its id
  //    and both time index entries.
  for (const { key: lsn, value } of lmdb.records.getRange({})) {
    s.records++;
    let rec: ReturnType<typeof decodeAssertion>;
    try {
      rec = decodeAssertion(value); // copies out before the next read reuses buffers
    } catch (err) {
      f.fail(`record at lsn ${lsn} does not decode: ${(err as Error).message}`);
      continue;
    }
    const id = rec.id;
    if (rec.lsn !== lsn) f.fail(`record ${id} stored under lsn ${lsn} carries lsn ${rec.lsn}`);
    if (rec.shard !== shardId) f.fail(`record ${id} is for shard ${rec.shard}`);
    // Above applied_lsn is fine only for a partially committed apply batch the WAL holds
    // (counted by the WAL pass; replay re-applies it).
    if (lsn > applied && walAbove?.get(lsn) !== id) {
      f.fail(
        `record ${id} has lsn ${lsn} above applied_lsn ${applied} and the WAL does not hold it`,
      );
    }
    const idLsn = lsnOfId(lmdb.ids, id);
    if (idLsn !== lsn) f.fail(`ids entry of record ${id} is ${idLsn ?? "missing"}, not ${lsn}`);
    if (!lmdb.byConcept.doesExist([rec.concept, lsn])) {
      f.fail(`by_concept entry missing for record ${id} (concept "${rec.concept}", lsn ${lsn})`);
    }
    if (!lmdb.byAgent.doesExist([rec.agent, lsn])) {
      f.fail(`by_agent entry missing for record ${id} (agent "${rec.agent}", lsn ${lsn})`);
    }
  }

  // 2. Every id entry names a record with that id.
  for (const { key, value: lsn } of lmdb.ids.getRange({})) {
    s.ids++;
    const id = idOfKey(key);
    if (key.byteLength !== ID_KEY_BYTES) {
      f.fail(`ids has a key of ${key.byteLength} bytes (${id}), not ${ID_KEY_BYTES}`);
      continue;
    }
    const v = at(lsn);
    if (v === "missing") f.fail(`ids["${id}"] points to lsn ${lsn}, which holds no record`);
    else if (v !== "corrupt" && v.id() !== id)
      f.fail(`ids["${id}"] points to lsn ${lsn}, which holds ${v.id()}`);
  }

  // 3. by_concept entries name matching records; per concept (keys are grouped by concept,
  //    ascending lsn) the newest active record must be latest[concept].
  let concept: string | null = null;
  let newestActive: number | null = null;
  const finishConcept = (): void => {
    if (concept === null) return;
    const latestLsn = lmdb.latest.get(concept);
    if (newestActive === null && latestLsn !== undefined) {
      f.fail(`latest["${concept}"] is lsn ${latestLsn} but the concept has no active record`);
    } else if (newestActive !== null && latestLsn !== newestActive) {
      f.fail(
        `latest["${concept}"] is lsn ${latestLsn ?? "missing"}, expected the newest active record's ${newestActive}`,
      );
    }
  };
  for (const key of lmdb.byConcept.getKeys({})) {
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
    const v = at(key[1]);
    if (v === "missing") {
      f.fail(`by_concept ["${key[0]}", ${key[1]}] points to a missing record`);
    } else if (v !== "corrupt") {
      if (v.concept() !== key[0]) {
        f.fail(
          `by_concept ["${key[0]}", ${key[1]}] points to ${v.id()} of concept "${v.concept()}"`,
        );
      } else {
        const insertedActive = v.status() === AssertionStatus.Active;
        if (insertedActive) newestActive = key[1];
        // v is only valid until the next read: take the id before reading the status log.
        const active = lmdb.active;
        if (active !== undefined) {
          const isActive = activeAfterStatusLog(lmdb, v.id() ?? "", insertedActive);
          if (isActive) activeNow++;
          if (isActive !== active.doesExist(key))
            f.fail(
              `active ${isActive ? "lacks" : "holds"} ["${key[0]}", ${key[1]}], which is ${isActive ? "" : "not "}active`,
            );
        }
      }
    }
  }
  finishConcept();

  // 4. by_agent entries name matching records.
  for (const key of lmdb.byAgent.getKeys({})) {
    s.by_agent++;
    if (!isIndexKey(key)) {
      f.fail(`by_agent has a malformed key ${JSON.stringify(key)}`);
      continue;
    }
    const v = at(key[1]);
    if (v === "missing") f.fail(`by_agent ["${key[0]}", ${key[1]}] points to a missing record`);
    else if (v !== "corrupt" && v.agent() !== key[0])
      f.fail(`by_agent ["${key[0]}", ${key[1]}] points to ${v.id()} of agent "${v.agent()}"`);
  }

  // 5. latest entries name an active record of that concept that by_concept knows (pass 3
  //    covers concepts with index entries; this catches latest-only concepts).
  for (const { key: c, value: lsn } of lmdb.latest.getRange({})) {
    s.latest++;
    const v = at(lsn);
    if (v === "missing") f.fail(`latest["${c}"] points to lsn ${lsn}, which holds no record`);
    else if (v === "corrupt") continue;
    else if (v.concept() !== c)
      f.fail(`latest["${c}"] points to ${v.id()} of concept "${v.concept()}"`);
    else if (v.status() !== AssertionStatus.Active)
      f.fail(`latest["${c}"] points to inactive ${v.id()}`);
    else if (!lmdb.byConcept.doesExist([c, lsn]))
      f.fail(`latest["${c}"] points to lsn ${lsn}, which by_concept does not index`);
  }
  // 6. active holds nothing else (pass 3 checked every entry it should hold).
  if (lmdb.active !== undefined) {
    for (const key of lmdb.active.getKeys({})) {
      s.active++;
      if (!isIndexKey(key)) f.fail(`active has a malformed key ${JSON.stringify(key)}`);
    }
    if (s.active !== activeNow)
      f.fail(`active has ${s.active} entries, but ${activeNow} records are active`);
  }
  if (s.by_concept !== s.records || s.by_agent !== s.records || s.ids !== s.records) {
    f.fail(
      `index sizes differ from the record count: ${s.records} records, ${s.ids} ids, ${s.by_concept} by_concept, ${s.by_agent} by_agent`,
    );
  }
  return s;
}
