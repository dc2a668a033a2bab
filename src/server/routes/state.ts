// POST /v1/vote, /v1/supersede, /v1/retract: writes that change existing assertions. The
// owning shard checks the rules against live state and logs the change in its WAL; the
// answer comes once that record is durable.
import { shardForAssertionId } from "../../domain/routable_id.js";
import type { RecordFacts, StateWriteResult } from "../../shard/protocol.js";
import type { ServerContext } from "../context.js";
import { conflict, forbidden, notFound } from "../errors.js";
import type { Reply, Route, RouteContext } from "../router.js";
import {
  parseBody,
  parseSupersede,
  RetractRequest,
  SupersedeRequest,
  VoteRequest,
} from "../state_schemas.js";
import { checkNew, encodeNew, writeStamp } from "./assert.js";

function principalOf(ctx: RouteContext): { agent: string; admin: boolean } {
  const p = ctx.principal as { principal: string; role: string };
  return { agent: p.principal, admin: p.role === "admin" };
}

function shardOf(server: ServerContext, id: string): number {
  return shardForAssertionId(id, server.pool.shardCount);
}

/** Live record facts, or 404. */
export async function recordOr404(server: ServerContext, id: string): Promise<RecordFacts> {
  const rec = await server.pool.request<RecordFacts | null>(shardOf(server, id), {
    t: "record",
    id,
  });
  if (rec === null) throw notFound(`No assertion has id ${id}.`);
  return rec;
}

async function voteHandler(server: ServerContext, ctx: RouteContext): Promise<Reply> {
  const req = parseBody(VoteRequest, ctx.body as Buffer);
  const { agent } = principalOf(ctx);
  const weight = server.trust.trust(agent);
  const result = await server.pool.request<StateWriteResult>(shardOf(server, req.assertion_id), {
    t: "vote",
    target: req.assertion_id,
    actor: agent,
    dir: req.vote === "up" ? 1 : -1,
    weight,
    atMs: Date.now(),
  });
  // Votes received are trust evidence for the author, weighted by the voter's trust; only an
  // agent's first vote on an assertion counts (changing a vote must not add evidence again).
  if (result.replaced !== true && result.author !== undefined) {
    const ev = req.vote === "up" ? { agree: weight, disagree: 0 } : { agree: 0, disagree: weight };
    await server.trust.addEvidence(result.author, { ...ev, kind: "vote" });
  }
  if (result.concept !== undefined) server.escalations.enqueue(result.concept);
  return {
    status: 201,
    body: JSON.stringify({
      assertion_id: req.assertion_id,
      voter: agent,
      vote: req.vote,
      weight,
      replaced: result.replaced === true,
      lsn: result.lsn,
    }),
  };
}

async function supersedeHandler(server: ServerContext, ctx: RouteContext): Promise<Reply> {
  const { supersedes, assertion: unresolved } = parseSupersede(ctx.body as Buffer);
  const assertion = { ...unresolved, concept: server.aliases.resolve(unresolved.concept) };
  const { agent, admin } = principalOf(ctx);
  const old = await recordOr404(server, supersedes);
  // Who may replace a claim: its author, an agent trusted more than its author, or an admin.
  if (!admin && old.agent !== agent) {
    const mine = server.trust.trust(agent);
    const theirs = server.trust.trust(old.agent);
    if (!(mine > theirs)) {
      throw forbidden(
        `Only the author (${old.agent}), an agent with higher trust (yours ${mine.toFixed(3)} ≤ theirs ${theirs.toFixed(3)}) or an admin may supersede assertion ${supersedes}.`,
        "not_permitted",
      );
    }
  }
  const quarantine = checkNew(server, agent, assertion);
  if (quarantine !== null) {
    // A supersession takes effect at once: a claim that would be held for review cannot
    // replace an active one (assert it, and have it approved, instead). The 409 itself
    // counts against the breaker.
    throw conflict(
      `The superseding assertion would be quarantined (${quarantine}); it cannot replace an active assertion.`,
      "would_be_quarantined",
    );
  }
  const placed = encodeNew(assertion, writeStamp(server, agent), server.pool.shardCount, {
    supersedes,
  });
  // Both ids hash the same concept, so the old and the new claim share a shard (checked
  // there too: a different concept is a 422).
  const buf = placed.record.buffer.slice(
    placed.record.byteOffset,
    placed.record.byteOffset + placed.record.byteLength,
  ) as ArrayBuffer;
  const result = await server.pool.request<StateWriteResult>(shardOf(server, supersedes), {
    t: "supersede",
    buf,
  });
  return {
    status: 201,
    body: JSON.stringify({
      id: placed.id,
      status: "active",
      shard: placed.shard,
      lsn: result.lsn,
      duplicate: result.duplicate,
      supersedes,
    }),
  };
}

async function retractHandler(server: ServerContext, ctx: RouteContext): Promise<Reply> {
  const req = parseBody(RetractRequest, ctx.body as Buffer);
  const { agent, admin } = principalOf(ctx);
  const result = await server.pool.request<StateWriteResult>(shardOf(server, req.assertion_id), {
    t: "status_event",
    kind: "retract",
    target: req.assertion_id,
    actor: agent,
    privileged: admin,
    reason: req.reason ?? null,
    atMs: Date.now(),
  });
  return {
    status: 200,
    body: JSON.stringify({
      id: req.assertion_id,
      status: "retracted",
      lsn: result.lsn,
      duplicate: result.duplicate,
    }),
  };
}

export function stateRoutes(server: ServerContext): Route[] {
  return [
    {
      method: "post",
      pattern: "/v1/vote",
      role: "agent",
      jsonBody: true,
      breaker: true,
      summary: "Vote up or down on an active assertion (one vote per agent; a new one replaces)",
      bodySchema: VoteRequest,
      handler: (ctx) => voteHandler(server, ctx),
    },
    {
      method: "post",
      pattern: "/v1/supersede",
      role: "agent",
      jsonBody: true,
      breaker: true,
      summary: "Replace an active assertion with a new one on the same concept",
      bodySchema: SupersedeRequest,
      handler: (ctx) => supersedeHandler(server, ctx),
    },
    {
      method: "post",
      pattern: "/v1/retract",
      role: "agent",
      jsonBody: true,
      breaker: true,
      summary: "Retract an assertion (its author or an admin)",
      bodySchema: RetractRequest,
      handler: (ctx) => retractHandler(server, ctx),
    },
  ];
}
