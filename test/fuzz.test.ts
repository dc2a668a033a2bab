// A fixed-seed subset of the fuzzer (`npm run test:fuzz` runs the long one): every registered
// route (test/fuzz/route_table.ts) gets malformed, mistyped, oversized, unicode-edged,
// header-abused, slow and cut requests, and WS /v1/stream gets bad frames; the server must
// answer each with a documented 4xx (or a proper 2xx), stay up, keep serving and keep its
// memory bounded. The 400 cases are sampled across all families (about 20 s on 2 cores).
import { expect, it } from "vitest";
import { formatReport, reportPassed, runFuzz } from "./fuzz/runner.js";

const SEED = 20_261_123;
const RUNS = 400;

it("survives a fixed-seed fuzz run with only documented answers", async () => {
  const report = await runFuzz({
    runs: RUNS,
    seed: SEED,
    concurrency: 4,
    timeoutMs: 10_000,
    rssGrowthLimitMiB: 128,
  });
  const text = formatReport(report).join("\n");
  expect(report.executed, text).toBe(RUNS);
  expect(report.failures, text).toEqual([]);
  expect(report.serverAlive, text).toBe(true);
  expect(report.afterRun, text).toEqual([]);
  expect(report.rss.growthMiB, text).toBeLessThanOrEqual(report.rss.limitMiB);
  expect(reportPassed(report), text).toBe(true);
}, 60_000);
