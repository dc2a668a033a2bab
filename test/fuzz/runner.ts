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
import { judge, type Verdict } from "./checks.js";
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
  routeBodyFamily,
  routeMalformedFamily,
  routePathFamily,
  routeQueryFamily,
} from "./route_queries.js";
import {
  abortFamily,
  garbageFamily,
  headerFamily,
  pipelineFamily,
  slowFamily,
} from "./transport_arbs.js";
import { runWsScript, wsBytes, wsFamily } from "./ws_fuzz.js";

// Weights: the original seven routes keep most of their share; the rest of the route table
// (route_table.ts) gets bodies, damaged bodies, query strings and path ids of its own, and
// is mixed into the auth, method and transport families through the route examples.
export const fuzzCase: fc.Arbitrary<FuzzCase> = fc.oneof(
  { weight: 4, arbitrary: assertFamily },
  { weight: 2, arbitrary: malformedFamily },
  { weight: 1, arbitrary: apiKeyFamily },
  { weight: 2, arbitrary: queryFamily },
  { weight: 1, arbitrary: pathFamily },
  { weight: 4, arbitrary: routeBodyFamily },
  { weight: 2, arbitrary: routeMalformedFamily },
  { weight: 4, arbitrary: routeQueryFamily },
  { weight: 1, arbitrary: routePathFamily },
  { weight: 2, arbitrary: authFamily },
  { weight: 2, arbitrary: methodFamily },
  { weight: 4, arbitrary: headerFamily },
  { weight: 2, arbitrary: slowFamily },
  { weight: 2, arbitrary: abortFamily },
  { weight: 1, arbitrary: garbageFamily },
  { weight: 1, arbitrary: pipelineFamily },
  { weight: 1, arbitrary: wsFamily },
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
  /** Run only cases of these families (indexes stay those of the full sample). */
  families?: readonly string[];
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
  /** Times a case killed the server and it was restarted. */
  restarts: number;
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
  // A request that is not valid HTTP may be held open by uWS until its idle timeout without
  // any answer; that is not a hang of the server, so such cases only linger.
  if (c.protocolLevel && d.kind === "whole")
    return { ...common, chunks: [bytes], finish: { kind: "linger", lingerMs: 1000 } };
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
  // Assertions the id-taking routes (vote, retract, supersede, provenance, quarantine
  // decisions, derived_from) can find, so they get past 404: two by the fuzz agent (its own:
  // retract, self_vote) and two by another agent (votes, not_author, not_permitted).
  const other = await createKey(server.baseUrl, admin, "agent", "fuzz-other");
  const knownIds: string[] = [];
  for (const [key, n] of [
    [agent, 0],
    [agent, 1],
    [other, 2],
    [other, 3],
  ] as const) {
    const w = await api(server.baseUrl, key).request("POST", "/v1/assert", {
      concept: `fuzz/known/${n}`,
      value: n,
      confidence: 0.5,
    });
    if (w.status !== 201) throw new Error(`known assertion ${n}: ${w.status} ${w.text}`);
    knownIds.push((w.json as { id: string }).id);
  }
  return { admin, agent, reader, revoked, knownIds };
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

/** The server under test; restarted on the same data directory when a case kills it. */
class Target {
  server!: ServerProcess;
  generation = 0;
  stderr = "";
  constructor(readonly dataDir: string) {}

  async start(): Promise<void> {
    // The fuzzer sends mostly invalid writes as one agent; its oracle expects 201 for the valid
    // ones, so keep the agent's circuit breaker (circuit_breaker.test.ts) from tripping.
    this.server = await startServerProcess({
      dataDir: this.dataDir,
      env: { STEMEDB_BREAKER_THRESHOLD: "1000000" },
    });
    this.generation++;
    this.stderr = "";
    this.server.child.stderr?.on("data", (d: Buffer) => {
      if (this.stderr.length < 64 * 1024) this.stderr += d.toString();
    });
  }

  alive(): boolean {
    return alive(this.server);
  }

  /** A case that saw the connection drop may have killed the process: give the exit time to show. */
  async diesWithin(ms: number): Promise<boolean> {
    for (let waited = 0; waited < ms; waited += 20) {
      if (!this.alive()) return true;
      await new Promise((r) => setTimeout(r, 20));
    }
    return !this.alive();
  }

  deathNote(): string {
    const c = this.server.child;
    return `server process died (${c.signalCode ?? `exit ${c.exitCode}`}): ${this.stderr.trim().slice(-1500)}`;
  }
}

/** Most server restarts in one run before giving up (each one is a reported failure). */
const MAX_RESTARTS = 50;

export async function runFuzz(opts: FuzzOptions): Promise<FuzzReport> {
  const log = opts.log ?? (() => {});
  const started = performance.now();
  const target = new Target(newDataDir());
  await target.start();
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
    restarts: 0,
    shutdownExitCode: null,
    elapsedMs: 0,
  };
  try {
    const keys = await setupKeys(target.server);
    // Warm-up so the baseline RSS includes lazily initialized paths (LMDB maps, JIT, pools).
    for (let i = 0; i < 30; i++) {
      const res = await api(target.server.baseUrl, keys.agent).request("POST", "/v1/assert", {
        assertions: Array.from({ length: 20 }, (_, j) => ({
          concept: `fuzz/warm/${i}/${j}`,
          value: "w".repeat(500),
          confidence: 0.5,
        })),
      });
      if (res.status !== 201) throw new Error(`warm-up write failed: ${res.status} ${res.text}`);
    }
    await api(target.server.baseUrl, null).request("GET", "/metrics");
    const rssNow = () => readRssMiB(target.server.child.pid as number);
    report.rss.baselineMiB = rssNow();
    report.rss.peakMiB = report.rss.baselineMiB;

    const total = opts.only !== undefined ? Math.max(opts.runs, opts.only + 1) : opts.runs;
    const cases = fc.sample(fuzzCase, { numRuns: total, seed: opts.seed });
    const wanted = (i: number) =>
      opts.families === undefined || opts.families.includes((cases[i] as FuzzCase).family);
    const indexes =
      opts.only !== undefined ? [opts.only] : cases.map((_, i) => i).filter((i) => wanted(i));

    const runCase = async (index: number) => {
      const c = cases[index] as FuzzCase;
      const bytes = c.ws !== undefined ? wsBytes(c.ws) : serialize(c, keys);
      const generation = target.generation;
      let verdict: Verdict;
      let closedByServer = false;
      if (c.ws !== undefined) {
        verdict = await runWsScript(c.ws, target.server.port, keys.agent, opts.timeoutMs);
      } else {
        const out = await sendRaw(toRawRequest(c, bytes, target.server.port, opts.timeoutMs));
        verdict = judge(c, out);
        closedByServer = out.closedByServer;
      }
      const died =
        generation !== target.generation ||
        !target.alive() ||
        ((verdict.failures.length > 0 || closedByServer) && (await target.diesWithin(300)));
      return { c, bytes, verdict, died };
    };
    const account = (index: number, r: Awaited<ReturnType<typeof runCase>>, extra: string[]) => {
      report.executed++;
      report.byFamily[r.c.family] = (report.byFamily[r.c.family] ?? 0) + 1;
      for (const o of r.verdict.outcomes) report.byStatus[o] = (report.byStatus[o] ?? 0) + 1;
      report.engineAnswers += r.verdict.engineAnswers;
      const problems = [...extra, ...r.verdict.failures];
      if (problems.length > 0 && report.failures.length < MAX_FAILURES_KEPT)
        report.failures.push({
          index,
          family: r.c.family,
          label: r.c.label.slice(0, 300),
          problems,
          request: excerpt(r.bytes),
        });
    };

    // When the server dies, every case in flight is a suspect: restart, then replay the
    // suspects one at a time so the one that kills it is named.
    let next = 0;
    let inflight = 0;
    let stop = false;
    const suspects: number[] = [];
    let recovering: Promise<void> | null = null;
    const restart = async (): Promise<boolean> => {
      if (report.restarts >= MAX_RESTARTS) {
        stop = true;
        return false;
      }
      report.restarts++;
      await target.start();
      return true;
    };
    const recover = async () => {
      while (inflight > 0) await new Promise((r) => setTimeout(r, 10));
      const note = target.deathNote();
      if (!(await restart())) return;
      let blamed = false;
      while (suspects.length > 0 && !stop) {
        const index = suspects.shift() as number;
        const r = await runCase(index);
        if (r.died) {
          blamed = true;
          account(index, r, [`kills the server: ${target.deathNote()}`]);
          if (!(await restart())) return;
        } else {
          account(index, r, []);
        }
      }
      if (!blamed) {
        report.failures.push({
          index: -1,
          family: "unknown",
          label: "the server died while several cases ran; none kills it alone",
          problems: [note],
          request: "",
        });
      }
    };
    const worker = async () => {
      while (!stop) {
        if (recovering !== null) {
          await recovering;
          continue;
        }
        const k = next++;
        if (k >= indexes.length) return;
        const index = indexes[k] as number;
        inflight++;
        const r = await runCase(index);
        if (r.died) {
          suspects.push(index);
          if (recovering === null) {
            recovering = recover().finally(() => {
              recovering = null;
            });
          }
        } else {
          account(index, r, []);
        }
        inflight--;
        if (report.executed % 50 === 0 && target.alive() && report.restarts === 0) {
          report.rss.peakMiB = Math.max(report.rss.peakMiB, rssNow());
        }
        if (report.executed % 500 === 0 && report.executed > 0)
          log(`  ${report.executed}/${indexes.length} cases, ${report.failures.length} failing`);
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, opts.concurrency) }, worker));
    if (recovering !== null) await recovering;

    report.serverAlive = target.alive();
    if (report.serverAlive) {
      report.afterRun = await afterRunChecks(target.server, keys, `s${opts.seed}`);
      await new Promise((r) => setTimeout(r, 500)); // let in-flight buffers be released
      if (report.restarts === 0) {
        report.rss.finalMiB = rssNow();
        report.rss.peakMiB = Math.max(report.rss.peakMiB, report.rss.finalMiB);
        report.rss.growthMiB = report.rss.finalMiB - report.rss.baselineMiB;
      }
      report.shutdownExitCode = await stopWithin(target.server, 20_000);
    }
  } finally {
    if (target.alive()) await target.server.kill9();
    fs.rmSync(target.dataDir, { recursive: true, force: true });
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
    r.restarts === 0 &&
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
    r.restarts > 0
      ? "rss: not compared (the server was restarted)"
      : `rss: baseline ${mib(r.rss.baselineMiB)}, peak ${mib(r.rss.peakMiB)}, final ${mib(r.rss.finalMiB)}, growth ${mib(r.rss.growthMiB)} (limit ${mib(r.rss.limitMiB)})`,
    `server restarts (a case killed it): ${r.restarts}; alive at the end: ${r.serverAlive}`,
    `valid request after the run: ${!r.serverAlive ? "not run" : r.afterRun.length === 0 ? "ok" : r.afterRun.join("; ")}; SIGTERM exit code: ${r.shutdownExitCode}`,
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
