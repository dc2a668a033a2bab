// One way to run wrk for every load benchmark: a Lua script from bench/wrk/, one wrk thread
// at every concurrency, and the one-line JSON result that bench/wrk/common.lua prints.
// One thread is the lighter generator on the shared 2 vCPUs: against the bare uWS ping it
// reached 109k and 123k req/s at c=64 where two threads reached 88k (2026-12-07), and
// StemeDB's c=64 writes gained ≈ 15 % (alternating pairs, bench/RESULTS.md).
//
// Latencies: wrk adds phantom samples to its histogram for coordinated omission before any
// report (a latency n ≥ 2× the mean interval per connection also counts at n − interval,
// n − 2·interval, …). For a closed-loop ack latency that inflates the tail, and at c=1 it made
// Σ latency exceed the run. common.lua undoes it exactly; p50/p99/p999 are the measured ack
// latencies, co_* wrk's corrected ones.
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
  /** Measured ack latencies (wrk's correction undone). */
  p50_us: number;
  p99_us: number;
  p999_us: number;
  mean_us: number;
  /** Latencies in the restored histogram: every answered request within --timeout. */
  measured: number;
  /** Σ latency ÷ (run × connections): at most 1 for a closed loop, near 1 when saturated. */
  busy_share: number;
  /** wrk's own, corrected for coordinated omission. */
  co_p50_us: number;
  co_p99_us: number;
  co_p999_us: number;
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
  const out = execFileSync(
    "wrk",
    [
      "-t",
      "1",
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
      env: {
        ...process.env,
        STEMEDB_WRK_DIR: WRK_DIR,
        STEMEDB_WRK_CONNECTIONS: String(run.connections),
        ...run.env,
      },
      maxBuffer: 1 << 24,
    },
  );
  const line = out.split("\n").find((l) => l.startsWith("WRK_JSON "));
  if (line === undefined) throw new Error(`wrk printed no result:\n${out}`);
  const result = JSON.parse(line.slice("WRK_JSON ".length)) as WrkResult;
  // Undoing the correction must give back exactly one latency per answered request (those
  // over --timeout are counted as socket errors instead).
  if (result.measured === 0 || result.p50_us === undefined)
    throw new Error(`wrk measured no latencies (every request failed or timed out?): ${line}`);
  if (
    result.requests > 0 &&
    (result.measured > result.requests ||
      result.measured < result.requests - result.socket_errors ||
      result.busy_share > 1.01)
  )
    throw new Error(`wrk latencies do not add up: ${line}`);
  return result;
}

export function requestsPerSecond(r: WrkResult): number {
  return r.requests / (r.duration_us / 1e6);
}
