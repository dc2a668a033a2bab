// `stemedb dr-drill`: a disaster-recovery drill that really runs, on a scratch directory:
// start a server, put it under write load, back it up online, stop it, wipe the data
// directory, restore, verify offline, start again, and check that every write acknowledged
// before the backup began is readable. Prints a pass/fail report with timings.
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseCommand } from "./args.js";
import { backupAndWait } from "./backup.js";
import { runRestore } from "./restore.js";
import {
  api,
  createKey,
  readAdminKeyFile,
  type ServerProcess,
  startServerProcess,
} from "./server_child.js";

const USAGE = `usage: stemedb dr-drill [--work-dir DIR] [--shards N] [--clients C] [--load-ms MS] [--json]
  Runs backup -> stop -> wipe -> restore -> verify -> start -> check on a scratch server.`;
const MAX_CLIENTS = 256;
const MAX_LOAD_MS = 600_000;

interface Step {
  step: string;
  ms: number;
  detail: string;
}

interface Acked {
  id: string;
  atMs: number;
}

function startLoad(
  server: ServerProcess,
  key: string,
  clients: number,
): { stop: () => Promise<Acked[]> } {
  const agent = api(server.baseUrl, key);
  const acked: Acked[] = [];
  let running = true;
  let n = 0;
  const loop = async (client: number) => {
    while (running) {
      const i = n++;
      try {
        const res = await agent.request("POST", "/v1/assert", {
          concept: `drill/c${client}/n${i}`,
          value: i,
          confidence: 0.9,
        });
        if (res.status === 201)
          acked.push({ id: (res.json as { id: string }).id, atMs: Date.now() });
      } catch {
        return; // the server went away
      }
    }
  };
  const loops = Array.from({ length: clients }, (_, c) => loop(c));
  return {
    stop: async () => {
      running = false;
      await Promise.all(loops);
      return acked;
    },
  };
}

async function timed<T>(steps: Step[], step: string, fn: () => Promise<[T, string]>): Promise<T> {
  const started = Date.now();
  const [value, detail] = await fn();
  steps.push({ step, ms: Date.now() - started, detail });
  return value;
}

export async function runDrDrill(argv: string[]): Promise<number> {
  const values = parseCommand(
    argv,
    {
      "work-dir": { type: "string" },
      shards: { type: "string", default: "2" },
      clients: { type: "string", default: "8" },
      "load-ms": { type: "string", default: "1500" },
      json: { type: "boolean", default: false },
    },
    USAGE,
  );
  if (typeof values === "number") return values;
  const shards = Number(values.shards);
  const clients = Number(values.clients);
  const loadMs = Number(values["load-ms"]);
  if (
    !Number.isInteger(shards) ||
    shards < 1 ||
    !Number.isInteger(clients) ||
    clients < 1 ||
    clients > MAX_CLIENTS ||
    !(loadMs > 0 && loadMs <= MAX_LOAD_MS)
  ) {
    process.stderr.write(`${USAGE}\n`);
    return 2;
  }
  const ownWorkDir = values["work-dir"] === undefined;
  const work = ownWorkDir
    ? fs.mkdtempSync(path.join(os.tmpdir(), "stemedb-drill-"))
    : path.resolve(values["work-dir"] as string);
  // A fresh directory per run: a second drill in the same --work-dir starts clean too.
  fs.mkdirSync(work, { recursive: true });
  const runDir = ownWorkDir ? work : fs.mkdtempSync(path.join(work, "run-"));
  const dataDir = path.join(runDir, "data");
  const backupDir = path.join(runDir, "backup");
  fs.mkdirSync(dataDir, { recursive: true });
  const steps: Step[] = [];
  let server: ServerProcess | null = null;
  let pass = false;
  let missing = 0;
  let beforeCut = 0;
  try {
    server = await timed(steps, "start", async () => [
      await startServerProcess({ dataDir, shards }),
      `${shards} shards`,
    ]);
    const running = server;
    const adminKey = readAdminKeyFile(dataDir);
    const agentKey = await createKey(running.baseUrl, adminKey, "agent", "drill-agent");
    const load = startLoad(running, agentKey, clients);
    await new Promise((r) => setTimeout(r, loadMs));
    const backupStartedMs = Date.now();
    await timed(steps, "backup (under write load)", async () => {
      const body = await backupAndWait(running.baseUrl, adminKey, backupDir);
      return [undefined, `${body.files.length} files, ${(body.bytes / 1e6).toFixed(1)} MB`];
    });
    await new Promise((r) => setTimeout(r, Math.min(loadMs, 500)));
    const acked = await load.stop();
    const mustSurvive = acked.filter((a) => a.atMs < backupStartedMs);
    beforeCut = mustSurvive.length;
    await timed(steps, "stop (SIGTERM)", async () => [undefined, `exit ${await running.stop()}`]);
    server = null;
    await timed(steps, "wipe", async () => {
      fs.rmSync(dataDir, { recursive: true, force: true });
      return [undefined, dataDir];
    });
    await timed(steps, "restore", async () => {
      // Explicit directories: never a STEMEDB_WAL_DIR / STEMEDB_DB_DIR the shell has loaded.
      const code = await runRestore([
        "--from",
        backupDir,
        "--data-dir",
        dataDir,
        "--wal-dir",
        path.join(dataDir, "wal"),
        "--db-dir",
        path.join(dataDir, "db"),
        "--json",
      ]);
      if (code !== 0) throw new Error(`restore exited ${code}`);
      return [undefined, "backup verified (sizes, SHA-256) and copied"];
    });
    await timed(steps, "verify (offline)", async () => {
      const cli = path.join(path.dirname(fileURLToPath(import.meta.url)), "main.js");
      const dirs = ["--wal-dir", path.join(dataDir, "wal"), "--db-dir", path.join(dataDir, "db")];
      const out = spawnSync(process.execPath, [cli, "verify", "--data-dir", dataDir, ...dirs], {
        encoding: "utf8",
      });
      if (out.status !== 0)
        throw new Error(`stemedb verify exited ${out.status}: ${out.stdout}${out.stderr}`);
      return [undefined, "stemedb verify passed"];
    });
    server = await timed(steps, "start (replays WAL)", async () => [
      await startServerProcess({ dataDir, shards }),
      "listening",
    ]);
    const restored = server;
    await timed(steps, "check acknowledged writes", async () => {
      const reader = api(restored.baseUrl, agentKey);
      for (const a of mustSurvive) {
        if ((await reader.request("GET", `/v1/assertions/${a.id}`)).status !== 200) missing++;
      }
      return [
        undefined,
        `${mustSurvive.length} acknowledged before the backup, ${missing} missing`,
      ];
    });
    pass = missing === 0 && mustSurvive.length > 0;
  } catch (err) {
    steps.push({ step: "error", ms: 0, detail: (err as Error).message });
  } finally {
    if (server !== null) await server.kill9();
    if (ownWorkDir) fs.rmSync(work, { recursive: true, force: true });
  }
  const report = { pass, acknowledged_before_backup: beforeCut, missing, steps };
  if (values.json === true) process.stdout.write(`${JSON.stringify(report)}\n`);
  else {
    for (const s of steps)
      process.stdout.write(`${s.step.padEnd(28)} ${String(s.ms).padStart(6)} ms  ${s.detail}\n`);
    process.stdout.write(
      `DR drill ${pass ? "PASSED" : "FAILED"}: ${beforeCut} writes acknowledged before the backup, ${missing} missing\n`,
    );
  }
  return pass ? 0 : 1;
}
