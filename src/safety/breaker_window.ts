// The sliding window of one agent's circuit breaker: pure arithmetic over fixed arrays, no
// state machine, no I/O. Kept apart from the breaker table (circuit_breaker.ts) so the
// counting and the trip rule can be read, and reasoned about, on their own.
//
// Window: a ring of BUCKETS time buckets of window_ms / BUCKETS each, holding ok and bad
// counts; the window is the current bucket and the BUCKETS − 1 before it, so it covers
// between 90% and 100% of window_ms. Memory per agent is fixed.
//
// Trip rule (all three): bad ≥ threshold, total ≥ min_volume, and bad / total ≥ min_bad_ratio,
// all counted in the window. Threshold alone would trip a busy, mostly healthy agent; volume
// alone would trip on a handful of requests; the ratio keeps a high-rate agent with a small
// error rate flowing.

export const BUCKETS = 10;

/** One agent's buckets: the period each last held (-1: never) and its counts. */
export interface BreakerWindow {
  epochs: number[];
  ok: number[];
  bad: number[];
}

export interface TripRule {
  threshold: number;
  minVolume: number;
  /** 0..1 */
  minBadRatio: number;
}

/** Bucket width for a window of `windowMs` (windowMs ≥ BUCKETS). */
export function bucketMsFor(windowMs: number): number {
  return Math.ceil(windowMs / BUCKETS);
}

/** Empties every bucket. */
export function clearWindow(w: BreakerWindow): void {
  w.epochs.fill(-1);
  w.ok.fill(0);
  w.bad.fill(0);
}

/** The bucket for `nowMs`, emptied first if it last held an older period. */
export function bucketIndex(w: BreakerWindow, bucketMs: number, nowMs: number): number {
  const epoch = Math.floor(nowMs / bucketMs);
  const i = ((epoch % BUCKETS) + BUCKETS) % BUCKETS;
  if (w.epochs[i] !== epoch) {
    w.epochs[i] = epoch;
    w.ok[i] = 0;
    w.bad[i] = 0;
  }
  return i;
}

/** Adds `count` outcomes to the bucket for `nowMs`. */
export function countOutcome(
  w: BreakerWindow,
  bucketMs: number,
  nowMs: number,
  outcome: "ok" | "bad",
  count: number,
): void {
  const i = bucketIndex(w, bucketMs, nowMs);
  if (outcome === "ok") w.ok[i] = (w.ok[i] as number) + count;
  else w.bad[i] = (w.bad[i] as number) + count;
}

/** Bad and total outcomes in the window ending at `nowMs`. */
export function windowCounts(
  w: BreakerWindow,
  bucketMs: number,
  nowMs: number,
): { bad: number; total: number } {
  const epoch = Math.floor(nowMs / bucketMs);
  let bad = 0;
  let total = 0;
  for (let i = 0; i < BUCKETS; i++) {
    const age = epoch - (w.epochs[i] as number);
    // age < 0: the clock moved back (a test clock after restart); such buckets still count.
    if (w.epochs[i] === -1 || age >= BUCKETS) continue;
    bad += w.bad[i] as number;
    total += (w.bad[i] as number) + (w.ok[i] as number);
  }
  return { bad, total };
}

/** Whether the window's counts trip the breaker (all three conditions of the rule). */
export function shouldTrip(rule: Readonly<TripRule>, bad: number, total: number): boolean {
  return bad >= rule.threshold && total >= rule.minVolume && bad / total >= rule.minBadRatio;
}
