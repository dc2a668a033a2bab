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
  },
});
