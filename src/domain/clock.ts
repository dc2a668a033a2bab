// The one source of "now" for everything time-based in trust decay, circuit breakers and the
// audit log. Injected (ServerContext.clock) rather than read from Date.now() so that tests can
// move time inside a real server process instead of sleeping.

/** Milliseconds since the epoch (UTC). */
export interface Clock {
  nowMs(): number;
}

export const systemClock: Clock = Object.freeze({ nowMs: () => Date.now() });

/** Largest single move of a test clock: 10 years, far beyond any half-life or cooldown. */
export const MAX_TEST_CLOCK_ADVANCE_MS = 10 * 365 * 24 * 3_600_000;

/**
 * The system clock plus an offset that only moves forward. TEST ONLY: the server installs it
 * when STEMEDB_TEST_CLOCK=on, and then exposes POST /v1/admin/test/clock. Forward-only keeps
 * "time since X" non-negative inside one process (a restart starts again at offset 0).
 */
export class TestClock implements Clock {
  private offset_ms = 0;

  constructor(private readonly base: Clock = systemClock) {}

  nowMs(): number {
    return this.base.nowMs() + this.offset_ms;
  }

  get offsetMs(): number {
    return this.offset_ms;
  }

  /** Moves the clock forward by `ms` (an integer in 1..MAX_TEST_CLOCK_ADVANCE_MS). */
  advance(ms: number): number {
    if (!Number.isSafeInteger(ms) || ms < 1 || ms > MAX_TEST_CLOCK_ADVANCE_MS) {
      throw new RangeError(`advance must be an integer in 1..${MAX_TEST_CLOCK_ADVANCE_MS} ms`);
    }
    this.offset_ms += ms;
    return this.nowMs();
  }
}
