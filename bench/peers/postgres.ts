// PostgreSQL for `bench:peers`: Debian's package (installed with apt-get when missing and we
// are root), a throw-away cluster in a temporary directory listening on a unix socket only,
// fsync=on and synchronous_commit=on, and the `pg` client with one pooled connection per
// concurrent client.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import type pg from "pg";
import { type CellResult, runClosedLoop, runLatestLoop } from "./driver.js";
import { RecordSource } from "./records.js";
import { BATCH_RECORDS, type PeerSystem, READ_RUN } from "./system.js";

const PG_LIB_DIR = "/usr/lib/postgresql";
/** Only names the socket file (.s.PGSQL.<port>) inside our own directory; no TCP listener. */
const SOCKET_PORT = 54329;
const START_TIMEOUT_S = 60;

function findBinDir(): string | null {
  if (!fs.existsSync(PG_LIB_DIR)) return null;
  const versions = fs
    .readdirSync(PG_LIB_DIR)
    .filter((v) => fs.existsSync(path.join(PG_LIB_DIR, v, "bin", "initdb")))
    .sort((a, b) => Number(b) - Number(a));
  return versions[0] === undefined ? null : path.join(PG_LIB_DIR, versions[0], "bin");
}

function isRoot(): boolean {
  return process.getuid?.() === 0;
}

/** Debian's postgresql package; its post-install may start the default cluster: stop it again. */
function installPostgres(): string {
  if (!isRoot()) {
    throw new Error(
      "PostgreSQL server binaries not found under /usr/lib/postgresql; install Debian's " +
        "`postgresql` package (sudo apt-get install -y postgresql) or skip it with --systems",
    );
  }
  process.stderr.write(
    "peers: installing PostgreSQL (apt-get update; apt-get install -y postgresql)\n",
  );
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  execFileSync("apt-get", ["update"], { stdio: "inherit", env });
  execFileSync("apt-get", ["install", "-y", "postgresql"], { stdio: "inherit", env });
  const bin = findBinDir();
  if (bin === null) throw new Error("apt-get installed postgresql but no initdb was found");
  const version = path.basename(path.dirname(bin));
  try {
    execFileSync("pg_ctlcluster", [version, "main", "stop"], { stdio: "ignore" });
  } catch {
    // not started by the package: nothing to stop
  }
  return bin;
}

/** Runs a PostgreSQL tool as the `postgres` user when we are root (the server refuses root). */
function pgTool(bin: string, tool: string, args: string[]): void {
  const cmd = path.join(bin, tool);
  if (isRoot()) execFileSync("runuser", ["-u", "postgres", "--", cmd, ...args], { stdio: "pipe" });
  else execFileSync(cmd, args, { stdio: "pipe" });
}

async function loadPg(): Promise<typeof pg> {
  try {
    return (await import("pg")).default;
  } catch (err) {
    throw new Error(`the \`pg\` client is missing: run \`npm install\` (${String(err)})`);
  }
}

export async function startPostgres(root: string, maxConcurrency: number): Promise<PeerSystem> {
  const bin = findBinDir() ?? installPostgres();
  const pgModule = await loadPg();
  const dir = path.join(root, "pg");
  fs.mkdirSync(dir, { mode: 0o700 });
  // The server runs as `postgres`: it must own its directory and reach it through ours.
  fs.chmodSync(root, 0o755);
  if (isRoot()) execFileSync("chown", ["postgres:postgres", dir]);
  const dataDir = path.join(dir, "data");
  const log = path.join(dir, "server.log");
  pgTool(bin, "initdb", ["-D", dataDir, "-A", "trust", "-U", "postgres", "-E", "UTF8"]);
  const options = [
    "-c listen_addresses=''",
    `-c unix_socket_directories='${dir}'`,
    `-c port=${SOCKET_PORT}`,
    "-c fsync=on",
    "-c synchronous_commit=on",
    "-c full_page_writes=on",
    `-c max_connections=${maxConcurrency + 10}`,
  ].join(" ");
  let started = false;
  const stop = async () => {
    if (started) {
      started = false;
      try {
        pgTool(bin, "pg_ctl", ["-D", dataDir, "-m", "fast", "-w", "stop"]);
      } catch (err) {
        process.stderr.write(`peers: pg_ctl stop failed: ${String(err)}\n`);
      }
    }
  };
  started = true;
  try {
    pgTool(bin, "pg_ctl", [
      "-D",
      dataDir,
      "-l",
      log,
      "-o",
      options,
      "-w",
      "-t",
      String(START_TIMEOUT_S),
      "start",
    ]);
  } catch (err) {
    const tail = fs.existsSync(log) ? fs.readFileSync(log, "utf8").slice(-2000) : "";
    await stop();
    throw new Error(`PostgreSQL did not start: ${String(err)}\n${tail}`);
  }
  const version = execFileSync(path.join(bin, "postgres"), ["--version"], { encoding: "utf8" });
  const connection = { host: dir, port: SOCKET_PORT, user: "postgres", database: "postgres" };
  const poolOf = async (size: number): Promise<pg.Pool> => {
    const pool = new pgModule.Pool({ ...connection, max: size });
    // An idle client whose server goes away (the fast stop at the end) reports an error on
    // the pool; that is expected here and must not take the benchmark down.
    pool.on("error", (err) => process.stderr.write(`peers: postgres pool: ${err.message}\n`));
    // Open every connection before the clock starts.
    await Promise.all(Array.from({ length: size }, () => pool.query("SELECT 1")));
    return pool;
  };
  try {
    const setup = await poolOf(1);
    await setup.query(
      "CREATE TABLE assertions (id bytea PRIMARY KEY, concept text NOT NULL, ts bigint NOT NULL, record bytea NOT NULL)",
    );
    await setup.query("CREATE INDEX assertions_concept_ts ON assertions (concept, ts DESC)");
    const settings = await setup.query(
      "SELECT name, setting FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', 'wal_sync_method')",
    );
    await setup.end();
    const mode = `${version.trim().replace(/^postgres \(PostgreSQL\) /, "PG ")}, ${settings.rows
      .map((r: { name: string; setting: string }) => `${r.name}=${r.setting}`)
      .join(", ")}; pool of c`;

    const insert = "INSERT INTO assertions (id, concept, ts, record) VALUES ($1, $2, $3, $4)";
    const insertMany =
      "INSERT INTO assertions (id, concept, ts, record) SELECT * FROM unnest($1::bytea[], $2::text[], $3::bigint[], $4::bytea[])";
    const withPool = async (c: number, fn: (pool: pg.Pool) => Promise<CellResult>) => {
      const pool = await poolOf(c);
      try {
        return await fn(pool);
      } finally {
        await pool.end();
      }
    };
    return {
      name: "PostgreSQL",
      mode,
      singleConcurrency: null,
      singles: (c, seconds) =>
        withPool(c, (pool) => {
          const source = new RecordSource(`s${c}`);
          return runClosedLoop({
            concurrency: c,
            seconds,
            recordsPerCommit: 1,
            commit: async () => {
              const r = source.next();
              await pool.query({
                name: "ins",
                text: insert,
                values: [r.id, r.concept, r.ts, r.record],
              });
            },
          });
        }),
      batches: (c, seconds) =>
        withPool(c, (pool) => {
          const source = new RecordSource(`b${c}`);
          return runClosedLoop({
            concurrency: c,
            seconds,
            recordsPerCommit: BATCH_RECORDS,
            commit: async () => {
              const cols: [Buffer[], string[], number[], Buffer[]] = [[], [], [], []];
              for (let i = 0; i < BATCH_RECORDS; i++) {
                const r = source.next();
                cols[0].push(r.id);
                cols[1].push(r.concept);
                cols[2].push(r.ts);
                cols[3].push(r.record);
              }
              await pool.query({ name: "ins_many", text: insertMany, values: cols });
            },
          });
        }),
      reads: {
        mode: "indexed SELECT … WHERE concept = $1 ORDER BY ts DESC LIMIT 1; pool of c",
        concurrency: null,
        seed: async (concepts, versions) => {
          const pool = await poolOf(1);
          try {
            const source = new RecordSource(READ_RUN);
            for (let v = 0; v < versions; v++) {
              for (let from = 1; from <= concepts; from += BATCH_RECORDS) {
                const cols: [Buffer[], string[], number[], Buffer[]] = [[], [], [], []];
                for (let slot = from; slot < Math.min(concepts + 1, from + BATCH_RECORDS); slot++) {
                  const r = source.next(slot);
                  cols[0].push(r.id);
                  cols[1].push(r.concept);
                  cols[2].push(r.ts);
                  cols[3].push(r.record);
                }
                await pool.query(insertMany, cols);
              }
            }
            await pool.query("ANALYZE assertions");
          } finally {
            await pool.end();
          }
        },
        run: (c, seconds, concepts) =>
          withPool(c, (pool) =>
            runLatestLoop(c, seconds, concepts, async (concept) => {
              const res = await pool.query({
                name: "latest",
                text: "SELECT record FROM assertions WHERE concept = $1 ORDER BY ts DESC LIMIT 1",
                values: [concept],
              });
              return res.rowCount === 1;
            }),
          ),
      },
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
