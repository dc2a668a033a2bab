// The crash loop's state changes: retractions and supersessions (by the author) and votes (by
// a second agent) on acknowledged writes, each write used at most once, and what their answers
// said. The checks after a restart are in server_crash_verify.ts.
import { http } from "./server_crash_verify.js";

/** What the state changes' answers said, for the checks after a restart. */
export interface StateChangeLog {
  /** Retracted target → the retraction's LSN, as its 200 reported. */
  retracted: Map<string, number>;
  /** Targets whose retraction got no answer, then a retry said it had landed (LSN unknown). */
  retractedUnanswered: Set<string>;
  /** Targets whose retraction got no answer and has not been retried yet. */
  retractsPending: Set<string>;
  /** Voted target → the vote's direction and LSN, as its 201 reported. */
  voted: Map<string, { vote: "up" | "down"; lsn: number }>;
  /** Targets whose vote got no answer (never retried: provenance shows whether it landed). */
  votesUnanswered: Map<string, "up" | "down">;
  /** Superseded target → the replacing assertion, as its 201 reported. */
  superseded: Map<string, { id: string; lsn: number }>;
  /** Targets whose supersession got no answer and has not been retried yet. */
  supersedesPending: Set<string>;
  /** The second agent's principal (the voter). */
  voter: string;
}

export interface StateChangeStats {
  retracts: number;
  retractsLandedUnanswered: number;
  votes: number;
  supersedes: number;
  problems: string[];
}

/** POSTs `body`: the answer, "unanswered" for a 5xx, or "gone" when the server is unreachable. */
async function post(
  baseUrl: string,
  key: string,
  urlPath: string,
  body: unknown,
): Promise<{ status: number; json: unknown } | "unanswered" | "gone"> {
  try {
    const res = await http(baseUrl, key, "POST", urlPath, body);
    return res.status >= 500 ? "unanswered" : res;
  } catch {
    return "gone";
  }
}

export class StateChanges {
  readonly log: StateChangeLog;
  /** Acknowledged writes not yet picked for a retraction or a vote. */
  private readonly unused: string[] = [];

  constructor(
    private readonly authorKey: string,
    private readonly voterKey: string,
    voter: string,
    private readonly stats: StateChangeStats,
  ) {
    this.log = {
      retracted: new Map(),
      retractedUnanswered: new Set(),
      retractsPending: new Set(),
      voted: new Map(),
      votesUnanswered: new Map(),
      superseded: new Map(),
      supersedesPending: new Set(),
      voter,
    };
  }

  /** A newly acknowledged write, available as a target. */
  offer(id: string): void {
    this.unused.push(id);
  }

  /** A random unused target (swap-remove), or null when none is left. */
  take(): string | null {
    if (this.unused.length === 0) return null;
    const at = Math.floor(Math.random() * this.unused.length);
    const id = this.unused[at] as string;
    this.unused[at] = this.unused[this.unused.length - 1] as string;
    this.unused.pop();
    return id;
  }

  /** Retracts `id` as its author; false when the server is gone. */
  async retract(baseUrl: string, id: string, retry: boolean): Promise<boolean> {
    const log = this.log;
    const res = await post(baseUrl, this.authorKey, "/v1/retract", { assertion_id: id });
    if (typeof res === "string") {
      log.retractsPending.add(id);
      return res === "unanswered";
    }
    const body = res.json as { lsn?: number; duplicate?: boolean };
    if (res.status !== 200 || typeof body.lsn !== "number") {
      throw new Error(`retract refused with ${res.status}: ${JSON.stringify(res.json)}`);
    }
    log.retractsPending.delete(id);
    this.stats.retracts++;
    if (body.duplicate === true) {
      // Only a retry may find its retraction done: it landed, and its answer was lost.
      if (!retry) this.stats.problems.push(`first retraction of ${id} answered as a duplicate`);
      log.retractedUnanswered.add(id);
      this.stats.retractsLandedUnanswered++;
    } else log.retracted.set(id, body.lsn);
    return true;
  }

  /** Votes on `id` as the second agent; false when the server is gone. */
  async vote(baseUrl: string, id: string): Promise<boolean> {
    const vote = Math.random() < 0.5 ? "up" : "down";
    const res = await post(baseUrl, this.voterKey, "/v1/vote", { assertion_id: id, vote });
    if (typeof res === "string") {
      this.log.votesUnanswered.set(id, vote);
      return res === "unanswered";
    }
    const body = res.json as { lsn?: number; replaced?: boolean };
    if (res.status !== 201 || typeof body.lsn !== "number" || body.replaced !== false) {
      throw new Error(`vote answered ${res.status}: ${JSON.stringify(res.json)}`);
    }
    this.stats.votes++;
    this.log.voted.set(id, { vote, lsn: body.lsn });
    return true;
  }

  /**
   * Supersedes `id` (about `concept`) as its author with a new assertion derived from `id`,
   * so a retry sends the same content and gets the same answer; false when the server is gone.
   */
  async supersede(baseUrl: string, id: string, concept: string, retry: boolean): Promise<boolean> {
    const log = this.log;
    const body = {
      supersedes: id,
      assertion: { concept, value: { replaces: id }, confidence: 0.8 },
    };
    const res = await post(baseUrl, this.authorKey, "/v1/supersede", body);
    if (typeof res === "string") {
      log.supersedesPending.add(id);
      return res === "unanswered";
    }
    const answer = res.json as { id?: string; lsn?: number; duplicate?: boolean };
    if (res.status !== 201 || typeof answer.id !== "string" || typeof answer.lsn !== "number") {
      throw new Error(`supersede answered ${res.status}: ${JSON.stringify(res.json)}`);
    }
    if (answer.duplicate === true && !retry) {
      this.stats.problems.push(`first supersession of ${id} answered as a duplicate`);
    }
    log.supersedesPending.delete(id);
    this.stats.supersedes++;
    log.superseded.set(id, { id: answer.id, lsn: answer.lsn });
    return true;
  }

  /** Retries every retraction and supersession that got no answer; throws if one gets none. */
  async retryPending(baseUrl: string, conceptOf: (id: string) => string): Promise<void> {
    for (const id of [...this.log.retractsPending]) {
      await this.retract(baseUrl, id, true);
      if (this.log.retractsPending.has(id)) throw new Error("a retried retraction got a 5xx");
    }
    for (const id of [...this.log.supersedesPending]) {
      await this.supersede(baseUrl, id, conceptOf(id), true);
      if (this.log.supersedesPending.has(id)) throw new Error("a retried supersession got a 5xx");
    }
  }
}
