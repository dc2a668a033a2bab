/**
 * Merges the main thread's registry with every shard worker's `getMetricsAsJSON()` into one
 * Prometheus exposition, waiting a bounded time so one stuck shard cannot stall a scrape.
 *
 * prom-client 15's cluster support talks to `cluster` workers only, so the main thread asks
 * each worker thread itself (the collectors) and uses only the static, pure
 * `AggregatorRegistry.aggregate()` (groups families by name, then samples by label set,
 * applying each family's `aggregator`; the first array's family decides the aggregator).
 */
import { type Aggregator, AggregatorRegistry, type Registry } from "prom-client";

/** One sample as produced by `getMetricsAsJSON()` (histograms name their sub-series). */
export interface MetricSample {
  value: number;
  labels: Record<string, string | number>;
  metricName?: string;
}

/**
 * One metric family as produced by `Registry.getMetricsAsJSON()`: plain data, safe to send
 * with postMessage. (prom-client's own typing of this shape is not exported and claims
 * `type` is a numeric enum; at runtime it is the string "counter" | "gauge" | ...)
 */
export interface MetricObjectWithValues {
  name: string;
  help: string;
  type: string;
  aggregator: Aggregator;
  values: MetricSample[];
}

/**
 * Collects one shard's metrics. The signal aborts when the scrape stops waiting, so a
 * collector can drop its pending reply listener. Index in the array = shard id.
 */
export type MetricsCollector = (signal: AbortSignal) => Promise<MetricObjectWithValues[]>;

export interface MergedMetrics {
  /** Prometheus text exposition format 0.0.4. */
  text: string;
  /** Shard ids (collector indices) that timed out, failed, or sent malformed data. */
  missingShards: number[];
}

export const MISSING_SHARDS_METRIC = "stemedb_metrics_scrape_missing_shards";
export const MERGE_METRIC_NAMES: readonly string[] = Object.freeze([MISSING_SHARDS_METRIC]);

export const MAX_SCRAPE_TIMEOUT_MS = 60_000;
export const MAX_COLLECTORS = 1024;
/** Per collector; far above what a shard registry holds, low enough to bound a scrape. */
export const MAX_FAMILIES_PER_COLLECTOR = 4096;
export const MAX_SAMPLES_PER_COLLECTOR = 200_000;

const METRIC_TYPES = new Set(["counter", "gauge", "histogram", "summary"]);
const AGGREGATORS = new Set<string>(["omit", "sum", "first", "min", "max", "average"]);
const METRIC_NAME_RE = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;

/** Typed wrapper over `registry.getMetricsAsJSON()` for the worker side of the protocol. */
export async function registryJson(registry: Registry): Promise<MetricObjectWithValues[]> {
  return (await registry.getMetricsAsJSON()) as unknown as MetricObjectWithValues[];
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === "object" && x !== null;
}

/**
 * Structural check of data received from another thread: `aggregate()` throws on an
 * unknown aggregator and would emit garbage for malformed samples, so a shard that sends
 * junk is treated as missing rather than breaking the whole scrape.
 */
export function isMetricFamilyArray(x: unknown): x is MetricObjectWithValues[] {
  if (!Array.isArray(x) || x.length > MAX_FAMILIES_PER_COLLECTOR) return false;
  let samples = 0;
  for (const fam of x) {
    if (!isObject(fam)) return false;
    if (typeof fam.name !== "string" || !METRIC_NAME_RE.test(fam.name)) return false;
    if (typeof fam.help !== "string" || typeof fam.type !== "string") return false;
    if (!METRIC_TYPES.has(fam.type)) return false;
    if (typeof fam.aggregator !== "string" || !AGGREGATORS.has(fam.aggregator)) return false;
    if (!Array.isArray(fam.values)) return false;
    samples += fam.values.length;
    if (samples > MAX_SAMPLES_PER_COLLECTOR) return false;
    for (const v of fam.values) {
      if (!isObject(v) || typeof v.value !== "number" || !isObject(v.labels)) return false;
      if (v.metricName !== undefined && typeof v.metricName !== "string") return false;
    }
  }
  return true;
}

/**
 * The main registry is a single source, so prom-client's cluster-oriented "omit"
 * (used by e.g. process_start_time_seconds, meaningless summed over processes) would
 * only drop a correct series. Rewrite it to "first" for main's families.
 */
function mainFamiliesForMerge(json: MetricObjectWithValues[]): MetricObjectWithValues[] {
  return json.map((f) => (f.aggregator === "omit" ? { ...f, aggregator: "first" } : f));
}

/** Drops families whose type contradicts the type already seen for that name. */
function dropTypeConflicts(sources: MetricObjectWithValues[][]): MetricObjectWithValues[][] {
  const typeByName = new Map<string, string>();
  return sources.map((families) =>
    families.filter((f) => {
      const seen = typeByName.get(f.name);
      if (seen === undefined) {
        typeByName.set(f.name, f.type);
        return true;
      }
      return seen === f.type;
    }),
  );
}

function missingShardsFamily(count: number): MetricObjectWithValues {
  return {
    name: MISSING_SHARDS_METRIC,
    help: "Shards whose metrics were missing from this scrape (timed out or failed).",
    type: "gauge",
    aggregator: "first",
    values: [{ value: count, labels: {} }],
  };
}

/**
 * Collects `main` plus every collector concurrently, waits at most `timeoutMs` for the
 * collectors (one shared deadline, so the whole scrape is bounded by ~timeoutMs), and
 * merges what arrived. Late replies are ignored.
 *
 * With `lastGood` (kept by the caller across scrapes), each collector's last answer is
 * remembered and its counters and histograms stand in for it while it is missing: a series the main thread and a shard
 * both feed would otherwise drop to the main thread's part, and Prometheus reads a drop in a
 * counter as a reset. The shard still counts in `missingShards`.
 */
export async function collectMerged(
  main: Registry,
  collectors: ReadonlyArray<MetricsCollector>,
  timeoutMs: number,
  lastGood?: Array<MetricObjectWithValues[] | undefined>,
): Promise<MergedMetrics> {
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0 || timeoutMs > MAX_SCRAPE_TIMEOUT_MS) {
    throw new Error(`timeoutMs must be in (0, ${MAX_SCRAPE_TIMEOUT_MS}], got ${timeoutMs}`);
  }
  if (collectors.length > MAX_COLLECTORS) {
    throw new Error(`at most ${MAX_COLLECTORS} collectors, got ${collectors.length}`);
  }

  const controller = new AbortController();
  const results: Array<MetricObjectWithValues[] | undefined> = collectors.map(() => undefined);
  let closed = false;

  const pending = collectors.map(async (collect, shard) => {
    try {
      const json: unknown = await collect(controller.signal);
      if (!closed && isMetricFamilyArray(json)) results[shard] = json;
    } catch {
      // A failed collector is reported through missingShards, not thrown: a scrape must
      // still return the other shards.
    }
  });
  const mainJsonPromise = registryJson(main);

  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, timeoutMs);
  });
  try {
    await Promise.race([Promise.all(pending), deadline]);
  } finally {
    closed = true;
    clearTimeout(timer);
    controller.abort(new Error("metrics scrape deadline passed"));
  }

  const missingShards: number[] = [];
  const shardJsons: MetricObjectWithValues[][] = [];
  results.forEach((json, shard) => {
    if (json !== undefined) {
      shardJsons.push(json);
      if (lastGood !== undefined) lastGood[shard] = json;
      return;
    }
    missingShards.push(shard);
    // Counters and histograms only: a stuck shard's gauges (queue depth, disk) must not be
    // shown as if current; they drop out until it answers.
    const stale = lastGood?.[shard]?.filter((f) => f.type !== "gauge");
    if (stale !== undefined) shardJsons.push(stale);
  });

  const mainJson = mainFamiliesForMerge(await mainJsonPromise);
  const sources = dropTypeConflicts([
    mainJson,
    ...shardJsons,
    [missingShardsFamily(missingShards.length)],
  ]);
  const text = await AggregatorRegistry.aggregate(sources).metrics();
  return { text, missingShards };
}
