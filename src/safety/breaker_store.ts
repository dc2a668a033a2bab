// LMDB persistence of non-closed circuit breakers: database `circuit_breakers` in the meta
// environment, agent id → PersistedBreaker (JSON). Only open and half-open breakers are stored
// (closing one deletes its record), so the table is bounded by the breaker table's bound.
//
// Writes are issued when the transition happens (inside the router's synchronous request
// path) and are not awaited there: the request that tripped a breaker has its answer already,
// and the in-memory state refuses the agent's next write at once. LMDB commits them within a
// few ms; a kill -9 inside that window can lose the trip (the agent is then judged afresh).

import type { Database, RootDatabase } from "lmdb";
import type { BreakerPersistence, PersistedBreaker } from "./circuit_breaker.js";

export class BreakerStore implements BreakerPersistence {
  private readonly db: Database<PersistedBreaker, string>;
  private pending: Promise<unknown> = Promise.resolve();

  constructor(
    root: RootDatabase,
    private readonly onError: (err: unknown, agent: string) => void,
  ) {
    this.db = root.openDB<PersistedBreaker, string>({ name: "circuit_breakers", encoding: "json" });
  }

  /** Every stored (open or half-open) breaker. */
  load(): Array<[string, PersistedBreaker]> {
    const out: Array<[string, PersistedBreaker]> = [];
    for (const { key, value } of this.db.getRange()) out.push([key, value]);
    return out;
  }

  save(agent: string, state: PersistedBreaker | null): void {
    const write = state === null ? this.db.remove(agent) : this.db.put(agent, state);
    this.pending = write.then(
      () => undefined,
      (err: unknown) => this.onError(err, agent),
    );
  }

  /** Resolves once every transition issued so far is committed and flushed (tests, shutdown). */
  async flushed(): Promise<void> {
    await this.pending;
    await this.db.flushed;
  }
}
