// The owning shard's rules for writes that change existing state (votes, supersessions,
// retractions, quarantine decisions) and for sources. Each rule is checked against the live
// state (including writes not yet durable) on the one thread that owns the shard, so two
// concurrent supersessions of one claim cannot both pass: the second sees the first.
import {
  ALLOWED_FROM,
  encodeJsonRecord,
  STATUS_AFTER,
  type StateEvent,
} from "../domain/state_events.js";
import { type AssertionRecord, assertionView } from "../store/assertion_codec.js";
import { WalRecordKind } from "../store/shard_store.js";
import { WRITE_DUPLICATE } from "./core_options.js";
import type { RecordFacts, StateRequest, StateWriteResult } from "./protocol.js";
import { renderAssertion } from "./render.js";
import type { ShardCore } from "./shard_core.js";

/** A rule broken: becomes the HTTP status and code on the main thread. */
export class ShardDomainError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "ShardDomainError";
  }
}

type Done = (err: Error | null, value: StateWriteResult | number | null) => void;

function mustFind(core: ShardCore, id: string, what = "assertion"): AssertionRecord {
  const rec = core.currentRecord(id);
  if (rec === undefined) throw new ShardDomainError(404, "not_found", `No ${what} has id ${id}.`);
  return rec;
}

function notActive(rec: AssertionRecord, action: string): ShardDomainError {
  return new ShardDomainError(
    409,
    "not_active",
    `Assertion ${rec.id} is ${rec.status}; only an active assertion can be ${action}.`,
  );
}

export function facts(rec: AssertionRecord): RecordFacts {
  return {
    json: renderAssertion(rec),
    id: rec.id,
    concept: rec.concept,
    agent: rec.agent,
    status: rec.status,
    supersedes: rec.supersedes,
    supersededBy: rec.supersededBy,
    sources: rec.sources,
    authorTrust: rec.authorTrust,
    lsn: rec.lsn,
    recordedAtMs: rec.recordedAtMs,
    valueJson: rec.valueJson,
    quarantineReason: rec.quarantineReason,
  };
}

/** Runs one state write; `done` is called exactly once (synchronously for rule failures). */
export function runStateWrite(core: ShardCore, msg: StateRequest, done: Done): void {
  try {
    switch (msg.t) {
      case "vote":
        vote(core, msg, done);
        return;
      case "status_event":
        statusEvent(core, msg, done);
        return;
      case "supersede":
        supersede(core, new Uint8Array(msg.buf), done);
        return;
      case "source_put":
        sourcePut(core, msg.source, done);
        return;
      case "epoch_mark":
        core.epochMark((lsn) => done(null, lsn));
        return;
    }
  } catch (err) {
    done(err as Error, null);
  }
}

function vote(core: ShardCore, msg: Extract<StateRequest, { t: "vote" }>, done: Done): void {
  const rec = mustFind(core, msg.target);
  if (rec.agent === msg.actor) {
    throw new ShardDomainError(422, "self_vote", "An agent cannot vote on its own assertion.");
  }
  if (rec.status !== "active") throw notActive(rec, "voted on");
  // Whether this voter voted before, decided now (an in-flight vote of its own counts).
  const replaced =
    core.hasUncommittedVote(msg.target, msg.actor) ||
    core.store.dbs.voteNow.doesExist([msg.target, msg.actor]);
  const ev: StateEvent = {
    k: "vote",
    target: msg.target,
    actor: msg.actor,
    dir: msg.dir,
    weight: msg.weight,
    at: msg.atMs,
  };
  core.appendRecord(
    { kind: WalRecordKind.StateEvent, payload: encodeJsonRecord(ev), event: ev },
    null,
    (err, lsn) =>
      done(err, {
        lsn,
        duplicate: false,
        author: rec.agent,
        concept: rec.concept,
        replaced,
      }),
  );
}

function statusEvent(
  core: ShardCore,
  msg: Extract<StateRequest, { t: "status_event" }>,
  done: Done,
): void {
  const rec = mustFind(core, msg.target);
  if (msg.kind === "retract" && rec.agent !== msg.actor && !msg.privileged) {
    throw new ShardDomainError(
      403,
      "not_author",
      `Only the author (${rec.agent}) or an admin may retract assertion ${rec.id}.`,
    );
  }
  const after = STATUS_AFTER[msg.kind];
  if (rec.status === after) {
    // A retried request: the state already is what was asked (maybe by a write in flight).
    const value = {
      lsn: rec.lsn,
      duplicate: true,
      previousStatus: rec.status,
      decidedAtMs: core.lastStatusChangeAtMs(rec.id),
    };
    core.whenAppendedDurable((err) => done(err, err === null ? value : null));
    return;
  }
  if (!ALLOWED_FROM[msg.kind].includes(rec.status)) {
    throw new ShardDomainError(
      409,
      "not_active",
      `Assertion ${rec.id} is ${rec.status}; ${msg.kind} applies to ${ALLOWED_FROM[msg.kind].join(" or ")} assertions.`,
    );
  }
  const ev: StateEvent = {
    k: msg.kind,
    target: msg.target,
    target_lsn: rec.lsn,
    actor: msg.actor,
    reason: msg.reason,
    at: msg.atMs,
  };
  if (msg.kind === "supersede") {
    if (msg.by === undefined) throw new Error("supersede event without `by`");
    // The winner must still stand (it may have been retracted since the caller looked).
    const winner = mustFind(core, msg.by);
    if (winner.concept !== rec.concept) {
      throw new ShardDomainError(422, "concept_mismatch", `${msg.by} is about ${winner.concept}.`);
    }
    if (winner.status !== "active") {
      throw new ShardDomainError(
        409,
        "winner_not_active",
        `Assertion ${winner.id} is ${winner.status}; only an active assertion can be a winner.`,
      );
    }
    ev.by = msg.by;
  }
  core.appendRecord(
    {
      kind: WalRecordKind.StateEvent,
      payload: encodeJsonRecord(ev),
      event: ev,
      targetConcept: rec.concept,
    },
    { target: msg.target, status: after, supersededBy: msg.by ?? rec.supersededBy },
    (err, lsn) => done(err, { lsn, duplicate: false, previousStatus: rec.status }),
  );
}

function supersede(core: ShardCore, bytes: Uint8Array, done: Done): void {
  const view = assertionView(bytes);
  const id = view.id() ?? "";
  const oldId = view.supersedes();
  if (oldId === null) throw new Error("supersede: the record has no supersedes link");
  const existing = core.currentRecord(id);
  if (existing !== undefined) {
    if (existing.supersedes === oldId) {
      const value = { lsn: existing.lsn, duplicate: true };
      core.whenAppendedDurable((err) => done(err, err === null ? value : null));
      return;
    }
    throw new ShardDomainError(
      409,
      "duplicate_content",
      `Assertion ${id} already exists with the same content; add a nonce to supersede with it.`,
    );
  }
  const old = mustFind(core, oldId);
  if (old.concept !== view.concept()) {
    throw new ShardDomainError(
      422,
      "concept_mismatch",
      `Assertion ${oldId} is about ${old.concept}; a superseding assertion must be about the same concept.`,
    );
  }
  if (old.status !== "active") throw notActive(old, "superseded");
  core.write([bytes], (err, outcome) => {
    if (err !== null || outcome === null) {
      done(err, null);
      return;
    }
    done(null, {
      lsn: outcome.lsns[0] as number,
      duplicate: ((outcome.flags[0] as number) & WRITE_DUPLICATE) !== 0,
    });
  });
}

function sourcePut(
  core: ShardCore,
  source: import("../domain/state_events.js").SourceRecord,
  done: Done,
): void {
  if (core.hasSource(source.id)) {
    core.whenAppendedDurable((err) => done(err, err === null ? { lsn: 0, duplicate: true } : null));
    return;
  }
  core.appendRecord(
    { kind: WalRecordKind.SourceInsert, payload: encodeJsonRecord(source), source },
    null,
    (err, lsn) => done(err, { lsn, duplicate: false }),
  );
}
