// Escalations (DESIGN §3): a concept whose active assertions disagree, with a consensus margin
// below STEMEDB_ESCALATION_MARGIN while the top two values each have an author trusted at
// least STEMEDB_ESCALATION_MIN_TRUST, gets an open escalation for an admin to resolve.
//
// Checks run off the request path: writes and votes that could create such a contest enqueue
// their concept (a bounded set; when full, further concepts are dropped and counted), and one
// background loop checks them one at a time. Records live in the meta environment.
import type { Database, RootDatabase } from "lmdb";
import { Counter, Gauge, type Registry } from "prom-client";
import { type ConsensusGroup, consensus } from "../domain/consensus.js";
import { shardForConcept } from "../domain/shard_hash.js";
import type { ActiveList } from "../shard/protocol.js";

/** Concepts waiting for a check, at most. */
export const MAX_PENDING_CHECKS = 10_000;
/** Active assertions one check weighs (newest first). */
const MAX_CHECK_ASSERTIONS = 1000;
/** Records one list page examines (a status filter may skip many). */
const MAX_LIST_SCAN = 10_000;
/** Assertion ids kept per side in an escalation record. */
const MAX_IDS_PER_SIDE = 20;

export interface EscalationSide {
  value_json: string;
  score: number;
  max_author_trust: number;
  assertions: string[];
}

/**
 * What a resolve decided, stored before it changes anything, so a resolve interrupted by a
 * crash is finished by the next one exactly as decided, its trust evidence counted once.
 */
export interface ResolutionPlan {
  winner_id: string;
  /** Active assertions with another value when the plan was made: superseded by the winner. */
  losers: string[];
  /** Per author: [agent, agreements, disagreements]. */
  evidence: Array<[string, number, number]>;
  resolved_by: string;
  reason: string | null;
}

export interface EscalationRecord {
  id: number;
  concept: string;
  status: "open" | "resolved";
  opened_at: number;
  margin: number;
  sides: EscalationSide[];
  resolved_at?: number;
  resolved_by?: string;
  winner_id?: string;
  superseded?: string[];
  reason?: string | null;
  /** Set while a resolve is under way (ResolutionPlan); removed when it is resolved. */
  plan?: ResolutionPlan;
}

export interface EscalationDeps {
  root: RootDatabase;
  registry: Registry;
  nowMs: () => number;
  trustOf: (agent: string) => number;
  activeList: (shard: number, concept: string, limit: number) => Promise<ActiveList>;
  shardCount: number;
  marginBelow: number;
  minTrust: number;
  onError: (err: unknown, concept: string) => void;
}

export class Escalations {
  private readonly db: Database<EscalationRecord, number>;
  private readonly openByConcept = new Map<string, number>();
  private readonly pending = new Set<string>();
  private running = false;
  private last: number;
  private readonly dropped: Counter;
  private readonly opened: Counter;

  constructor(private readonly deps: EscalationDeps) {
    this.db = deps.root.openDB<EscalationRecord, number>({ name: "escalations", encoding: "json" });
    let last = 0;
    for (const { key, value } of this.db.getRange()) {
      last = key;
      if (value.status === "open") this.openByConcept.set(value.concept, key);
    }
    this.last = last;
    const registers = [deps.registry];
    const openRef = this.openByConcept;
    new Gauge({
      name: "stemedb_escalations_open",
      help: "Escalations waiting for an admin decision.",
      registers,
      collect() {
        this.set(openRef.size);
      },
    });
    this.opened = new Counter({
      name: "stemedb_escalations_opened_total",
      help: "Escalations opened.",
      registers,
    });
    this.dropped = new Counter({
      name: "stemedb_escalation_checks_dropped_total",
      help: "Escalation checks dropped because the check queue was full.",
      registers,
    });
  }

  get openCount(): number {
    return this.openByConcept.size;
  }

  /** Schedules a check of `concept` (deduplicated, bounded). */
  enqueue(concept: string): void {
    if (this.pending.has(concept)) return;
    if (this.pending.size >= MAX_PENDING_CHECKS) {
      this.dropped.inc();
      return;
    }
    this.pending.add(concept);
    if (!this.running) void this.drain();
  }

  /** Resolves once every queued check has run (tests and shutdown). */
  async idle(): Promise<void> {
    while (this.running || this.pending.size > 0) await new Promise((r) => setImmediate(r));
  }

  private async drain(): Promise<void> {
    this.running = true;
    try {
      for (const concept of this.pending) {
        this.pending.delete(concept);
        try {
          await this.check(concept);
        } catch (err) {
          this.deps.onError(err, concept);
        }
      }
    } finally {
      this.running = false;
    }
  }

  private side(g: ConsensusGroup, list: ActiveList): EscalationSide {
    let maxTrust = 0;
    for (const item of list.items) {
      if (item.valueJson === g.valueJson)
        maxTrust = Math.max(maxTrust, this.deps.trustOf(item.agent));
    }
    return {
      value_json: g.valueJson,
      score: g.score,
      max_author_trust: maxTrust,
      assertions: g.assertions.slice(0, MAX_IDS_PER_SIDE),
    };
  }

  private async check(concept: string): Promise<void> {
    if (this.openByConcept.has(concept)) return;
    const shard = shardForConcept(concept, this.deps.shardCount);
    const list = await this.deps.activeList(shard, concept, MAX_CHECK_ASSERTIONS);
    const result = consensus(list.items, this.deps.trustOf);
    const [first, second] = result.groups;
    if (first === undefined || second === undefined) return;
    if (!(result.margin < this.deps.marginBelow)) return;
    const sides = [this.side(first, list), this.side(second, list)];
    if (!sides.every((s) => s.max_author_trust >= this.deps.minTrust)) return;
    if (this.openByConcept.has(concept)) return;
    const rec: EscalationRecord = {
      id: ++this.last,
      concept,
      status: "open",
      opened_at: this.deps.nowMs(),
      margin: result.margin,
      sides,
    };
    this.openByConcept.set(concept, rec.id);
    await this.db.put(rec.id, rec);
    await this.db.flushed;
    this.opened.inc();
  }

  get(id: number): EscalationRecord | undefined {
    return this.db.get(id);
  }

  /**
   * By id, after `after`, optionally only one status; at most `limit`. `lastScanned` is the
   * last id looked at when the scan bound stopped the page early (else null).
   */
  list(
    after: number,
    limit: number,
    status: "open" | "resolved" | null,
  ): { items: EscalationRecord[]; lastScanned: number | null } {
    const items: EscalationRecord[] = [];
    let scanned = 0;
    let lastId = after;
    for (const { key, value } of this.db.getRange({ start: after + 1, limit: MAX_LIST_SCAN })) {
      scanned++;
      lastId = key;
      if (status !== null && value.status !== status) continue;
      items.push(value);
      if (items.length >= limit) return { items, lastScanned: null };
    }
    return { items, lastScanned: scanned >= MAX_LIST_SCAN ? lastId : null };
  }

  /** Marks an escalation resolved (durable before it resolves). */
  /** Stores the plan of a resolve about to start (durable on return). */
  async savePlan(id: number, plan: ResolutionPlan): Promise<void> {
    const rec = this.openRecord(id);
    await this.db.put(id, { ...rec, plan });
    await this.db.flushed;
  }

  /** Forgets the plan of a resolve that cannot finish (its winner fell). */
  async dropPlan(id: number): Promise<void> {
    const { plan: _plan, ...rest } = this.openRecord(id);
    await this.db.put(id, rest);
    await this.db.flushed;
  }

  /**
   * The resolved record of an open escalation, and the put that stores it: call `put` inside
   * the meta transaction that also adds the plan's trust evidence, then `committed()`.
   */
  resolution(
    id: number,
    resolution: Pick<EscalationRecord, "resolved_by" | "winner_id" | "superseded" | "reason">,
  ): { record: EscalationRecord; put: () => void; committed: () => void } {
    const rec = this.openRecord(id);
    const { plan: _plan, ...rest } = rec;
    const record: EscalationRecord = {
      ...rest,
      ...resolution,
      status: "resolved",
      resolved_at: this.deps.nowMs(),
    };
    return {
      record,
      put: () => {
        this.db.put(id, record);
      },
      committed: () => {
        this.openByConcept.delete(rec.concept);
      },
    };
  }

  private openRecord(id: number): EscalationRecord {
    const rec = this.db.get(id);
    if (rec === undefined || rec.status !== "open") throw new Error(`escalation ${id} is not open`);
    return rec;
  }
}
