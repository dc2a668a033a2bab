// `npm run test:crash -- --iterations N`: the long WAL crash loop.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { runWalCrashLoop } from "./wal_crash_harness.js";

const { values } = parseArgs({ options: { iterations: { type: "string", default: "50" } } });
const iterations = Number(values.iterations);
if (!Number.isInteger(iterations) || iterations < 1 || iterations > 100_000) {
  process.stderr.write("--iterations must be an integer from 1 to 100000\n");
  process.exit(2);
}
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "stemedb-crash-"));
const stats = await runWalCrashLoop(dir, iterations, (line) => process.stdout.write(`${line}\n`));
fs.rmSync(dir, { recursive: true, force: true });
process.stdout.write(`${JSON.stringify(stats)}\n`);
const ok = stats.lost === 0 && stats.duplicated === 0 && stats.lsnGaps === 0;
process.stdout.write(`${ok ? 1 : 0} passed, ${ok ? 0 : 1} failed\n`);
process.exit(ok ? 0 : 1);
