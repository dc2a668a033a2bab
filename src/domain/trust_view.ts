// What the write and read paths need of trust: a synchronous read of one agent's current
// trust (from the main thread's in-memory snapshot, never a round trip) and every agent's
// trust for an epoch's snapshot. The trust book implements it; before any evidence exists
// every agent has the Beta prior's mean.
export const PRIOR_TRUST = 0.5;

export interface TrustView {
  /** Current trust of `agent` in [0, 1] (PRIOR_TRUST when nothing is known). */
  trust(agent: string): number;
  /** Every agent with evidence and its current trust (for epoch snapshots). */
  entries(): Iterable<[string, number]>;
}
