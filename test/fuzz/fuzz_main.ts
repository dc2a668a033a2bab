// `npm run test:fuzz -- --runs N --seed S`: bad-input fuzzing of every route of a real server.
// Exit code 0 only when no case failed, the server survived, a valid request still works
// afterwards, its RSS stayed under the bound, and it still shuts down cleanly.
import { parseArgs } from "node:util";
import { intArg } from "../helpers/cli_args.js";
import { formatReport, reportPassed, runFuzz } from "./runner.js";

const { values } = parseArgs({
  options: {
    runs: { type: "string", default: "1000" },
    seed: { type: "string" },
    concurrency: { type: "string", default: "4" },
    "timeout-ms": { type: "string", default: "10000" },
    "rss-growth-mib": { type: "string", default: "128" },
    only: { type: "string" },
    families: { type: "string" },
  },
});

const runs = intArg("runs", values.runs, 1, 1_000_000);
const seed =
  values.seed === undefined
    ? Math.floor(Math.random() * 0x7fffffff)
    : intArg("seed", values.seed, -0x80000000, 0x7fffffff);
const report = await runFuzz({
  runs,
  seed,
  concurrency: intArg("concurrency", values.concurrency, 1, 64),
  timeoutMs: intArg("timeout-ms", values["timeout-ms"], 100, 600_000),
  rssGrowthLimitMiB: intArg("rss-growth-mib", values["rss-growth-mib"], 1, 65_536),
  ...(values.only !== undefined ? { only: intArg("only", values.only, 0, 1_000_000) } : {}),
  ...(values.families !== undefined ? { families: values.families.split(",") } : {}),
  log: (line) => process.stdout.write(`${line}\n`),
});
for (const line of formatReport(report)) process.stdout.write(`${line}\n`);
process.exit(reportPassed(report) ? 0 : 1);
