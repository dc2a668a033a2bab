// A short run of the server crash loop (test/crash/server_crash_harness.ts) in the default
// suite: the real server under concurrent writes, retractions, votes and supersessions,
// SIGKILLed and restarted, every acknowledged write and change checked after each restart.
// `npm run test:crash` runs the long version.
import fs from "node:fs";
import { afterAll, describe, expect, it } from "vitest";
import { runServerCrashLoop } from "./crash/server_crash_harness.js";
import { newDataDir } from "./helpers/server_process.js";

const dataDir = newDataDir();

afterAll(() => fs.rmSync(dataDir, { recursive: true, force: true }));

describe("the server crash loop, short", () => {
  it("loses no acknowledged write, retraction, vote or supersession over three SIGKILLs", async () => {
    const stats = await runServerCrashLoop({
      iterations: 3,
      dataDir,
      killAfterMs: { min: 1_000, max: 1_500 },
    });
    expect(stats.problems).toEqual([]);
    expect(stats.checksFailed).toBe(0);
    expect(stats.checksPassed).toBe(4); // three restarts and the final clean one
    expect(stats.acknowledged).toBeGreaterThan(500);
    expect(stats.retracts).toBeGreaterThan(0);
    expect(stats.votes).toBeGreaterThan(0);
    expect(stats.supersedes).toBeGreaterThan(0);
    expect(stats.lost + stats.duplicated + stats.lsnGaps + stats.lsnMismatches).toBe(0);
    expect(stats.retractsLost + stats.votesLost + stats.supersedesLost).toBe(0);
  });
});
