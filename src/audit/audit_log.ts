// The audit log (DESIGN §3 "Audit log"): append-only, hash-chained entries in the meta LMDB
// environment (database `audit`, key = seq as a number, value = the entry as JSON).
//
//   hash = sha256_hex(canonicalJson({seq, time_ms, actor, action, target, outcome,
//                                    request_id, details, prev_hash}))
//
// with prev_hash = the previous entry's hash (GENESIS_HASH for seq 1). Changing, removing or
// reordering any stored entry breaks the chain at that entry, and verify() names it. Removing
// entries at the end is caught only against the head this process remembers (not across a
// restart): export the head hash elsewhere if that matters.
//
// append() assigns seq and prev_hash synchronously from the in-memory head, so concurrent
// appends chain in call order; it resolves once LMDB has the entry on disk, so an action can
// answer only after its audit entry is durable. Appends issued in one tick share a commit.

import { createHash } from "node:crypto";
import type { Database, RootDatabase } from "lmdb";
import { canonicalJson } from "../domain/canonical_json.js";
import type { Clock } from "../domain/clock.js";

export const GENESIS_HASH = "0".repeat(64);
/** Largest `details`, as UTF-8 bytes of canonical JSON; bigger details are replaced by a stub. */
export const MAX_AUDIT_DETAILS_BYTES = 4096;
export const MAX_AUDIT_ACTOR_LENGTH = 128;
export const MAX_AUDIT_TARGET_LENGTH = 512;
export const MAX_AUDIT_REQUEST_ID_LENGTH = 64;
/** Most entries one list() call examines (filters may skip many), so a page is bounded work. */
export const MAX_AUDIT_SCAN = 10_000;
export const MAX_AUDIT_PAGE = 1_000;
export const ACTION_PATTERN = /^[a-z][a-z0-9_.]{0,63}$/;
export const OUTCOME_PATTERN = /^[a-z][a-z0-9_]{0,31}$/;
/** Entries verified between yields to the event loop. */
const VERIFY_CHUNK = 5_000;

export interface AuditInput {
  /** Principal that acted, or "system" for scheduled work. */
  actor: string;
  /** Dotted snake case, e.g. "trust.decay", "circuit_breaker.reset", "api_key.create". */
  action: string;
  /** What was acted on (agent id, key id, …), or null. */
  target?: string | null;
  /** Short snake case: "ok", "denied", "failed", … */
  outcome: string;
  requestId?: string | null;
  /** Bounded (MAX_AUDIT_DETAILS_BYTES); must be JSON. */
  details?: Record<string, unknown>;
}

export interface AuditEntry {
  seq: number;
  time_ms: number;
  actor: string;
  action: string;
  target: string | null;
  outcome: string;
  request_id: string | null;
  details: Record<string, unknown>;
  prev_hash: string;
  hash: string;
}

export interface AuditVerifyResult {
  ok: boolean;
  checked: number;
  head_seq: number;
  head_hash: string;
  first_broken_seq: number | null;
  reason: string | null;
}

export function auditHash(e: Omit<AuditEntry, "hash">): string {
  const canonical = canonicalJson({
    seq: e.seq,
    time_ms: e.time_ms,
    actor: e.actor,
    action: e.action,
    target: e.target,
    outcome: e.outcome,
    request_id: e.request_id,
    details: e.details,
    prev_hash: e.prev_hash,
  });
  return createHash("sha256").update(canonical, "utf8").digest("hex");
}

function boundedDetails(details: Record<string, unknown> | undefined): Record<string, unknown> {
  if (details === undefined) return {};
  let text: string;
  try {
    // Checked as it sits in the entry, one level down: a value at the body's depth bound
    // (a gold standard's) must not make the entry's own canonical form fail after the change.
    canonicalJson({ details });
    text = canonicalJson(details);
  } catch {
    return { invalid_details: true };
  }
  const size = Buffer.byteLength(text, "utf8");
  if (size > MAX_AUDIT_DETAILS_BYTES) return { truncated: true, size_bytes: size };
  return JSON.parse(text) as Record<string, unknown>;
}

function clip(s: string | null | undefined, max: number): string | null {
  if (s === null || s === undefined) return null;
  return s.length > max ? s.slice(0, max) : s;
}

export class AuditLog {
  private readonly db: Database<AuditEntry, number>;
  private headSeq = 0;
  private headHash = GENESIS_HASH;

  constructor(
    root: RootDatabase,
    private readonly clock: Clock,
  ) {
    this.db = root.openDB<AuditEntry, number>({ name: "audit", encoding: "json" });
    this.loadHead();
  }

  private loadHead(): void {
    for (const { value } of this.db.getRange({ reverse: true, limit: 1 })) {
      this.headSeq = value.seq;
      this.headHash = value.hash;
      return;
    }
    this.headSeq = 0;
    this.headHash = GENESIS_HASH;
  }

  get head(): { seq: number; hash: string } {
    return { seq: this.headSeq, hash: this.headHash };
  }

  /** Appends one entry; resolves with it once it is on disk. Throws RangeError on bad input. */
  async append(input: AuditInput): Promise<AuditEntry> {
    if (!ACTION_PATTERN.test(input.action)) {
      throw new RangeError(`audit action must match ${ACTION_PATTERN}, got ${input.action}`);
    }
    if (!OUTCOME_PATTERN.test(input.outcome)) {
      throw new RangeError(`audit outcome must match ${OUTCOME_PATTERN}, got ${input.outcome}`);
    }
    const body: Omit<AuditEntry, "hash"> = {
      seq: this.headSeq + 1,
      time_ms: this.clock.nowMs(),
      actor: clip(input.actor, MAX_AUDIT_ACTOR_LENGTH) ?? "unknown",
      action: input.action,
      target: clip(input.target, MAX_AUDIT_TARGET_LENGTH),
      outcome: input.outcome,
      request_id: clip(input.requestId, MAX_AUDIT_REQUEST_ID_LENGTH),
      details: boundedDetails(input.details),
      prev_hash: this.headHash,
    };
    const entry: AuditEntry = { ...body, hash: auditHash(body) };
    this.headSeq = entry.seq;
    this.headHash = entry.hash;
    try {
      await this.db.put(entry.seq, entry);
      await this.db.flushed;
    } catch (err) {
      // The in-memory head ran ahead of the disk: chain the next entry off what is stored.
      this.loadHead();
      throw err;
    }
    return entry;
  }

  get(seq: number): AuditEntry | null {
    if (!Number.isSafeInteger(seq) || seq < 1) return null;
    return this.db.get(seq) ?? null;
  }

  /**
   * Entries with seq > afterSeq in seq order, keeping those matching the filters, at most
   * `limit`. Examines at most MAX_AUDIT_SCAN entries; next_cursor is the last seq examined
   * when more may follow (null at the end of the log).
   */
  list(opts: { afterSeq: number; limit: number; action?: string; actor?: string }): {
    items: AuditEntry[];
    nextAfterSeq: number | null;
  } {
    const limit = Math.min(Math.max(1, opts.limit), MAX_AUDIT_PAGE);
    const items: AuditEntry[] = [];
    let lastSeen = opts.afterSeq;
    let scanned = 0;
    for (const { value } of this.db.getRange({ start: opts.afterSeq + 1, limit: MAX_AUDIT_SCAN })) {
      scanned++;
      lastSeen = value.seq;
      if (opts.action !== undefined && value.action !== opts.action) continue;
      if (opts.actor !== undefined && value.actor !== opts.actor) continue;
      items.push(value);
      if (items.length >= limit) break;
    }
    const more = lastSeen < this.headSeq && (items.length >= limit || scanned >= MAX_AUDIT_SCAN);
    return { items, nextAfterSeq: more ? lastSeen : null };
  }

  /** Walks the whole chain from seq 1; reports the first entry that breaks it. */
  async verify(): Promise<AuditVerifyResult> {
    let expectedSeq = 1;
    let prevHash = GENESIS_HASH;
    let checked = 0;
    const broken = (seq: number, reason: string): AuditVerifyResult => ({
      ok: false,
      checked,
      head_seq: this.headSeq,
      head_hash: this.headHash,
      first_broken_seq: seq,
      reason,
    });
    for (;;) {
      let n = 0;
      for (const { key, value } of this.db.getRange({ start: expectedSeq, limit: VERIFY_CHUNK })) {
        n++;
        if (key !== expectedSeq || value.seq !== expectedSeq) {
          return broken(expectedSeq, `entry ${expectedSeq} is missing (found ${key})`);
        }
        if (value.prev_hash !== prevHash) {
          return broken(expectedSeq, "prev_hash does not match the previous entry's hash");
        }
        const { hash, ...body } = value;
        let recomputed: string;
        try {
          recomputed = auditHash(body);
        } catch {
          return broken(expectedSeq, "the entry is not canonical JSON");
        }
        if (recomputed !== hash)
          return broken(expectedSeq, "the entry's content does not match its hash");
        prevHash = hash;
        expectedSeq++;
        checked++;
      }
      if (n < VERIFY_CHUNK) break;
      await new Promise((resolve) => setImmediate(resolve));
    }
    if (checked < this.headSeq) {
      return broken(
        checked + 1,
        `the log ends at ${checked} but ${this.headSeq} entries were written`,
      );
    }
    return {
      ok: true,
      checked,
      head_seq: this.headSeq,
      head_hash: this.headHash,
      first_broken_seq: null,
      reason: null,
    };
  }
}
