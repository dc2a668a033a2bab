/**
 * Histogram bucket layouts shared by every StemeDB histogram.
 *
 * Why custom buckets: prom-client's defaults start at 5 ms, but a group-commit fsync on NVMe
 * takes 50-500 us, so every observation would land in the first bucket and p50/p99 would be
 * meaningless. The latency layout is dense below 1 ms and still reaches 2.5 s so a stalled
 * disk is visible rather than lumped into +Inf.
 */

/** Latency buckets in seconds; resolves sub-millisecond fsyncs (50 us steps near the bottom). */
export const LATENCY_BUCKETS_SECONDS: readonly number[] = Object.freeze([
  0.00005, 0.0001, 0.00015, 0.0002, 0.0003, 0.0005, 0.00075, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05,
  0.1, 0.25, 0.5, 1, 2.5,
]);

/** HTTP request latency in seconds: requests include parsing and a shard round trip. */
export const HTTP_LATENCY_BUCKETS_SECONDS: readonly number[] = Object.freeze([
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
]);

/** Count buckets (records per WAL flush, rows per batch): powers of two up to 4096. */
export const BATCH_SIZE_BUCKETS: readonly number[] = Object.freeze([
  1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096,
]);

/** Throws if `buckets` is not a non-empty, strictly increasing list of finite numbers. */
export function assertValidBuckets(buckets: readonly number[]): void {
  if (buckets.length === 0) throw new Error("histogram buckets must not be empty");
  for (let i = 0; i < buckets.length; i++) {
    const b = buckets[i];
    if (b === undefined || !Number.isFinite(b)) {
      throw new Error(`histogram bucket ${i} is not finite`);
    }
    const prev = buckets[i - 1];
    if (prev !== undefined && b <= prev) {
      throw new Error(`histogram buckets must be strictly increasing at index ${i}`);
    }
  }
}

assertValidBuckets(LATENCY_BUCKETS_SECONDS);
assertValidBuckets(HTTP_LATENCY_BUCKETS_SECONDS);
assertValidBuckets(BATCH_SIZE_BUCKETS);
