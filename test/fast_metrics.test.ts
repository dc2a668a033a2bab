// The fast counter and histogram must export exactly what prom-client's would for the same
// recordings: the /metrics text, directly and through the cross-thread merge.
import fc from "fast-check";
import { AggregatorRegistry, Counter, Histogram, Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { HTTP_LATENCY_BUCKETS_SECONDS } from "../src/metrics/buckets.js";
import { FastCounter, FastHistogram } from "../src/metrics/fast_metrics.js";
import type { MetricObjectWithValues } from "../src/metrics/merge.js";

const BUCKETS = HTTP_LATENCY_BUCKETS_SECONDS;
const ROUTES = ["/v1/assert", "/v1/query", "/v1/assertions/:id"] as const;
const METHODS = ["GET", "POST"] as const;
const STATUSES = ["200", "201", "400", "503"] as const;

type Recording =
  | { kind: "observe"; method: number; route: number; value: number }
  | { kind: "inc"; method: number; route: number; status: number; by: number }
  | { kind: "touch"; method: number; route: number }
  | { kind: "plain"; value: number }
  | { kind: "reset" };

const recording: fc.Arbitrary<Recording> = fc.oneof(
  fc.record({
    kind: fc.constant("observe" as const),
    method: fc.nat(1),
    route: fc.nat(2),
    // Bucket bounds exactly, values between them, zero and values past the last bound.
    value: fc.oneof(
      fc.constantFrom(0, ...BUCKETS),
      fc.double({ min: 0, max: 20, noNaN: true, noDefaultInfinity: true }),
    ),
  }),
  fc.record({
    kind: fc.constant("inc" as const),
    method: fc.nat(1),
    route: fc.nat(2),
    status: fc.nat(3),
    by: fc.constantFrom(0, 1, 1, 1, 2.5),
  }),
  // A child asked for and never recorded: absent from both expositions.
  fc.record({ kind: fc.constant("touch" as const), method: fc.nat(1), route: fc.nat(2) }),
  // Families without labels (exported from the start), and resets of every family.
  fc.record({ kind: fc.constant("plain" as const), value: fc.constantFrom(0, 0.003, 1, 7) }),
  fc.record({ kind: fc.constant("reset" as const) }),
);

function registries() {
  const promRegistry = new Registry();
  const fastRegistry = new Registry();
  const help = "Seconds from request start to response end, by method and route pattern.";
  const prom = {
    requests: new Counter({
      name: "t_requests_total",
      help: "Requests.",
      labelNames: ["method", "route", "status"],
      registers: [promRegistry],
    }),
    duration: new Histogram({
      name: "t_duration_seconds",
      help,
      labelNames: ["method", "route"],
      buckets: [...BUCKETS],
      registers: [promRegistry],
    }),
    plainCount: new Counter({ name: "t_plain_total", help: "p", registers: [promRegistry] }),
    plainSeconds: new Histogram({
      name: "t_plain_seconds",
      help: "p",
      buckets: [...BUCKETS],
      registers: [promRegistry],
    }),
  };
  const fast = {
    requests: new FastCounter(
      "t_requests_total",
      "Requests.",
      ["method", "route", "status"],
      [fastRegistry],
    ),
    duration: new FastHistogram("t_duration_seconds", help, ["method", "route"], BUCKETS, [
      fastRegistry,
    ]),
    plainCount: new FastCounter("t_plain_total", "p", [], [fastRegistry]),
    plainSeconds: new FastHistogram("t_plain_seconds", "p", [], BUCKETS, [fastRegistry]),
  };
  return { promRegistry, fastRegistry, prom, fast };
}

async function merged(registry: Registry): Promise<string> {
  const json = (await registry.getMetricsAsJSON()) as unknown as MetricObjectWithValues[];
  return AggregatorRegistry.aggregate([
    json as unknown as Parameters<typeof AggregatorRegistry.aggregate>[0][number],
  ]).metrics();
}

describe("FastCounter and FastHistogram", () => {
  it("export the same text as prom-client's Counter and Histogram, directly and merged", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(fc.nat(1), fc.nat(2)), { maxLength: 3 }),
        fc.array(recording, { maxLength: 200 }),
        async (zeroed, recordings) => {
          const { promRegistry, fastRegistry, prom, fast } = registries();
          // Series exported from start-up with zeros (shard_metrics.ts does this for its own).
          for (const [m, r] of zeroed) {
            const labels = { method: METHODS[m] as string, route: ROUTES[r] as string };
            prom.duration.zero(labels);
            fast.duration.labels(labels).zero();
          }
          for (const r of recordings) {
            if (r.kind === "plain") {
              prom.plainCount.inc(r.value);
              fast.plainCount.labels({}).inc(r.value);
              prom.plainSeconds.observe(r.value);
              fast.plainSeconds.labels({}).observe(r.value);
              continue;
            }
            if (r.kind === "reset") {
              promRegistry.resetMetrics();
              fastRegistry.resetMetrics();
              continue;
            }
            const method = METHODS[r.method] as string;
            const route = ROUTES[r.route] as string;
            if (r.kind === "observe") {
              prom.duration.labels({ method, route }).observe(r.value);
              fast.duration.labels({ method, route }).observe(r.value);
            } else if (r.kind === "inc") {
              const status = STATUSES[r.status] as string;
              prom.requests.labels({ method, route, status }).inc(r.by);
              fast.requests.labels({ method, route, status }).inc(r.by);
            } else {
              prom.duration.labels({ method, route });
              fast.duration.labels({ method, route });
            }
          }
          expect(await fastRegistry.metrics()).toBe(await promRegistry.metrics());
          expect(await merged(fastRegistry)).toBe(await merged(promRegistry));
        },
      ),
      { numRuns: 200 },
    );
  });

  it("reuses one child per label set and refuses wrong label names, bad values and bad buckets", () => {
    const registry = new Registry();
    const counter = new FastCounter("t_c_total", "c", ["a", "b"], [registry]);
    expect(counter.labels({ a: "1", b: "2" })).toBe(counter.labels({ b: "2", a: "1" }));
    expect(() => counter.labels({ a: "1" })).toThrow(/labels must be exactly a, b/);
    expect(() => counter.labels({ a: "1", c: "2" })).toThrow(/labels must be exactly/);
    expect(() => counter.labels({ a: "1", b: "2" }).inc(-1)).toThrow(/decrease/);
    const histogram = new FastHistogram("t_h_seconds", "h", ["a"], [0.1, 1], [registry]);
    expect(() => histogram.labels({ a: "x" }).observe(Number.NaN)).toThrow(TypeError);
    expect(() => new FastHistogram("t_bad", "h", [], [1, 1], [])).toThrow(/strictly increasing/);
    expect(() => new FastHistogram("t_bad", "h", ["le"], [1], [])).toThrow(/reserved/);
    expect(() => new FastCounter("t-bad", "c", [], [])).toThrow(/invalid metric name/);
    expect(() => new FastCounter("t_bad", "c", ["__x"], [])).toThrow(/invalid label name/);
    expect(() => new FastCounter("t_c_total", "again", ["a", "b"], [registry])).toThrow(
      /already been registered/,
    );
  });
});
