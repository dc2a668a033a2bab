// STEMEDB_STAGE_TRACE: the ring of write stage stamps, and a real server that logs where its
// writes' time went when it stops.
import fs from "node:fs";
import { afterAll, describe, expect, it } from "vitest";
import { type StageSummary, StageTrace, WRITE_STAMPS } from "../src/metrics/stage_trace.js";
import {
  api,
  createKey,
  newDataDir,
  readAdminKeyFile,
  type ServerProcess,
  startServerProcess,
} from "./helpers/server_process.js";

/** Stamps every moment of a request, `stepMs` apart from `startMs` on. */
function stampAll(trace: StageTrace, seq: number, startMs: number, stepMs: number): void {
  WRITE_STAMPS.forEach((stamp, i) => {
    trace.stamp(seq, stamp, startMs + i * stepMs);
  });
}

describe("StageTrace", () => {
  it("keeps the most recent requests, ignores stamps of requests that left the ring, and summarises complete rows", () => {
    const trace = new StageTrace(3);
    const seqs = [trace.begin(0), trace.begin(0), trace.begin(0), trace.begin(0)];
    expect(seqs).toEqual([1, 2, 3, 4]);
    // Request 1's slot now holds request 4: its stamps must not land there.
    stampAll(trace, 1, 0, 5);
    stampAll(trace, 2, 1000, 1);
    stampAll(trace, 3, 2000, 2);
    trace.stamp(4, "body_read", 3000); // incomplete: not counted
    const summary = trace.summary();
    expect(summary.requests).toBe(2);
    expect(summary.out_of_order).toBe(0);
    expect(summary.stages).toHaveLength(WRITE_STAMPS.length); // the gaps, and the total
    const first = summary.stages[0];
    expect(first?.stage).toBe("received → body_read");
    expect(first?.count).toBe(2);
    expect(first?.mean_us).toBe(1500); // 1 ms and 2 ms
    expect(first?.max_us).toBe(2000);
    const total = summary.stages.at(-1);
    expect(total?.stage).toBe("total");
    expect(total?.mean_us).toBe(1500 * (WRITE_STAMPS.length - 1));
  });

  it("counts a row whose stamps go backwards as out of order", () => {
    const trace = new StageTrace(2);
    const seq = trace.begin(0);
    stampAll(trace, seq, 100, 1);
    trace.stamp(seq, "flush_started", 50);
    const summary = trace.summary();
    expect(summary).toMatchObject({ requests: 1, out_of_order: 1 });
    const backwards = summary.stages.find((s) => s.stage === "shard_received → flush_started");
    expect(backwards?.min_us).toBe((50 - 104) * 1000);
  });

  it("refuses a capacity outside its bound", () => {
    expect(() => new StageTrace(0)).toThrow(RangeError);
    expect(() => new StageTrace(1_000_001)).toThrow(RangeError);
  });
});

const item = { value: 1, confidence: 0.5, sources: ["test"] };
const dirs: string[] = [];
const running: ServerProcess[] = [];
afterAll(async () => {
  for (const s of running) await s.kill9();
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

async function serverWith(
  env: Record<string, string>,
): Promise<{ server: ServerProcess; agentKey: string }> {
  const dataDir = newDataDir();
  dirs.push(dataDir);
  const server = await startServerProcess({ dataDir, env: { STEMEDB_SHARDS: "2", ...env } });
  running.push(server);
  const agentKey = await createKey(server.baseUrl, readAdminKeyFile(dataDir), "agent");
  return { server, agentKey };
}

function stageLines(server: ServerProcess): StageSummary[] {
  return server.stdout
    .filter((line) => line.includes('"write stages"'))
    .map((line) => (JSON.parse(line) as { stage_trace: StageSummary }).stage_trace);
}

describe("STEMEDB_STAGE_TRACE on a real server", () => {
  it("logs every stage of each acknowledged write at shutdown, in order, adding up to the total", async () => {
    // A ring of 40 rows: 34 acknowledged writes and one refused by validation fit, but not
    // if the 20 requests refused before their body is read (sent after the first 24 writes)
    // took rows too: they would push the first writes out.
    const { server, agentKey } = await serverWith({ STEMEDB_STAGE_TRACE: "40" });
    const agent = api(server.baseUrl, agentKey);
    const concurrent = Array.from({ length: 24 }, (_, i) =>
      agent.request("POST", "/v1/assert", {
        concept: `trace/c${i}`,
        value: i,
        confidence: 0.5,
        sources: ["t"],
      }),
    );
    const statuses = (await Promise.all(concurrent)).map((r) => r.status);
    // (Refused for a missing key: refusals for the agent's own faults would open its breaker.)
    const anonymous = api(server.baseUrl, null);
    for (let i = 0; i < 20; i++) {
      const res = await anonymous.request("POST", "/v1/assert", { ...item, concept: "trace/x" });
      expect(res.status).toBe(401);
    }
    for (let i = 0; i < 8; i++) {
      const res = await agent.request("POST", "/v1/assert", {
        ...item,
        concept: `trace/s${i}`,
        value: i,
      });
      statuses.push(res.status);
    }
    // A retried write (a duplicate, no flush needed) and a batch across both shards count too;
    // a request refused before it reaches a shard has no row.
    statuses.push(
      (await agent.request("POST", "/v1/assert", { ...item, concept: "trace/s0", value: 0 }))
        .status,
    );
    const batch = Array.from({ length: 50 }, (_, i) => ({
      ...item,
      concept: `trace/b${i}`,
      value: i,
    }));
    statuses.push((await agent.request("POST", "/v1/assert", { assertions: batch })).status);
    statuses.push(
      (await agent.request("POST", "/v1/assert", { ...item, concept: "", value: 1 })).status,
    );
    expect(statuses.filter((s) => s === 201)).toHaveLength(34);
    expect(statuses.at(-1)).toBe(422);

    expect(await server.stop()).toBe(0);
    const [summary, ...more] = stageLines(server);
    expect(more).toHaveLength(0);
    expect(summary?.requests).toBe(34);
    expect(summary?.out_of_order).toBe(0);
    const stages = summary?.stages ?? [];
    expect(stages.map((s) => s.stage)).toEqual([
      ...WRITE_STAMPS.slice(1).map((to, i) => `${WRITE_STAMPS[i]} → ${to}`),
      "total",
    ]);
    let sumOfMeans = 0;
    for (const s of stages.slice(0, -1)) {
      expect(s.count).toBe(34);
      expect(s.p50_us).toBeGreaterThanOrEqual(0);
      expect(s.p99_us).toBeGreaterThanOrEqual(s.p50_us);
      sumOfMeans += s.mean_us;
    }
    const total = stages.at(-1);
    // Means add up (each rounded to 0.1 µs); a durable write takes at least one fdatasync.
    expect(Math.abs((total?.mean_us ?? 0) - sumOfMeans)).toBeLessThan(2);
    const flush = stages.find((s) => s.stage === "flush_started → flush_ended");
    expect(flush?.max_us).toBeGreaterThan(10);
  });

  it("is off by default: no stage line", async () => {
    const { server, agentKey } = await serverWith({});
    const res = await api(server.baseUrl, agentKey).request("POST", "/v1/assert", {
      ...item,
      concept: "trace/off",
    });
    expect(res.status).toBe(201);
    expect(await server.stop()).toBe(0);
    expect(stageLines(server)).toHaveLength(0);
  });
});
