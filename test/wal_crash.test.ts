import fs from "node:fs";
import { describe, expect, it } from "vitest";
import { runWalCrashLoop } from "./crash/wal_crash_harness.js";
import { tempDir } from "./helpers/wal_fixtures.js";

describe("wal crash loop", () => {
  it("keeps every acknowledged record exactly once across 10 SIGKILLs", async () => {
    const dir = tempDir("stemedb-crash-");
    try {
      const stats = await runWalCrashLoop(dir, 10);
      expect(stats.iterations).toBe(10);
      expect(stats.acknowledged).toBeGreaterThan(100);
      expect(stats.lost).toBe(0);
      expect(stats.duplicated).toBe(0);
      expect(stats.lsnGaps).toBe(0);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
