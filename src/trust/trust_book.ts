// TrustBook: every agent's Beta evidence (DESIGN §3 "Trust rank"), owned by the main thread and
// stored in the meta LMDB environment (database `agents`, JSON values keyed by agent id).
//
// Snapshot and staleness: all records live in an in-memory Map that is updated synchronously
// in the same tick as the change is issued, so trust(agent) on the main thread is exact
// (staleness zero) and costs one Map lookup, no I/O and no round trip. Only the main thread
// reads trust today: shards receive trust values inside the write messages the main thread
// sends them, so no other thread needs a copy. A change is visible to main-thread readers from
// the moment it is issued, a few ms before it is on disk; addEvidence()/decay() resolve only
// after LMDB has flushed it, and if that write fails the snapshot is reloaded from disk.
//
// Decay is lazy per agent: α, β are stored "as of decayedAtMs"; addEvidence first decays the
// record to now and then adds, and decay() brings every agent to now. Because decay is a
// semigroup (see beta.ts), the result depends only on elapsed time, not on the schedule.

import type { Database, RootDatabase } from "lmdb";
import { isValidPrincipal } from "../domain/api_keys.js";
import type { Clock } from "../domain/clock.js";
import type { TrustView } from "../domain/trust_view.js";
import {
  decayed,
  isEvidenceWeight,
  MAX_EVIDENCE_WEIGHT,
  PRIOR_ALPHA,
  PRIOR_BETA,
  trustOf,
} from "./beta.js";

export const EVIDENCE_KINDS = ["gold", "vote", "quarantine", "escalation"] as const;
export type EvidenceKind = (typeof EVIDENCE_KINDS)[number];

/** Lifetime totals of evidence weight received, by kind and side (never decayed). */
export interface EvidenceCounters {
  gold_agreed: number;
  gold_disagreed: number;
  votes_up_weight: number;
  votes_down_weight: number;
  quarantine_approved: number;
  quarantine_rejected: number;
  escalation_won: number;
  escalation_lost: number;
}

const COUNTER_FIELDS: Record<EvidenceKind, [keyof EvidenceCounters, keyof EvidenceCounters]> = {
  gold: ["gold_agreed", "gold_disagreed"],
  vote: ["votes_up_weight", "votes_down_weight"],
  quarantine: ["quarantine_approved", "quarantine_rejected"],
  escalation: ["escalation_won", "escalation_lost"],
};

export interface AgentTrustRecord {
  agent: string;
  /** Beta parameters as of decayedAtMs (prior 1/1). */
  alpha: number;
  beta: number;
  evidence: EvidenceCounters;
  createdAtMs: number;
  /** Last evidence or decay that changed the record. */
  updatedAtMs: number;
  /** Time α and β were last brought forward by decay. */
  decayedAtMs: number;
}

export interface AgentTrust extends AgentTrustRecord {
  trust: number;
  /** False for an agent with no stored evidence (the prior is returned). */
  known: boolean;
}

export interface Evidence {
  /** Weight agreeing with the agent (α side); may be fractional, e.g. a voter's trust. */
  agree: number;
  /** Weight disagreeing with the agent (β side). */
  disagree: number;
  kind: EvidenceKind;
}

export interface TrustBookOptions {
  clock: Clock;
  halfLifeMs: number;
  /** Called after each completed decay run (metrics). */
  onDecay?: (result: DecayResult) => void;
}

export interface DecayResult {
  /** Agents whose evidence moved. */
  agents: number;
  ranAtMs: number;
}

/** Most agents the book holds (all cached in memory, ~400 bytes each). */
export const MAX_TRUST_AGENTS = 200_000;
/** Writes issued per decay chunk before yielding to the event loop. */
const DECAY_CHUNK = 5_000;
const RUNS_KEY = "decay";

function zeroCounters(): EvidenceCounters {
  return {
    gold_agreed: 0,
    gold_disagreed: 0,
    votes_up_weight: 0,
    votes_down_weight: 0,
    quarantine_approved: 0,
    quarantine_rejected: 0,
    escalation_won: 0,
    escalation_lost: 0,
  };
}

function priorRecord(agent: string, nowMs: number): AgentTrustRecord {
  return {
    agent,
    alpha: PRIOR_ALPHA,
    beta: PRIOR_BETA,
    evidence: zeroCounters(),
    createdAtMs: nowMs,
    updatedAtMs: nowMs,
    decayedAtMs: nowMs,
  };
}

export class TrustBook implements TrustView {
  private readonly root: RootDatabase;
  private readonly db: Database<AgentTrustRecord, string>;
  private readonly runs: Database<DecayResult, string>;
  private readonly records = new Map<string, Readonly<AgentTrustRecord>>();
  private lastRun: DecayResult | null;
  private decayChain: Promise<unknown> = Promise.resolve();

  constructor(
    root: RootDatabase,
    private readonly opts: TrustBookOptions,
  ) {
    if (!(opts.halfLifeMs > 0)) throw new RangeError("halfLifeMs must be > 0");
    this.root = root;
    this.db = root.openDB<AgentTrustRecord, string>({ name: "agents", encoding: "json" });
    this.runs = root.openDB<DecayResult, string>({ name: "trust_runs", encoding: "json" });
    for (const { key, value } of this.db.getRange()) this.records.set(key, Object.freeze(value));
    this.lastRun = this.runs.get(RUNS_KEY) ?? null;
  }

  get halfLifeMs(): number {
    return this.opts.halfLifeMs;
  }

  /** Number of agents with stored evidence. */
  get size(): number {
    return this.records.size;
  }

  /** Last completed decay run, or null if none ever ran on this data directory. */
  get lastDecay(): DecayResult | null {
    return this.lastRun;
  }

  /** Trust in [0,1] from the snapshot; 0.5 (the prior) for an unknown agent. Sync, no I/O. */
  trust(agent: string): number {
    const r = this.records.get(agent);
    return r === undefined ? 0.5 : trustOf(r);
  }

  /** Every agent with evidence and its trust now (an epoch's snapshot; TrustView). */
  *entries(): Iterable<[string, number]> {
    for (const [agent, r] of this.records) yield [agent, trustOf(r)];
  }

  /** The full record (the prior, `known: false`, for an unknown agent). */
  get(agent: string): AgentTrust {
    const r = this.records.get(agent);
    if (r === undefined) return { ...priorRecord(agent, 0), trust: 0.5, known: false };
    return { ...r, evidence: { ...r.evidence }, trust: trustOf(r), known: true };
  }

  /**
   * Adds evidence about `agent`, after first decaying its record to now. Resolves once the
   * new record is on disk, with the trust readers saw before the call and the trust after.
   * `alongside` puts more into the same meta env in the same LMDB transaction (what marks the
   * evidence as counted), so a crash keeps both or neither. (lmdb-js commits an async
   * transaction's puts even when its callback throws, so `alongside` must not throw.) Throws RangeError on an invalid
   * agent id, kind or weight (finite, 0..MAX_EVIDENCE_WEIGHT).
   */
  async addEvidence(
    agent: string,
    ev: Evidence,
    alongside?: () => void,
  ): Promise<{ before: number; after: number }> {
    const [result] = await this.addEvidenceFor([{ agent, ev }], alongside);
    return result as { before: number; after: number };
  }

  /**
   * addEvidence for several agents (each at most once) in one LMDB transaction, with
   * `alongside`: an escalation's evidence and its resolution commit together. Validates
   * everything before writing anything.
   */
  async addEvidenceFor(
    items: ReadonlyArray<{ agent: string; ev: Evidence }>,
    alongside?: () => void,
  ): Promise<Array<{ before: number; after: number }>> {
    const nowMs = this.opts.clock.nowMs();
    const seen = new Set<string>();
    let added = 0;
    for (const { agent, ev } of items) {
      if (!isValidPrincipal(agent))
        throw new RangeError(`invalid agent id ${JSON.stringify(agent)}`);
      if (!(EVIDENCE_KINDS as readonly string[]).includes(ev.kind)) {
        throw new RangeError(`unknown evidence kind ${JSON.stringify(ev.kind)}`);
      }
      if (!isEvidenceWeight(ev.agree) || !isEvidenceWeight(ev.disagree)) {
        throw new RangeError(
          `evidence weights must be finite numbers in 0..${MAX_EVIDENCE_WEIGHT}`,
        );
      }
      if (seen.has(agent)) throw new RangeError(`agent ${agent} appears twice`);
      seen.add(agent);
      if (!this.records.has(agent)) added++;
    }
    if (this.records.size + added > MAX_TRUST_AGENTS) {
      throw new RangeError(`the trust book holds the maximum of ${MAX_TRUST_AGENTS} agents`);
    }
    const next: AgentTrustRecord[] = [];
    const results: Array<{ before: number; after: number }> = [];
    for (const { agent, ev } of items) {
      const current = this.records.get(agent);
      const base = current ?? priorRecord(agent, nowMs);
      const d = decayed(base, nowMs - base.decayedAtMs, this.opts.halfLifeMs);
      const [agreeField, disagreeField] = COUNTER_FIELDS[ev.kind];
      const evidence = { ...base.evidence };
      evidence[agreeField] += ev.agree;
      evidence[disagreeField] += ev.disagree;
      const r: AgentTrustRecord = {
        agent,
        alpha: d.alpha + ev.agree,
        beta: d.beta + ev.disagree,
        evidence,
        createdAtMs: base.createdAtMs,
        updatedAtMs: nowMs,
        decayedAtMs: Math.max(nowMs, base.decayedAtMs),
      };
      next.push(r);
      results.push({ before: current === undefined ? 0.5 : trustOf(current), after: trustOf(r) });
    }
    await this.commit(next, alongside);
    return results;
  }

  /**
   * Decays every agent to now (α' = 1 + (α−1)·2^(−Δt/half_life), Δt since its last decay or
   * update) and records the run. Runs are serialized. Resolves once everything is on disk.
   */
  decay(): Promise<DecayResult> {
    const run = this.decayChain.then(() => this.runDecay());
    this.decayChain = run.catch(() => undefined);
    return run;
  }

  private async runDecay(): Promise<DecayResult> {
    const ranAtMs = this.opts.clock.nowMs();
    let moved = 0;
    let chunk: AgentTrustRecord[] = [];
    // Snapshot the keys first: commits in between may add agents (they are already current).
    for (const agent of [...this.records.keys()]) {
      const r = this.records.get(agent);
      if (r === undefined || (r.alpha === PRIOR_ALPHA && r.beta === PRIOR_BETA)) continue;
      if (ranAtMs <= r.decayedAtMs) continue;
      const d = decayed(r, ranAtMs - r.decayedAtMs, this.opts.halfLifeMs);
      chunk.push({
        ...r,
        alpha: d.alpha,
        beta: d.beta,
        updatedAtMs: ranAtMs,
        decayedAtMs: ranAtMs,
      });
      moved++;
      if (chunk.length >= DECAY_CHUNK) {
        await this.commit(chunk);
        chunk = [];
      }
    }
    if (chunk.length > 0) await this.commit(chunk);
    const result: DecayResult = { agents: moved, ranAtMs };
    await this.runs.put(RUNS_KEY, result);
    await this.runs.flushed;
    this.lastRun = result;
    this.opts.onDecay?.(result);
    return result;
  }

  /** Publishes to the snapshot at once, then waits until LMDB has the records on disk. */
  private async commit(
    records: readonly AgentTrustRecord[],
    alongside?: () => void,
  ): Promise<void> {
    for (const r of records) this.records.set(r.agent, Object.freeze(r));
    try {
      await this.root.transaction(() => {
        for (const r of records) this.db.put(r.agent, r);
        alongside?.();
      });
      await this.db.flushed;
    } catch (err) {
      for (const r of records) {
        const stored = this.db.get(r.agent);
        if (stored === undefined) this.records.delete(r.agent);
        else this.records.set(r.agent, Object.freeze(stored));
      }
      throw err;
    }
  }
}
