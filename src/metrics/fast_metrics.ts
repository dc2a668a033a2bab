/**
 * A counter and a histogram for metrics recorded on every request. prom-client's children
 * validate and hash their label set on every `inc`/`observe` and keep buckets in a
 * string-keyed object: ≈ 1 µs a call, and a snapshot `latest` read records six of them
 * (≈ 20 % fewer reads/s with them than without, bench/RESULTS.md 2026-12-07). Here a child is
 * made once per label set and an observation is a bucket search and two adds into arrays.
 *
 * They register in a prom-client Registry and `get()` returns what prom-client's own
 * Counter and Histogram return (same sample order, label shapes and float sums), so the
 * exposition and the cross-thread merge (merge.ts) cannot tell them apart; the test compares
 * the two texts for the same observations. A label set appears once it has been recorded,
 * as with prom-client (`inc(0)` makes a zero counter visible); a family without labels is
 * exported from its creation.
 */
import type { Metric, Registry } from "prom-client";
import { assertValidBuckets } from "./buckets.js";
import type { MetricObjectWithValues, MetricSample } from "./merge.js";

export interface IncChild {
  inc(value?: number): void;
}

export interface ObserveChild {
  observe(value: number): void;
}

/** A histogram child that can be exported before its first observation (all zeros). */
export interface ZeroableObserveChild extends ObserveChild {
  /** Exports the series now; unlike prom-client's `zero`, never clears recorded values. */
  zero(): void;
}

/** Label sets per family at most: children are never freed, so callers bound their labels. */
export const MAX_FAST_CHILDREN = 10_000;

type Labels = Readonly<Record<string, string>>;

/** Exported in the order of first recording, as prom-client does. */
type Exported<Child> = Array<{ labels: Labels; child: Child }>;

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

abstract class FastFamily<Child extends { clear(): void }> {
  protected readonly exported: Exported<Child> = [];
  private readonly byKey = new Map<string, Child>();

  constructor(
    readonly name: string,
    readonly help: string,
    protected readonly labelNames: readonly string[],
    registers: readonly Registry[],
  ) {
    if (!METRIC_NAME.test(name)) throw new Error(`invalid metric name: ${name}`);
    for (const label of labelNames)
      if (!LABEL_NAME.test(label) || label.startsWith("__"))
        throw new Error(`${name}: invalid label name: ${label}`);
    // The registry uses name, help, type, aggregator, get() and reset() of a metric: all here.
    for (const registry of registers) registry.registerMetric(this as unknown as Metric);
  }

  /** As prom-client's `reset`: every series is dropped until recorded again. */
  reset(): void {
    for (const { child } of this.exported) child.clear();
    this.exported.length = 0;
    this.afterReset();
  }

  protected afterReset(): void {}

  /** The child of one label set (made on first use; every label name must be given). */
  labels(labels: Labels): Child {
    const names = Object.keys(labels);
    if (names.length !== this.labelNames.length || !this.labelNames.every((n) => n in labels))
      throw new Error(
        `${this.name}: labels must be exactly ${this.labelNames.join(", ")} (got ${names.join(", ")})`,
      );
    const key = this.labelNames.map((n) => labels[n]).join("\u0000");
    const hit = this.byKey.get(key);
    if (hit !== undefined) return hit;
    if (this.byKey.size >= MAX_FAST_CHILDREN)
      throw new Error(`${this.name}: more than ${MAX_FAST_CHILDREN} label sets`);
    // Samples carry the labels in the caller's order (prom-client's; `le` comes first).
    const child = this.makeChild({ ...labels }, this.exported);
    this.byKey.set(key, child);
    return child;
  }

  protected abstract makeChild(labels: Labels, exported: Exported<Child>): Child;
}

class FastCounterChild implements IncChild {
  value = 0;
  private recorded = false;

  constructor(
    private readonly labels: Labels,
    private readonly exported: Exported<FastCounterChild>,
  ) {}

  inc(value = 1): void {
    if (!Number.isFinite(value)) throw new TypeError(`Value is not a valid number: ${value}`);
    if (value < 0) throw new Error("It is not possible to decrease a counter");
    if (!this.recorded) {
      this.recorded = true;
      this.exported.push({ labels: this.labels, child: this });
    }
    this.value += value;
  }

  clear(): void {
    this.value = 0;
    this.recorded = false;
  }
}

export class FastCounter extends FastFamily<FastCounterChild> {
  readonly type = "counter";
  readonly aggregator = "sum";

  constructor(
    name: string,
    help: string,
    labelNames: readonly string[],
    registers: readonly Registry[],
  ) {
    super(name, help, labelNames, registers);
    this.afterReset();
  }

  /** Without labels its one series exists from the start and after a reset (prom-client's). */
  protected override afterReset(): void {
    if (this.labelNames.length === 0) this.labels({}).inc(0);
  }

  protected makeChild(labels: Labels, exported: Exported<FastCounterChild>): FastCounterChild {
    return new FastCounterChild(labels, exported);
  }

  async get(): Promise<MetricObjectWithValues> {
    const values: MetricSample[] = [];
    for (const { labels, child } of this.exported)
      values.push({ value: child.value, labels: { ...labels } });
    return { name: this.name, help: this.help, type: this.type, values, aggregator: "sum" };
  }
}

class FastHistogramChild implements ZeroableObserveChild {
  /** Observations per bucket (not cumulative); past the last bound only `count` moves. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(
    private readonly bounds: Float64Array,
    private readonly labels: Labels,
    private readonly exported: Exported<FastHistogramChild>,
  ) {
    this.counts = new Float64Array(bounds.length);
  }

  private exporting = false;

  zero(): void {
    if (this.exporting) return;
    this.exporting = true;
    this.exported.push({ labels: this.labels, child: this });
  }

  clear(): void {
    this.counts.fill(0);
    this.sum = 0;
    this.count = 0;
    this.exporting = false;
  }

  observe(value: number): void {
    if (!Number.isFinite(value)) throw new TypeError(`Value is not a valid number: ${value}`);
    if (!this.exporting) this.zero();
    const bounds = this.bounds;
    let i = 0;
    while (i < bounds.length && value > (bounds[i] as number)) i++;
    if (i < bounds.length) this.counts[i] = (this.counts[i] as number) + 1;
    this.sum += value;
    this.count++;
  }
}

export class FastHistogram extends FastFamily<FastHistogramChild> {
  readonly type = "histogram";
  readonly aggregator = "sum";
  private readonly bounds: Float64Array;

  constructor(
    name: string,
    help: string,
    labelNames: readonly string[],
    buckets: readonly number[],
    registers: readonly Registry[],
  ) {
    assertValidBuckets(buckets);
    if (labelNames.includes("le")) throw new Error(`${name}: "le" is reserved in a histogram`);
    super(name, help, labelNames, registers);
    this.bounds = Float64Array.from(buckets);
    // Without labels its one series exists from the start (not after a reset: prom-client's).
    if (labelNames.length === 0) this.labels({}).zero();
  }

  protected makeChild(labels: Labels, exported: Exported<FastHistogramChild>): FastHistogramChild {
    return new FastHistogramChild(this.bounds, labels, exported);
  }

  async get(): Promise<MetricObjectWithValues> {
    const values: MetricSample[] = [];
    const bucketName = `${this.name}_bucket`;
    for (const { labels, child } of this.exported) {
      let cumulative = 0;
      for (let i = 0; i < this.bounds.length; i++) {
        cumulative += child.counts[i] as number;
        values.push({
          value: cumulative,
          labels: { le: this.bounds[i] as number, ...labels },
          metricName: bucketName,
        });
      }
      values.push(
        { value: child.count, labels: { le: "+Inf", ...labels }, metricName: bucketName },
        { value: child.sum, labels: { ...labels }, metricName: `${this.name}_sum` },
        { value: child.count, labels: { ...labels }, metricName: `${this.name}_count` },
      );
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: "sum" };
  }
}
