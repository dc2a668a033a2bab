/**
 * The names of every metric family /metrics exports, gathered from each source, plus the
 * families of prom-client's default metrics (collected by main_metrics.ts). Tests check the
 * alert rules, the dashboards and a live scrape against them.
 */
import { MAIN_METRIC_NAMES } from "./main_metrics.js";
import { MERGE_METRIC_NAMES } from "./merge.js";
import { SHARD_METRIC_NAMES, THREAD_METRIC_NAMES } from "./shard_metrics.js";

/**
 * Families registered by prom-client 15.1 `collectDefaultMetrics` on Linux / Node 20
 * (process_open_fds, process_max_fds and the process memory trio are Linux-only).
 */
export const DEFAULT_METRIC_NAMES: readonly string[] = Object.freeze([
  "process_cpu_user_seconds_total",
  "process_cpu_system_seconds_total",
  "process_cpu_seconds_total",
  "process_start_time_seconds",
  "process_resident_memory_bytes",
  "process_virtual_memory_bytes",
  "process_heap_bytes",
  "process_open_fds",
  "process_max_fds",
  "nodejs_eventloop_lag_seconds",
  "nodejs_eventloop_lag_min_seconds",
  "nodejs_eventloop_lag_max_seconds",
  "nodejs_eventloop_lag_mean_seconds",
  "nodejs_eventloop_lag_stddev_seconds",
  "nodejs_eventloop_lag_p50_seconds",
  "nodejs_eventloop_lag_p90_seconds",
  "nodejs_eventloop_lag_p99_seconds",
  "nodejs_active_resources",
  "nodejs_active_resources_total",
  "nodejs_active_handles",
  "nodejs_active_handles_total",
  "nodejs_active_requests",
  "nodejs_active_requests_total",
  "nodejs_heap_size_total_bytes",
  "nodejs_heap_size_used_bytes",
  "nodejs_external_memory_bytes",
  "nodejs_heap_space_size_total_bytes",
  "nodejs_heap_space_size_used_bytes",
  "nodejs_heap_space_size_available_bytes",
  "nodejs_version_info",
  "nodejs_gc_duration_seconds",
]);

/** Every metric family name the server's /metrics exports (main + shards + merge). */
export const EXPORTED_METRIC_NAMES: readonly string[] = Object.freeze([
  ...MAIN_METRIC_NAMES,
  ...SHARD_METRIC_NAMES,
  ...THREAD_METRIC_NAMES,
  ...MERGE_METRIC_NAMES,
  ...DEFAULT_METRIC_NAMES,
]);
