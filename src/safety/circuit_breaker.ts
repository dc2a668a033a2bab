// Per-agent circuit breakers (DESIGN §3 "Circuit breaker"), owned by the main thread: the
// table of agents, each breaker's state machine, eviction and persistence. The per-agent
// sliding window and the trip rule are pure arithmetic in breaker_window.ts.
//
// States: closed → (trip) → open: admit() refuses with the seconds left of cooldown_ms →
// (cooldown over) → half_open: admit() lets up to half_open_probes writes through at a time;
// a bad outcome re-opens with a fresh cooldown; half_open_probes ok outcomes close it and clear
// the window. Outcomes of requests admitted before a trip are ignored while open. A half-open
// breaker that admits no probe for one window_ms closes by itself: the agent has stopped
// writing, nothing is left to judge, and its next bad writes are counted afresh (otherwise
// every agent that tripped and went quiet would show as half-open forever).
//
// Bounds: at most max_tracked_agents entries. A new agent beyond that evicts the least recently
// recorded closed agent (bounded scan); if none is found among the oldest EVICTION_SCAN entries,
// the new agent is not tracked (fails open) rather than evicting an open breaker.
//
// Persistence: every transition to open or half_open, and back to closed, goes to a
// BreakerPersistence (LMDB in breaker_store.ts), so an open breaker stays open across a restart
// or kill -9. Closed agents are not stored: a restart forgets their window.

import {
  type BreakerWindow,
  BUCKETS,
  bucketMsFor,
  clearWindow,
  countOutcome,
  shouldTrip,
  windowCounts,
} from "./breaker_window.js";

export { BUCKETS } from "./breaker_window.js";

export const BREAKER_STATES = ["closed", "open", "half_open"] as const;
export type BreakerState = (typeof BREAKER_STATES)[number];

export interface BreakerConfig {
  windowMs: number;
  threshold: number;
  minVolume: number;
  /** 0..1 */
  minBadRatio: number;
  cooldownMs: number;
  halfOpenProbes: number;
  maxTrackedAgents: number;
}

/** What survives a restart: only non-closed breakers. */
export interface PersistedBreaker {
  state: "open" | "half_open";
  openedAtMs: number;
  /** End of the cooldown (when open turns half_open). */
  retryAtMs: number;
  trips: number;
}

export interface BreakerPersistence {
  /**
   * Stores (or, for null = closed, removes) an agent's breaker; resolves once it is on disk.
   * Must not throw or reject (failures are the persistence's to report).
   */
  save(agent: string, state: PersistedBreaker | null): Promise<void>;
}

export interface BreakerSnapshot {
  agent: string;
  state: BreakerState;
  bad_in_window: number;
  total_in_window: number;
  opened_at: number | null;
  retry_at: number | null;
  trips: number;
  probes_in_flight: number;
  probe_successes: number;
}

export type AdmitResult = { ok: true } | { ok: false; retryAfterS: number };

/** Oldest entries examined for an evictable closed agent when the table is full. */
const EVICTION_SCAN = 64;

/** One tracked agent: its window (epochs, ok, bad) and its breaker's state. */
interface Entry extends BreakerWindow {
  agent: string;
  state: BreakerState;
  openedAtMs: number | null;
  retryAtMs: number | null;
  trips: number;
  /** Kept after the breaker closes (probation); in memory only, so a restart ends probation. */
  lastTripAtMs: number | null;
  probesInFlight: number;
  probeSuccesses: number;
  lastProbeAtMs: number;
}

function newEntry(agent: string): Entry {
  return {
    agent,
    state: "closed",
    epochs: new Array<number>(BUCKETS).fill(-1),
    ok: new Array<number>(BUCKETS).fill(0),
    bad: new Array<number>(BUCKETS).fill(0),
    openedAtMs: null,
    retryAtMs: null,
    trips: 0,
    lastTripAtMs: null,
    probesInFlight: 0,
    probeSuccesses: 0,
    lastProbeAtMs: 0,
  };
}

export interface BreakerEvents {
  /** A breaker tripped (closed → open, or a failed probe re-opened it). */
  onTrip?: (snapshot: BreakerSnapshot) => void;
}

export class CircuitBreakers {
  private readonly entries = new Map<string, Entry>();
  /** Agents not closed: the only ones whose state can change with time alone. */
  private readonly notClosed = new Set<string>();
  private readonly bucketMs: number;
  private tripsTotal = 0;
  /** The latest persistence write, and the one issued by the current record() call. */
  private lastWrite: Promise<void> = Promise.resolve();
  private writeOfCall: Promise<void> | null = null;

  constructor(
    readonly config: Readonly<BreakerConfig>,
    private readonly persistence: BreakerPersistence,
    restored: Iterable<[string, PersistedBreaker]> = [],
    private readonly events: BreakerEvents = {},
  ) {
    if (!(config.windowMs >= BUCKETS)) throw new RangeError(`windowMs must be ≥ ${BUCKETS}`);
    if (!(config.threshold >= 1 && config.minVolume >= 1 && config.halfOpenProbes >= 1)) {
      throw new RangeError("threshold, minVolume and halfOpenProbes must be ≥ 1");
    }
    if (!(config.minBadRatio >= 0 && config.minBadRatio <= 1)) {
      throw new RangeError("minBadRatio must be in [0, 1]");
    }
    this.bucketMs = bucketMsFor(config.windowMs);
    for (const [agent, p] of restored) {
      if (this.entries.size >= config.maxTrackedAgents) break;
      const e = newEntry(agent);
      e.state = p.state;
      e.openedAtMs = p.openedAtMs;
      e.lastTripAtMs = p.openedAtMs;
      e.retryAtMs = p.retryAtMs;
      e.trips = p.trips;
      e.lastProbeAtMs = p.retryAtMs;
      this.entries.set(agent, e);
      this.notClosed.add(agent);
    }
  }

  /** Trips since this process started. */
  get trips(): number {
    return this.tripsTotal;
  }

  /** Whether `agent` may write now. Call record() or release() for every admitted request. */
  admit(agent: string, nowMs: number): AdmitResult {
    const e = this.entries.get(agent);
    if (e === undefined) return { ok: true };
    this.refresh(e, nowMs);
    if (e.state === "closed") return { ok: true };
    if (e.state === "open") {
      return {
        ok: false,
        retryAfterS: Math.max(1, Math.ceil(((e.retryAtMs ?? nowMs) - nowMs) / 1000)),
      };
    }
    // Half-open. A probe that never reported back (a bug, a lost request) frees its slot
    // after one cooldown so the breaker cannot stay stuck.
    if (e.probesInFlight > 0 && nowMs - e.lastProbeAtMs > this.config.cooldownMs)
      e.probesInFlight = 0;
    if (e.probesInFlight + e.probeSuccesses < this.config.halfOpenProbes) {
      e.probesInFlight++;
      e.lastProbeAtMs = nowMs;
      return { ok: true };
    }
    return { ok: false, retryAfterS: 1 };
  }

  /**
   * Records `count` outcomes of `agent`'s writes. Returns null, or, when the outcome changed
   * the breaker's state, a promise that resolves once the new state is on disk (the router
   * answers the request that tripped a breaker only then, so a client that saw the answer
   * cannot find the breaker closed after a crash).
   */
  record(agent: string, outcome: "ok" | "bad", nowMs: number, count = 1): Promise<void> | null {
    this.writeOfCall = null;
    this.recordOutcome(agent, outcome, nowMs, count);
    return this.writeOfCall;
  }

  /** Resolves once every state change so far is on disk. */
  flushed(): Promise<void> {
    return this.lastWrite;
  }

  private recordOutcome(agent: string, outcome: "ok" | "bad", nowMs: number, count: number): void {
    if (!(Number.isSafeInteger(count) && count >= 1)) return;
    const e = this.entryFor(agent);
    if (e === null) return;
    this.refresh(e, nowMs);
    if (e.state === "open") return;
    if (e.state === "half_open") {
      if (e.probesInFlight > 0) e.probesInFlight--;
      if (outcome === "bad") {
        this.trip(e, nowMs);
        return;
      }
      e.probeSuccesses += count;
      if (e.probeSuccesses >= this.config.halfOpenProbes) this.close(e);
      return;
    }
    countOutcome(e, this.bucketMs, nowMs, outcome, count);
    // Checked on ok outcomes too: an ok can be what brings the window to min_volume.
    const { bad, total } = windowCounts(e, this.bucketMs, nowMs);
    if (shouldTrip(this.config, bad, total)) this.trip(e, nowMs);
  }

  /** An admitted request ended without an outcome (aborted, 5xx, 404): frees a probe slot. */
  release(agent: string): void {
    const e = this.entries.get(agent);
    if (e !== undefined && e.state === "half_open" && e.probesInFlight > 0) e.probesInFlight--;
  }

  /** Closes `agent`'s breaker and clears its window; returns the state it was in. */
  reset(agent: string, nowMs: number): BreakerState {
    const e = this.entries.get(agent);
    if (e === undefined) return "closed";
    this.refresh(e, nowMs);
    const previous = e.state;
    this.close(e);
    return previous;
  }

  /**
   * Whether the agent is on probation: its breaker is not closed, or it tripped less than
   * `probationMs` ago. Allocation-free (it runs for every write).
   */
  onProbation(agent: string, nowMs: number, probationMs: number): boolean {
    const e = this.entries.get(agent);
    if (e === undefined) return false;
    this.refresh(e, nowMs);
    if (e.state !== "closed") return true;
    return e.lastTripAtMs !== null && nowMs - e.lastTripAtMs < probationMs;
  }

  stateOf(agent: string, nowMs: number): BreakerSnapshot {
    const e = this.entries.get(agent);
    if (e === undefined) return this.snapshot(newEntry(agent), nowMs);
    this.refresh(e, nowMs);
    return this.snapshot(e, nowMs);
  }

  /** Tracked agents ordered by id, after `afterAgent`, optionally in one state; at most `limit`. */
  list(
    nowMs: number,
    opts: { afterAgent?: string; state?: BreakerState; limit: number },
  ): BreakerSnapshot[] {
    const source =
      opts.state === undefined || opts.state === "closed"
        ? this.entries.keys()
        : this.notClosed.values();
    const ids = [...source]
      .filter((a) => opts.afterAgent === undefined || a > opts.afterAgent)
      .sort();
    const out: BreakerSnapshot[] = [];
    for (const agent of ids) {
      if (out.length >= opts.limit) break;
      const s = this.stateOf(agent, nowMs);
      if (opts.state === undefined || s.state === opts.state) out.push(s);
    }
    return out;
  }

  /** Number of tracked agents in each state (time-driven transitions applied first). */
  counts(nowMs: number): Record<BreakerState, number> {
    for (const agent of [...this.notClosed]) {
      const e = this.entries.get(agent);
      if (e !== undefined) this.refresh(e, nowMs);
    }
    let open = 0;
    for (const agent of this.notClosed) if (this.entries.get(agent)?.state === "open") open++;
    return {
      closed: this.entries.size - this.notClosed.size,
      open,
      half_open: this.notClosed.size - open,
    };
  }

  get tracked(): number {
    return this.entries.size;
  }

  // ---- internals ---------------------------------------------------------------------

  private entryFor(agent: string): Entry | null {
    const e = this.entries.get(agent);
    if (e !== undefined) {
      // Re-insert so Map order is "least recently recorded first" for eviction.
      this.entries.delete(agent);
      this.entries.set(agent, e);
      return e;
    }
    if (this.entries.size >= this.config.maxTrackedAgents && !this.evictOne()) return null;
    const created = newEntry(agent);
    this.entries.set(agent, created);
    return created;
  }

  private evictOne(): boolean {
    let scanned = 0;
    for (const [agent, e] of this.entries) {
      if (scanned++ >= EVICTION_SCAN) break;
      if (e.state === "closed") {
        this.entries.delete(agent);
        return true;
      }
    }
    return false;
  }

  private refresh(e: Entry, nowMs: number): void {
    if (e.state === "open" && e.retryAtMs !== null && nowMs >= e.retryAtMs) {
      e.state = "half_open";
      e.probesInFlight = 0;
      e.probeSuccesses = 0;
      e.lastProbeAtMs = e.retryAtMs;
      this.persist(e);
    }
    if (
      e.state === "half_open" &&
      e.probesInFlight === 0 &&
      nowMs - e.lastProbeAtMs >= this.config.windowMs
    ) {
      this.close(e);
    }
  }

  private trip(e: Entry, nowMs: number): void {
    e.state = "open";
    e.openedAtMs = nowMs;
    e.lastTripAtMs = nowMs;
    e.retryAtMs = nowMs + this.config.cooldownMs;
    e.trips++;
    e.probesInFlight = 0;
    e.probeSuccesses = 0;
    this.tripsTotal++;
    this.notClosed.add(e.agent);
    this.persist(e);
    this.events.onTrip?.(this.snapshot(e, nowMs));
  }

  private close(e: Entry): void {
    e.state = "closed";
    e.openedAtMs = null;
    e.retryAtMs = null;
    e.probesInFlight = 0;
    e.probeSuccesses = 0;
    clearWindow(e);
    this.notClosed.delete(e.agent);
    this.persist(e);
  }

  private persist(e: Entry): void {
    this.writeOfCall = this.persistence.save(
      e.agent,
      e.state === "closed"
        ? null
        : {
            state: e.state,
            openedAtMs: e.openedAtMs ?? 0,
            retryAtMs: e.retryAtMs ?? 0,
            trips: e.trips,
          },
    );
    this.lastWrite = this.writeOfCall;
  }

  private snapshot(e: Entry, nowMs: number): BreakerSnapshot {
    const { bad, total } = windowCounts(e, this.bucketMs, nowMs);
    return {
      agent: e.agent,
      state: e.state,
      bad_in_window: bad,
      total_in_window: total,
      opened_at: e.openedAtMs,
      retry_at: e.retryAtMs,
      trips: e.trips,
      probes_in_flight: e.probesInFlight,
      probe_successes: e.probeSuccesses,
    };
  }
}
