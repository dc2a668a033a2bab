// One way to run wrk for every load benchmark: a Lua script from bench/wrk/, one wrk thread
// up to 32 connections and two above (light on the shared 2 vCPUs), and the one-line
// JSON result that bench/wrk/common.lua prints.
import { execFileSync } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const WRK_DIR = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  "../../bench/wrk",
);

export interface WrkResult {
  requests: number;
  duration_us: number;
  p50_us: number;
  p99_us: number;
  p999_us: number;
  socket_errors: number;
  non2xx: number;
}

export interface WrkRun {
  url: string;
  /** File name in bench/wrk/. */
  script: string;
  connections: number;
  seconds: number;
  /** STEMEDB_KEY, STEMEDB_RUN, … for the script. */
  env?: Record<string, string>;
}

export function runWrk(run: WrkRun): WrkResult {
  const threads = run.connections > 32 ? 2 : 1;
  const out = execFileSync(
    "wrk",
    [
      "-t",
      String(threads),
      "-c",
      String(run.connections),
      "-d",
      `${run.seconds}s`,
      "--timeout",
      "10s",
      "-s",
      path.join(WRK_DIR, run.script),
      run.url,
    ],
    {
      encoding: "utf8",
      env: { ...process.env, STEMEDB_WRK_DIR: WRK_DIR, ...run.env },
      maxBuffer: 1 << 24,
    },
  );
  const line = out.split("\n").find((l) => l.startsWith("WRK_JSON "));
  if (line === undefined) throw new Error(`wrk printed no result:\n${out}`);
  return JSON.parse(line.slice("WRK_JSON ".length)) as WrkResult;
}

export function requestsPerSecond(r: WrkResult): number {
  return r.requests / (r.duration_us / 1e6);
}
