// Runs the trust decay every `intervalMs` of the injected clock. The timer only polls (every
// min(interval, POLL_MS) of real time, unref'd so it never keeps the process alive); the run
// happens when the clock says the last run is at least `intervalMs` old. Polling against the
// recorded last run, rather than a plain setInterval(interval), means restarts do not postpone
// the decay forever, and a moved test clock is noticed without a 24 h timer.

import type { Clock } from "../domain/clock.js";

const POLL_MS = 60_000;

export class DecayScheduler {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;

  constructor(
    private readonly clock: Clock,
    private readonly intervalMs: number,
    /** ms of the last completed run, or null if none ever ran. */
    private readonly lastRunMs: () => number | null,
    /** Runs the decay (and audits it); must not throw. */
    private readonly run: () => Promise<void>,
  ) {}

  /** Checks once at once (a data directory that never decayed gets its first run now). */
  start(): void {
    if (this.timer !== null) return;
    this.timer = setInterval(() => this.check(), Math.min(this.intervalMs, POLL_MS));
    this.timer.unref();
    this.check();
  }

  /** Resolves once a run in progress has finished. */
  async stop(): Promise<void> {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    await this.running;
  }

  private check(): void {
    if (this.running !== null) return;
    const last = this.lastRunMs();
    if (last !== null && this.clock.nowMs() - last < this.intervalMs) return;
    this.running = this.run().finally(() => {
      this.running = null;
    });
  }
}
