/**
 * Main-thread metrics: HTTP, WebSocket ingest, errors, auth, quarantine, circuit breakers,
 * build info, plus prom-client's process/Node default metrics. The main thread's registry is
 * one source of the merged /metrics (see merge.ts); shard registries are the others.
 *
 * Default (process_*, nodejs_*) metrics are collected here only: process-level values are
 * the same in every thread, so collecting them in workers too would double them on merge.
 * nodejs_heap_* and nodejs_eventloop_lag_* therefore describe the main thread's isolate and
 * loop; per-thread loop/CPU figures are the stemedb_thread_* families.
 */
import { readFileSync } from "node:fs";
import { Counter, collectDefaultMetrics, Gauge, type Registry } from "prom-client";
import { HTTP_LATENCY_BUCKETS_SECONDS } from "./buckets.js";
import { FastCounter, FastHistogram, type IncChild, type ObserveChild } from "./fast_metrics.js";
import {
  type CounterChild,
  createThreadMetrics,
  type GaugeChild,
  type HistogramChild,
  LabelChildCache,
  OVERFLOW_LABEL_VALUE,
} from "./shard_metrics.js";

export const MAIN_METRIC = {
  httpRequests: "stemedb_http_requests_total",
  httpDuration: "stemedb_http_request_duration_seconds",
  httpInFlight: "stemedb_http_requests_in_flight",
  errors: "stemedb_errors_total",
  authFailures: "stemedb_auth_failures_total",
  circuitBreakerState: "stemedb_circuit_breaker_state",
  circuitBreakerTrips: "stemedb_circuit_breaker_trips_total",
  trustDecayLastRun: "stemedb_trust_decay_last_run_timestamp_seconds",
  httpEngine: "stemedb_http_engine",
  buildInfo: "stemedb_build_info",
  wsConnections: "stemedb_ws_connections",
  wsMessages: "stemedb_ws_messages_total",
  wsAckDuration: "stemedb_ws_ack_duration_seconds",
  apiKeyOldestSecretAge: "stemedb_api_key_oldest_secret_age_seconds",
} as const;
export const MAIN_METRIC_NAMES: readonly string[] = Object.freeze(Object.values(MAIN_METRIC));

export const CIRCUIT_BREAKER_STATES = ["closed", "open", "half_open"] as const;
export type CircuitBreakerState = (typeof CIRCUIT_BREAKER_STATES)[number];
export const HTTP_ENGINES = ["native", "fallback"] as const;
export type HttpEngine = (typeof HTTP_ENGINES)[number];
/**
 * What became of one WS /v1/stream message: written (new, acked), duplicate (acked, already
 * stored), invalid (error frame: the message cannot be written as sent), window_full (error
 * frame: the connection had too many unacknowledged messages), failed (error frame: the
 * shard refused or failed the write; retryable).
 */
export const WS_MESSAGE_OUTCOMES = [
  "written",
  "duplicate",
  "invalid",
  "window_full",
  "failed",
] as const;
export type WsMessageOutcome = (typeof WS_MESSAGE_OUTCOMES)[number];

/** Bounds on HTTP label cardinality: (method, route) pairs and (method, route, status) series. */
export const MAX_HTTP_ROUTES = 256;
export const MAX_HTTP_STATUS_SERIES = 2048;
const HTTP_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] as const;

export interface MainMetrics {
  /** Records one finished request. Route must be the router's pattern, not the raw path. */
  recordHttp(method: string, routePattern: string, status: number, durationSeconds: number): void;
  /** Counter child for an error code (bounded; excess codes count as "other"). */
  errors(code: string): CounterChild;
  authFailures(reason: string): CounterChild;
  /** Number of breakers currently in each state. */
  setCircuitBreakerCounts(counts: Readonly<Record<CircuitBreakerState, number>>): void;
  /** Counts read at every scrape (time alone moves breakers from open to half-open). */
  setCircuitBreakerSource(source: () => Readonly<Record<CircuitBreakerState, number>>): void;
  /** Read at every scrape: the oldest secret among active API keys, in seconds. */
  setApiKeyAgeSource(source: () => number): void;
  readonly circuitBreakerTrips: CounterChild;
  /** Time of the last completed trust decay run, ms since the epoch (exported in seconds). */
  setTrustDecayLastRun(ranAtMs: number): void;
  setHttpEngine(engine: HttpEngine): void;
  /** Open WS /v1/stream connections. */
  readonly wsConnections: GaugeChild;
  /** WS /v1/stream messages by outcome (children created up front: the hot path only incs). */
  readonly wsMessages: Readonly<Record<WsMessageOutcome, CounterChild>>;
  /** Seconds from a WS message's arrival to its ack (acked messages only). */
  readonly wsAckDuration: HistogramChild;
}

export interface MainMetricsOptions {
  /** Defaults to package.json's version. */
  version?: string;
  /** The router's count of requests being handled (read at each scrape). */
  inflight?: { readonly count: number };
}

function packageVersion(): string {
  try {
    // dist/src/metrics/main_metrics.js -> package.json at the project root.
    const url = new URL("../../../package.json", import.meta.url);
    const pkg: unknown = JSON.parse(readFileSync(url, "utf8"));
    const v = (pkg as { version?: unknown }).version;
    return typeof v === "string" ? v : "unknown";
  } catch {
    return "unknown";
  }
}

interface RouteEntry {
  readonly method: string;
  readonly route: string;
  readonly duration: ObserveChild;
  readonly byStatus: Map<number, IncChild>;
}

export function createMainMetrics(
  registry: Registry,
  options: MainMetricsOptions = {},
): MainMetrics {
  const registers = [registry];
  collectDefaultMetrics({ register: registry });
  createThreadMetrics(registry, "main");

  // Recorded on every request: the fast families (fast_metrics.ts), not prom-client's.
  const httpRequests = new FastCounter(
    MAIN_METRIC.httpRequests,
    "HTTP requests by method, route pattern and status.",
    ["method", "route", "status"],
    registers,
  );
  const httpDuration = new FastHistogram(
    MAIN_METRIC.httpDuration,
    "Seconds from request start to response end, by method and route pattern.",
    ["method", "route"],
    HTTP_LATENCY_BUCKETS_SECONDS,
    registers,
  );
  const errorsC = new Counter({
    name: MAIN_METRIC.errors,
    help: "Errors returned to clients, by error code.",
    labelNames: ["code"],
    registers,
  });
  const authC = new Counter({
    name: MAIN_METRIC.authFailures,
    help: "Rejected authentications, by reason.",
    labelNames: ["reason"],
    registers,
  });
  // Main-thread-only gauges: "first" states that a second source must never be summed in.
  let breakerSource: (() => Readonly<Record<CircuitBreakerState, number>>) | null = null;
  const breakerG = new Gauge({
    name: MAIN_METRIC.circuitBreakerState,
    help: "Circuit breakers currently in each state.",
    labelNames: ["state"],
    aggregator: "first",
    registers,
    collect() {
      if (breakerSource !== null) setBreakerCounts(breakerSource());
    },
  });
  const setBreakerCounts = (counts: Readonly<Record<CircuitBreakerState, number>>): void => {
    for (const state of CIRCUIT_BREAKER_STATES) {
      const n = counts[state];
      if (!Number.isInteger(n) || n < 0) {
        throw new Error(`circuit breaker count for ${state} must be a non-negative integer`);
      }
      breakerChildren.get(state)?.set(n);
    }
  };
  let keyAgeSource: (() => number) | null = null;
  new Gauge({
    name: MAIN_METRIC.apiKeyOldestSecretAge,
    help: "Age of the oldest secret among active API keys (since creation or last rotation); 0 with none.",
    aggregator: "first",
    registers,
    collect() {
      this.set(keyAgeSource === null ? 0 : keyAgeSource());
    },
  });
  const tripsC = new Counter({
    name: MAIN_METRIC.circuitBreakerTrips,
    help: "Circuit breaker trips (closed or half-open to open) since the process started.",
    registers,
  });
  const decayLastRun = new Gauge({
    name: MAIN_METRIC.trustDecayLastRun,
    help: "Unix time (seconds) of the last completed trust-rank decay run; 0 = never.",
    aggregator: "first",
    registers,
  });
  decayLastRun.set(0);
  const engineG = new Gauge({
    name: MAIN_METRIC.httpEngine,
    help: "1 for the HTTP engine in use (native uWebSockets.js or node:http fallback).",
    labelNames: ["engine"],
    aggregator: "first",
    registers,
  });
  const buildInfo = new Gauge({
    name: MAIN_METRIC.buildInfo,
    help: "Always 1; the version label identifies the running build.",
    labelNames: ["version"],
    aggregator: "first",
    registers,
  });
  buildInfo.set({ version: options.version ?? packageVersion() }, 1);
  const inflight = options.inflight;
  new Gauge({
    name: MAIN_METRIC.httpInFlight,
    help: "HTTP requests being handled (body being read or a shard's answer awaited; this scrape included) plus WS /v1/stream messages not yet acknowledged.",
    aggregator: "first",
    registers,
    collect() {
      this.set(inflight?.count ?? 0);
    },
  });
  const wsConnectionsG = new Gauge({
    name: MAIN_METRIC.wsConnections,
    help: "Open WS /v1/stream connections.",
    aggregator: "first",
    registers,
  });
  wsConnectionsG.set(0);
  const wsMessagesC = new FastCounter(
    MAIN_METRIC.wsMessages,
    "WS /v1/stream messages by outcome (written, duplicate, invalid, window_full, failed).",
    ["outcome"],
    registers,
  );
  const wsAckDurationH = new FastHistogram(
    MAIN_METRIC.wsAckDuration,
    "Seconds from a WS /v1/stream message's arrival to its ack (after fsync).",
    [],
    HTTP_LATENCY_BUCKETS_SECONDS,
    registers,
  );
  const wsAckDuration = wsAckDurationH.labels({});
  const wsMessages = {} as Record<WsMessageOutcome, CounterChild>;
  for (const outcome of WS_MESSAGE_OUTCOMES) {
    const child = wsMessagesC.labels({ outcome });
    child.inc(0);
    wsMessages[outcome] = child;
  }

  const breakerChildren = new Map<CircuitBreakerState, GaugeChild>();
  for (const state of CIRCUIT_BREAKER_STATES) {
    const child = breakerG.labels({ state });
    child.set(0);
    breakerChildren.set(state, child);
  }
  const engineChildren = new Map<HttpEngine, GaugeChild>();
  for (const engine of HTTP_ENGINES) {
    const child = engineG.labels({ engine });
    child.set(0);
    engineChildren.set(engine, child);
  }

  const zeroed = (c: CounterChild): CounterChild => {
    c.inc(0);
    return c;
  };
  const errorCache = new LabelChildCache((code) => zeroed(errorsC.labels({ code })));
  const authCache = new LabelChildCache((reason) => zeroed(authC.labels({ reason })), 16);

  // Upper- and lower-case spellings map to one canonical label (uWS reports lowercase).
  const canonicalMethod = new Map<string, string>();
  for (const m of HTTP_METHODS) {
    canonicalMethod.set(m, m);
    canonicalMethod.set(m.toLowerCase(), m);
  }
  // method -> route -> entry; nested maps so the hot path builds no key strings.
  const routes = new Map<string, Map<string, RouteEntry>>();
  let routeCount = 0;
  let statusSeries = 0;
  let overflowRoute: RouteEntry | undefined;

  const makeRoute = (method: string, route: string): RouteEntry => ({
    method,
    route,
    duration: httpDuration.labels({ method, route }),
    byStatus: new Map(),
  });

  const routeEntry = (method: string, route: string): RouteEntry => {
    let byRoute = routes.get(method);
    const hit = byRoute?.get(route);
    if (hit !== undefined) return hit;
    if (routeCount >= MAX_HTTP_ROUTES) {
      overflowRoute ??= makeRoute(OVERFLOW_LABEL_VALUE, OVERFLOW_LABEL_VALUE);
      return overflowRoute;
    }
    if (byRoute === undefined) {
      byRoute = new Map();
      routes.set(method, byRoute);
    }
    const entry = makeRoute(method, route);
    byRoute.set(route, entry);
    routeCount++;
    return entry;
  };

  return {
    recordHttp(method, routePattern, status, durationSeconds) {
      let entry = routeEntry(canonicalMethod.get(method) ?? "OTHER", routePattern);
      const code = Number.isInteger(status) && status >= 100 && status <= 599 ? status : 0;
      let counter = entry.byStatus.get(code);
      if (counter === undefined) {
        if (statusSeries >= MAX_HTTP_STATUS_SERIES && entry !== overflowRoute) {
          overflowRoute ??= makeRoute(OVERFLOW_LABEL_VALUE, OVERFLOW_LABEL_VALUE);
          entry = overflowRoute;
          counter = entry.byStatus.get(code);
        }
        if (counter === undefined) {
          // The overflow route may add at most 501 statuses (100..599 and 0): still bounded.
          const statusLabel = code === 0 ? "invalid" : String(code);
          counter = httpRequests.labels({
            method: entry.method,
            route: entry.route,
            status: statusLabel,
          });
          entry.byStatus.set(code, counter);
          statusSeries++;
        }
      }
      counter.inc();
      if (Number.isFinite(durationSeconds) && durationSeconds >= 0) {
        entry.duration.observe(durationSeconds);
      }
    },
    errors: (code) => errorCache.get(code),
    authFailures: (reason) => authCache.get(reason),
    setCircuitBreakerCounts: setBreakerCounts,
    setCircuitBreakerSource(source) {
      breakerSource = source;
    },
    setApiKeyAgeSource(source) {
      keyAgeSource = source;
    },
    circuitBreakerTrips: tripsC,
    setTrustDecayLastRun(ranAtMs) {
      decayLastRun.set(ranAtMs / 1000);
    },
    setHttpEngine(engine) {
      for (const e of HTTP_ENGINES) engineChildren.get(e)?.set(e === engine ? 1 : 0);
    },
    wsConnections: wsConnectionsG.labels({}),
    wsMessages,
    wsAckDuration,
  };
}
