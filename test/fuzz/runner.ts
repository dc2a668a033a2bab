// Runs fuzz cases against a real server child process and collects a report. Used by the
// CLI (fuzz_main.ts, `npm run test:fuzz`) and by test/fuzz.test.ts (a fixed-seed subset).
//
// Cases are drawn with fc.sample from one seed, so (seed, index) names a case exactly; a
// failure prints the command that replays it alone. There is no shrinking: the server is
// stateful and shared, and a printed request is usually small enough to read.
import fs from "node:fs";
import fc from "fast-check";
import {
  api,
  createKey,
  newDataDir,
  readAdminKeyFile,
  type ServerProcess,
  startServerProcess,
} from "../helpers/server_process.js";
import { excerpt, type FuzzCase, type FuzzKeys, serialize, splitBytes } from "./cases.js";
import { judge } from "./checks.js";
import { type RawRequest, sendRaw } from "./raw_http.js";
import {
  apiKeyFamily,
  assertFamily,
  authFamily,
  malformedFamily,
  methodFamily,
  pathFamily,
  queryFamily,
} from "./request_arbs.js";
import {
  abortFamily,
  garbageFamily,
  headerFamily,
  pipelineFamily,
  slowFamily,
} from "./transport_arbs.js";

export const fuzzCase: fc.Arbitrary<FuzzCase> = fc.oneof(
  { weight: 5, arbitrary: assertFamily },
  { weight: 3, arbitrary: malformedFamily },
  { weight: 1, arbitrary: apiKeyFamily },
  { weight: 3, arbitrary: queryFamily },
  { weight: 2, arbitrary: pathFamily },
  { weight: 2, arbitrary: authFamily },
  { weight: 2, arbitrary: methodFamily },
  { weight: 4, arbitrary: headerFamily },
  { weight: 2, arbitrary: slowFamily },
  { weight: 2, arbitrary: abortFamily },
  { weight: 1, arbitrary: garbageFamily },
  { weight: 1, arbitrary: pipelineFamily },
);

export interface FuzzOptions {
  runs: number;
  seed: number;
  /** Cases in flight at once. */
  concurrency: number;
  /** Per-request timeout (slow deliveries get their delays on top). */
  timeoutMs: number;
  /** Largest accepted growth of the server's RSS from after warm-up to the end, in MiB. */
  rssGrowthLimitMiB: number;
  /** Run only this case index (replay). */
  only?: number;
  log?: (line: string) => void;
}

export interface FuzzFailure {
  index: number;
  family: string;
  label: string;
  problems: string[];
  request: string;
}

export interface FuzzReport {
  runs: number;
  seed: number;
  executed: number;
  byStatus: Record<string, number>;
  byFamily: Record<string, number>;
  engineAnswers: number;
  failures: FuzzFailure[];
  rss: {
    baselineMiB: number;
    peakMiB: number;
    finalMiB: number;
    growthMiB: number;
    limitMiB: number;
  };
  afterRun: string[];
  serverAlive: boolean;
  shutdownExitCode: number | null;
  elapsedMs: number;
}

const MAX_FAILURES_KEPT = 200;

export function readRssMiB(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(status);
  if (m === null) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(m[1]) / 1024;
}

function alive(server: ServerProcess): boolean {
  return server.child.exitCode === null && server.child.signalCode === null;
}

function toRawRequest(c: FuzzCase, bytes: Buffer, port: number, timeoutMs: number): RawRequest {
  const d = c.delivery;
  const common = { port, delayMs: 0, timeoutMs, head: c.method === "HEAD" };
  const expectResponses = c.pipeline?.length ?? 1;
  switch (d.kind) {
    case "whole":
      return { ...common, chunks: [bytes], finish: { kind: "wait", expectResponses } };
    case "slow": {
      const pieces = splitBytes(bytes, d.pieces);
      const timeout = timeoutMs + d.delayMs * pieces.length;
      if (d.abortAfter === null)
        return {
          ...common,
          timeoutMs: timeout,
          delayMs: d.delayMs,
          chunks: pieces,
          finish: { kind: "wait", expectResponses },
        };
      return {
        ...common,
        timeoutMs: timeout,
        delayMs: d.delayMs,
        chunks: pieces.slice(0, d.abortAfter),
        finish: { kind: "abort", reset: d.reset },
      };
    }
    case "cut": {
      const keep = Math.min(bytes.length - 1, Math.floor(d.keepFraction * bytes.length));
      return {
        ...common,
        chunks: [bytes.subarray(0, Math.max(0, keep))],
        finish: { kind: "abort", reset: d.reset },
      };
    }
    case "hangup":
      return { ...common, chunks: [bytes], finish: { kind: "abort", reset: d.reset } };
    case "linger":
      return { ...common, chunks: [bytes], finish: { kind: "linger", lingerMs: d.lingerMs } };
  }
}

async function setupKeys(server: ServerProcess): Promise<FuzzKeys> {
  const admin = readAdminKeyFile(server.dataDir);
  const agent = await createKey(server.baseUrl, admin, "agent", "fuzz-agent");
  const reader = await createKey(server.baseUrl, admin, "reader", "fuzz-reader");
  const revoked = await createKey(server.baseUrl, admin, "agent", "fuzz-revoked");
  const keyId = revoked.split("_")[1] as string;
  const res = await api(server.baseUrl, admin).request("DELETE", `/v1/admin/api_keys/${keyId}`);
  if (res.status !== 200)
    throw new Error(`revoking the test key failed: ${res.status} ${res.text}`);
  return { admin, agent, reader, revoked };
}

/** A valid write, read back, queried: the server still does its job. */
async function afterRunChecks(
  server: ServerProcess,
  keys: FuzzKeys,
  tag: string,
): Promise<string[]> {
  const problems: string[] = [];
  const agent = api(server.baseUrl, keys.agent);
  const concept = `fuzz/after/${tag}`;
  const write = await agent.request("POST", "/v1/assert", {
    concept,
    value: { ok: tag },
    confidence: 0.9,
  });
  if (write.status !== 201) return [`valid write after the run: ${write.status} ${write.text}`];
  const id = (write.json as { id: string }).id;
  const read = await agent.request("GET", `/v1/assertions/${id}`);
  const got = read.json as { value?: { ok?: string } } | null;
  if (read.status !== 200 || got?.value?.ok !== tag)
    problems.push(`read-back after the run: ${read.status} ${read.text.slice(0, 200)}`);
  const hist = await agent.request("GET", `/v1/query?concept=${concept}&lens=history`);
  if (hist.status !== 200 || (hist.json as { items: unknown[] }).items.length !== 1)
    problems.push(`history after the run: ${hist.status} ${hist.text.slice(0, 200)}`);
  const health = await api(server.baseUrl, null).request("GET", "/v1/health");
  if (health.status !== 200)
    problems.push(`health after the run: ${health.status} ${health.text.slice(0, 300)}`);
  return problems;
}

export async function runFuzz(opts: FuzzOptions): Promise<FuzzReport> {
  const log = opts.log ?? (() => {});
  const started = performance.now();
  const dataDir = newDataDir();
  const server = await startServerProcess({ dataDir });
  let stderr = "";
  server.child.stderr?.on("data", (d: Buffer) => {
    if (stderr.length < 64 * 1024) stderr += d.toString();
  });
  const report: FuzzReport = {
    runs: opts.runs,
    seed: opts.seed,
    executed: 0,
    byStatus: {},
    byFamily: {},
    engineAnswers: 0,
    failures: [],
    rss: {
      baselineMiB: 0,
      peakMiB: 0,
      finalMiB: 0,
      growthMiB: 0,
      limitMiB: opts.rssGrowthLimitMiB,
    },
    afterRun: [],
    serverAlive: true,
    shutdownExitCode: null,
    elapsedMs: 0,
  };
  try {
    const keys = await setupKeys(server);
    // Warm-up so the baseline RSS includes lazily initialized paths (LMDB maps, JIT, pools).
    for (let i = 0; i < 30; i++) {
      const res = await api(server.baseUrl, keys.agent).request("POST", "/v1/assert", {
        assertions: Array.from({ length: 20 }, (_, j) => ({
          concept: `fuzz/warm/${i}/${j}`,
          value: "w".repeat(500),
          confidence: 0.5,
        })),
      });
      if (res.status !== 201) throw new Error(`warm-up write failed: ${res.status} ${res.text}`);
    }
    await api(server.baseUrl, null).request("GET", "/metrics");
    report.rss.baselineMiB = readRssMiB(server.child.pid as number);
    report.rss.peakMiB = report.rss.baselineMiB;

    const total = opts.only !== undefined ? Math.max(opts.runs, opts.only + 1) : opts.runs;
    const cases = fc.sample(fuzzCase, { numRuns: total, seed: opts.seed });
    const indexes = opts.only !== undefined ? [opts.only] : cases.map((_, i) => i);
    let next = 0;
    let stop = false;
    const worker = async () => {
      while (!stop) {
        const k = next++;
        if (k >= indexes.length) return;
        const index = indexes[k] as number;
        const c = cases[index] as FuzzCase;
        const bytes = serialize(c, keys);
        const out = await sendRaw(toRawRequest(c, bytes, server.port, opts.timeoutMs));
        const verdict = judge(c, out);
        report.executed++;
        report.byFamily[c.family] = (report.byFamily[c.family] ?? 0) + 1;
        for (const o of verdict.outcomes) report.byStatus[o] = (report.byStatus[o] ?? 0) + 1;
        report.engineAnswers += verdict.engineAnswers;
        const problems = [...verdict.failures];
        if (!alive(server)) {
          problems.push(
            `server process died (${server.child.signalCode ?? server.child.exitCode}): ${stderr.slice(-2000)}`,
          );
          stop = true;
        }
        if (problems.length > 0 && report.failures.length < MAX_FAILURES_KEPT)
          report.failures.push({
            index,
            family: c.family,
            label: c.label.slice(0, 300),
            problems,
            request: excerpt(bytes),
          });
        if (report.executed % 50 === 0) {
          if (alive(server))
            report.rss.peakMiB = Math.max(
              report.rss.peakMiB,
              readRssMiB(server.child.pid as number),
            );
          if (report.executed % 500 === 0)
            log(`  ${report.executed}/${indexes.length} cases, ${report.failures.length} failing`);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, opts.concurrency) }, worker));

    report.serverAlive = alive(server);
    if (report.serverAlive) {
      report.afterRun = await afterRunChecks(server, keys, `s${opts.seed}`);
      await new Promise((r) => setTimeout(r, 500)); // let in-flight buffers be released
      report.rss.finalMiB = readRssMiB(server.child.pid as number);
      report.rss.peakMiB = Math.max(report.rss.peakMiB, report.rss.finalMiB);
      report.rss.growthMiB = report.rss.finalMiB - report.rss.baselineMiB;
      report.shutdownExitCode = await stopWithin(server, 20_000);
    }
  } finally {
    if (alive(server)) await server.kill9();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
  report.elapsedMs = performance.now() - started;
  return report;
}

/** SIGTERM; a clean stop within the bound (in-flight count back to 0) exits 0. */
async function stopWithin(server: ServerProcess, ms: number): Promise<number | null> {
  const timer = setTimeout(() => server.child.kill("SIGKILL"), ms);
  const code = await server.stop();
  clearTimeout(timer);
  return code;
}

/** True if the report shows no problem at all. */
export function reportPassed(r: FuzzReport): boolean {
  return (
    r.failures.length === 0 &&
    r.serverAlive &&
    r.afterRun.length === 0 &&
    r.rss.growthMiB <= r.rss.limitMiB &&
    r.shutdownExitCode === 0
  );
}

export function formatReport(r: FuzzReport): string[] {
  const mib = (x: number) => `${x.toFixed(1)} MiB`;
  const sorted = (o: Record<string, number>) =>
    Object.entries(o)
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([k, v]) => `${k}=${v}`)
      .join(" ");
  const lines = [
    `fuzz: runs=${r.runs} seed=${r.seed} executed=${r.executed} in ${(r.elapsedMs / 1000).toFixed(1)} s`,
    `statuses: ${sorted(r.byStatus)}`,
    `families: ${sorted(r.byFamily)}`,
    `answers from uWS itself (protocol-level cases): ${r.engineAnswers}`,
    `rss: baseline ${mib(r.rss.baselineMiB)}, peak ${mib(r.rss.peakMiB)}, final ${mib(r.rss.finalMiB)}, growth ${mib(r.rss.growthMiB)} (limit ${mib(r.rss.limitMiB)})`,
    `server alive after the run: ${r.serverAlive}; valid request after the run: ${r.afterRun.length === 0 ? "ok" : r.afterRun.join("; ")}; SIGTERM exit code: ${r.shutdownExitCode}`,
    `failing cases: ${r.failures.length}`,
  ];
  for (const f of r.failures.slice(0, 30)) {
    lines.push(`  #${f.index} [${f.family}] ${f.label}`);
    for (const p of f.problems.slice(0, 3)) lines.push(`      ${p.slice(0, 400)}`);
    lines.push(`      request: ${f.request}`);
    lines.push(
      `      replay: node dist/test/fuzz/fuzz_main.js --seed ${r.seed} --runs ${r.runs} --only ${f.index}`,
    );
  }
  lines.push(reportPassed(r) ? "fuzz: PASS" : "fuzz: FAIL");
  return lines;
}
