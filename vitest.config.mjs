import { defineConfig } from "vitest/config";

// Tests are compiled by `tsc` first and run from dist/, so worker threads and child
// processes load the same JavaScript that `npm start` runs.
export default defineConfig({
  test: {
    include: ["dist/test/**/*.test.js"],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: "forks",
    fileParallelism: false,
    // The rule the server's threads follow (src/store/lmdb_failure.ts): a failed LMDB commit
    // also rejects a promise lmdb-js made and nothing can observe; the writes' own promises
    // carry the failure, and the tests check those.
    onUnhandledError(error) {
      if (error?.message === "Commit failed (see commitError for details)") return false;
    },
  },
});
