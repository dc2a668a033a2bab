import { Worker } from "node:worker_threads";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LATENCY_BUCKETS_SECONDS } from "../src/metrics/buckets.js";
import { EXPORTED_METRIC_NAMES } from "../src/metrics/exported_names.js";
import { createMainMetrics, MAX_HTTP_ROUTES } from "../src/metrics/main_metrics.js";
import {
  collectMerged,
  type MetricObjectWithValues,
  type MetricsCollector,
  MISSING_SHARDS_METRIC,
} from "../src/metrics/merge.js";
import { createShardMetrics, LabelChildCache } from "../src/metrics/shard_metrics.js";
import { type Family, parseExposition } from "./helpers/prom_text.js";

function value(fams: Map<string, Family>, sample: string, labels: Record<string, string>) {
  const famName = sample.replace(/_(bucket|sum|count)$/, "");
  const fam = fams.get(sample) ?? fams.get(famName);
  const hit = fam?.samples.filter(
    (s) => s.name === sample && Object.entries(labels).every(([k, v]) => s.labels[k] === v),
  );
  if (hit === undefined || hit.length !== 1) {
    throw new Error(`expected one ${sample}${JSON.stringify(labels)}, got ${hit?.length ?? 0}`);
  }
  return hit[0]?.value;
}

// ---------- real worker threads ----------

const WORKER_URL = new URL("./fixtures/metrics_worker.js", import.meta.url);

interface Reply {
  type: string;
  id?: number;
  json?: MetricObjectWithValues[];
  error?: string;
}

function startWorker(shardId: number, silent: boolean): Promise<Worker> {
  const w = new Worker(WORKER_URL, { workerData: { shardId, silent } });
  return new Promise((resolve, reject) => {
    w.once("error", reject);
    w.once("message", (msg: Reply) => (msg.type === "ready" ? resolve(w) : reject(msg)));
  });
}

/** Request/response over postMessage, dropping the listener when the scrape gives up. */
function collectorFor(w: Worker): MetricsCollector {
  let nextId = 0;
  return (signal) =>
    new Promise((resolve, reject) => {
      const id = nextId++;
      const onMessage = (msg: Reply) => {
        if (msg.type !== "metrics" || msg.id !== id) return;
        cleanup();
        if (msg.json !== undefined) resolve(msg.json);
        else reject(new Error(msg.error ?? "no metrics"));
      };
      const onAbort = () => {
        cleanup();
        reject(signal.reason);
      };
      const cleanup = () => {
        w.off("message", onMessage);
        signal.removeEventListener("abort", onAbort);
      };
      w.on("message", onMessage);
      signal.addEventListener("abort", onAbort, { once: true });
      w.postMessage({ type: "metrics", id });
    });
}

describe("metrics merge across worker threads", () => {
  const workers: Worker[] = [];
  let main: Registry;

  beforeAll(async () => {
    workers.push(
      ...(await Promise.all([startWorker(0, false), startWorker(1, false), startWorker(2, true)])),
    );
    main = new Registry();
    const mm = createMainMetrics(main, { version: "9.9.9-test" });
    mm.recordHttp("get", "/v1/assertions/:id", 200, 0.0012);
    mm.recordHttp("GET", "/v1/assertions/:id", 200, 0.0008);
    mm.recordHttp("POST", "/v1/assertions", 503, 0.02);
    mm.errors("overloaded").inc();
    mm.setHttpEngine("fallback");
    mm.setCircuitBreakerCounts({ closed: 4, open: 1, half_open: 0 });
  });

  afterAll(async () => {
    await Promise.all(workers.map((w) => w.terminate()));
  });

  it("merges both shards' series with correct values into valid exposition", async () => {
    const [w0, w1] = workers as [Worker, Worker];
    const { text, missingShards } = await collectMerged(
      main,
      [collectorFor(w0), collectorFor(w1)],
      2000,
    );
    expect(missingShards).toEqual([]);
    const fams = parseExposition(text);

    expect(value(fams, "stemedb_wal_writes_total", { shard: "0" })).toBe(10);
    expect(value(fams, "stemedb_wal_writes_total", { shard: "1" })).toBe(20);
    expect(value(fams, "stemedb_wal_bytes_written_total", { shard: "1" })).toBe(8192);
    expect(value(fams, "stemedb_wal_write_errors_total", { shard: "1", error: "fsync" })).toBe(2);
    expect(value(fams, "stemedb_wal_write_errors_total", { shard: "0", error: "write" })).toBe(0);
    expect(value(fams, "stemedb_wal_io_mode", { shard: "0", mode: "direct" })).toBe(1);
    expect(value(fams, "stemedb_wal_io_mode", { shard: "1", mode: "direct" })).toBe(0);
    expect(value(fams, "stemedb_wal_last_lsn", { shard: "1" })).toBe(2000);
    expect(value(fams, "stemedb_assertions_total", { shard: "0", status: "accepted" })).toBe(5);
    const fsync = "stemedb_wal_fsync_latency_seconds_bucket";
    expect(value(fams, fsync, { shard: "0", le: "0.0001" })).toBe(0);
    expect(value(fams, fsync, { shard: "0", le: "0.00015" })).toBe(1);
    expect(value(fams, fsync, { shard: "1", le: "0.0002" })).toBe(1);
    expect(value(fams, "stemedb_wal_fsync_latency_seconds_count", { shard: "1" })).toBe(2);
    expect(value(fams, "stemedb_wal_batch_size_bucket", { shard: "1", le: "16" })).toBe(1);
    expect(
      value(fams, "stemedb_storage_operations_total", {
        shard: "0",
        operation: "put",
        status: "error",
      }),
    ).toBe(1);

    // Main-thread families, including one prom-client marks aggregator "omit".
    expect(value(fams, "stemedb_http_requests_total", { route: "/v1/assertions/:id" })).toBe(2);
    expect(value(fams, "stemedb_http_requests_total", { method: "POST", status: "503" })).toBe(1);
    expect(value(fams, "stemedb_http_engine", { engine: "fallback" })).toBe(1);
    expect(value(fams, "stemedb_circuit_breaker_state", { state: "open" })).toBe(1);
    expect(value(fams, "stemedb_build_info", { version: "9.9.9-test" })).toBe(1);
    expect(value(fams, "process_start_time_seconds", {})).toBeGreaterThan(0);
    expect(value(fams, MISSING_SHARDS_METRIC, {})).toBe(0);

    // Per-thread figures come from each thread's own collect().
    for (const thread of ["main", "shard_0", "shard_1"]) {
      const elu = value(fams, "stemedb_thread_event_loop_utilization", { thread }) ?? -1;
      expect(elu).toBeGreaterThanOrEqual(0);
      expect(elu).toBeLessThanOrEqual(1);
      if (process.platform === "linux") {
        expect(value(fams, "stemedb_thread_cpu_seconds_total", { thread })).toBeGreaterThan(0);
      }
    }

    if (process.platform === "linux") {
      expect(new Set(fams.keys())).toEqual(new Set(EXPORTED_METRIC_NAMES));
    }
  });

  it("reports a worker that never answers as missing, within the timeout", async () => {
    const [w0, w1, silent] = workers as [Worker, Worker, Worker];
    const started = performance.now();
    const { text, missingShards } = await collectMerged(
      main,
      [collectorFor(w0), collectorFor(w1), collectorFor(silent)],
      300,
    );
    const elapsedMs = performance.now() - started;
    expect(missingShards).toEqual([2]);
    expect(elapsedMs).toBeLessThan(1500);
    const fams = parseExposition(text);
    expect(value(fams, MISSING_SHARDS_METRIC, {})).toBe(1);
    expect(value(fams, "stemedb_wal_writes_total", { shard: "1" })).toBe(20);
    expect(fams.get("stemedb_wal_writes_total")?.samples).toHaveLength(2);
    expect(silent.listenerCount("message")).toBe(0);
  });

  it("keeps a missing shard's last answer, so its counters never drop (no false reset)", async () => {
    const [w0, w1] = workers as [Worker, Worker, Worker];
    const lastGood: Array<MetricObjectWithValues[] | undefined> = [];
    await collectMerged(main, [collectorFor(w0), collectorFor(w1)], 2000, lastGood);
    const { text, missingShards } = await collectMerged(
      main,
      [collectorFor(w0), () => Promise.reject(new Error("shard 1 busy"))],
      300,
      lastGood,
    );
    expect(missingShards).toEqual([1]);
    const fams = parseExposition(text);
    expect(value(fams, MISSING_SHARDS_METRIC, {})).toBe(1);
    expect(value(fams, "stemedb_wal_writes_total", { shard: "1" })).toBe(20);
  });

  it("treats failing and malformed collectors as missing", async () => {
    const junk = [{ name: "x", help: "", type: "counter", aggregator: "nope", values: [] }];
    const { missingShards } = await collectMerged(
      main,
      [
        () => Promise.reject(new Error("worker gone")),
        () => Promise.resolve(junk as unknown as MetricObjectWithValues[]),
        () => {
          throw new Error("sync throw");
        },
      ],
      500,
    );
    expect(missingShards).toEqual([0, 1, 2]);
  });
});

describe("metric definitions", () => {
  it("the exposition parser rejects malformed text", () => {
    const ok = '# HELP a_total x\n# TYPE a_total counter\na_total{k="v"} 1\n';
    expect(parseExposition(ok).get("a_total")?.samples).toHaveLength(1);
    const bad = [
      ok.replace('{k="v"}', '{k="v}'), // unterminated label value
      ok.replace(" 1\n", " one\n"), // non-numeric value
      `${ok}a_total{k="v"} 2\n`, // duplicate series
      ok.replace("a_total{", "b_total{"), // sample outside its family
      `${ok}# TYPE a_total gauge\n`, // TYPE after samples
      ok.slice(0, -1), // no trailing newline
    ];
    for (const text of bad) expect(() => parseExposition(text)).toThrow();
  });

  it("latency buckets resolve sub-millisecond fsyncs", () => {
    expect(LATENCY_BUCKETS_SECONDS).toContain(0.0001);
    expect(LATENCY_BUCKETS_SECONDS).toContain(0.0002);
    expect(LATENCY_BUCKETS_SECONDS.filter((b) => b < 0.001).length).toBeGreaterThanOrEqual(6);
  });

  it("exported names are unique and well-formed", () => {
    expect(new Set(EXPORTED_METRIC_NAMES).size).toBe(EXPORTED_METRIC_NAMES.length);
    for (const n of EXPORTED_METRIC_NAMES) expect(n).toMatch(/^[a-z_][a-z0-9_]*$/);
  });

  it("bounds HTTP and open-ended label cardinality", async () => {
    const reg = new Registry();
    const mm = createMainMetrics(reg, { version: "t" });
    for (let i = 0; i < MAX_HTTP_ROUTES + 50; i++) mm.recordHttp("GET", `/raw/${i}`, 200, 0.001);
    mm.recordHttp("BREW", "/pot", 418, Number.NaN);
    const fams = parseExposition(await reg.metrics());
    const http = fams.get("stemedb_http_requests_total")?.samples ?? [];
    // MAX_HTTP_ROUTES real routes, then the overflow route with statuses 200 and 418.
    expect(http.length).toBe(MAX_HTTP_ROUTES + 2);
    expect(value(fams, "stemedb_http_requests_total", { route: "other", status: "200" })).toBe(50);
    expect(value(fams, "stemedb_http_requests_total", { route: "other", status: "418" })).toBe(1);

    const cache = new LabelChildCache((v) => ({ v }), 4);
    const got = ["a", "b", "c", "d", "e"].map((v) => cache.get(v).v);
    expect(got).toEqual(["a", "b", "c", "other", "other"]);
    expect(cache.size).toBe(4);

    const shardReg = new Registry();
    const sm = createShardMetrics(shardReg, 7);
    for (let i = 0; i < 100; i++) sm.queryLatency(`lens_${i}`).observe(0.001);
    const q = parseExposition(await shardReg.metrics()).get("stemedb_query_latency_seconds");
    const lenses = new Set(q?.samples.map((s) => s.labels.lens));
    expect(lenses.size).toBe(64);
    expect(() => createShardMetrics(new Registry(), -1)).toThrow();
  });
});
