// SQLite for `bench:peers`: better-sqlite3 (synchronous, in-process), journal_mode=WAL,
// synchronous=FULL, the same table and concept index as PostgreSQL. SQLite has one writer:
// every concurrent client's commit goes through one connection, one after another.
//
// npm (11) runs no install scripts of dependencies unless approved, so a fresh `npm install`
// leaves better-sqlite3 without its native addon; it ships its C sources, and we build them
// with node-gyp (npm's bundled copy, through the package's own `build-release` script).
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import type BetterSqlite3 from "better-sqlite3";
import { type CellResult, runClosedLoop, runLatestLoop, SerialQueue } from "./driver.js";
import { RecordSource } from "./records.js";
import { BATCH_RECORDS, type PeerSystem, READ_RUN } from "./system.js";

const ADDON = path.join("build", "Release", "better_sqlite3.node");

/** Builds better-sqlite3's addon if it is missing, then loads the module. */
export async function loadBetterSqlite3(): Promise<typeof BetterSqlite3> {
  const require = createRequire(import.meta.url);
  let pkgDir: string;
  try {
    pkgDir = path.dirname(require.resolve("better-sqlite3/package.json"));
  } catch {
    throw new Error("better-sqlite3 is not installed: run `npm install`");
  }
  if (!fs.existsSync(path.join(pkgDir, ADDON))) {
    process.stderr.write(
      `peers: better-sqlite3's native addon (${path.join(pkgDir, ADDON)}) is missing ` +
        "(npm does not run dependencies' install scripts); building it from its bundled C " +
        "sources with node-gyp: `npm run build-release` in that directory (needs g++ and " +
        "make; about 3 minutes on 2 vCPUs)\n",
    );
    try {
      execFileSync("npm", ["run", "build-release"], { cwd: pkgDir, stdio: "inherit" });
    } catch (err) {
      throw new Error(
        `building better-sqlite3 failed (${String(err)}); try \`cd ${pkgDir} && npx node-gyp rebuild --release\``,
      );
    }
    if (!fs.existsSync(path.join(pkgDir, ADDON))) {
      throw new Error(`node-gyp finished but ${ADDON} is still missing in ${pkgDir}`);
    }
  }
  return (await import("better-sqlite3")).default;
}

export async function startSqlite(root: string): Promise<PeerSystem> {
  const Database = await loadBetterSqlite3();
  const db = new Database(path.join(root, "sqlite.db"));
  try {
    db.pragma("journal_mode = WAL");
    db.pragma("synchronous = FULL");
    const journal = db.pragma("journal_mode", { simple: true });
    const sync = db.pragma("synchronous", { simple: true });
    if (journal !== "wal" || sync !== 2) {
      throw new Error(`SQLite refused WAL/FULL: journal_mode=${journal} synchronous=${sync}`);
    }
    db.exec(
      "CREATE TABLE assertions (id BLOB PRIMARY KEY, concept TEXT NOT NULL, ts INTEGER NOT NULL, record BLOB NOT NULL);" +
        "CREATE INDEX assertions_concept_ts ON assertions (concept, ts DESC);",
    );
  } catch (err) {
    db.close();
    throw err;
  }
  const version = (db.prepare("SELECT sqlite_version() AS v").get() as { v: string }).v;
  const insert = db.prepare("INSERT INTO assertions (id, concept, ts, record) VALUES (?, ?, ?, ?)");
  const insertBatch = db.transaction((rows: ReturnType<RecordSource["next"]>[]) => {
    for (const r of rows) insert.run(r.id, r.concept, r.ts, r.record);
  });
  const latest = db.prepare(
    "SELECT record FROM assertions WHERE concept = ? ORDER BY ts DESC LIMIT 1",
  );
  // The single writer: concurrent clients queue for it (their latency includes the wait).
  const writer = new SerialQueue();
  const batchOf = (source: RecordSource, slotOf?: (i: number) => number) =>
    Array.from({ length: BATCH_RECORDS }, (_, i) => source.next(slotOf?.(i)));
  return {
    name: "SQLite",
    mode: `SQLite ${version} (better-sqlite3), WAL, synchronous=FULL; one connection, commits serialized`,
    singleConcurrency: null,
    singles: (c, seconds): Promise<CellResult> => {
      const source = new RecordSource(`s${c}`);
      return runClosedLoop({
        concurrency: c,
        seconds,
        recordsPerCommit: 1,
        commit: () =>
          writer.run(() => {
            const r = source.next();
            insert.run(r.id, r.concept, r.ts, r.record);
          }),
      });
    },
    batches: (c, seconds) => {
      const source = new RecordSource(`b${c}`);
      return runClosedLoop({
        concurrency: c,
        seconds,
        recordsPerCommit: BATCH_RECORDS,
        commit: () => writer.run(() => insertBatch(batchOf(source))),
      });
    },
    reads: {
      mode: "indexed SELECT (prepared), one connection, in-process: c=1 only",
      concurrency: [1],
      seed: async (concepts, versions) => {
        const source = new RecordSource(READ_RUN);
        for (let v = 0; v < versions; v++) {
          for (let from = 1; from <= concepts; from += BATCH_RECORDS) {
            const n = Math.min(BATCH_RECORDS, concepts + 1 - from);
            insertBatch(Array.from({ length: n }, (_, i) => source.next(from + i)));
          }
        }
        db.exec("ANALYZE");
      },
      run: (c, seconds, concepts) =>
        runLatestLoop(c, seconds, concepts, (concept) => latest.get(concept) !== undefined),
    },
    stop: async () => {
      if (db.open) db.close();
    },
  };
}
