// GET /v1/admin/escalations and POST /v1/admin/escalation/resolve. Resolving picks the winning
// assertion (or a value, written as a new assertion by the admin); every active assertion
// with another value is superseded by the winner; authors on the winning side gain an
// agreement, the others a disagreement; the decision is audited.
import { type Static, Type } from "@sinclair/typebox";
import { canonicalJson } from "../../domain/canonical_json.js";
import { MAX_REASON_LENGTH, MAX_VALUE_JSON_BYTES } from "../../domain/limits.js";
import { shardForConcept } from "../../domain/shard_hash.js";
import type { EscalationRecord, ResolutionPlan } from "../../safety/escalations.js";
import type { ActiveList } from "../../shard/protocol.js";
import type { ServerContext } from "../context.js";
import { conflict, notFound, unprocessable } from "../errors.js";
import { LIMIT_RULE, limitSchema } from "../params.js";
import { queryParams } from "../query_params.js";
import type { Reply, Route, RouteContext } from "../router.js";
import { ShardRequestError } from "../shard_pool.js";
import { parseBody } from "../state_schemas.js";
import { encodeNew, writeStamp } from "./assert.js";
import { auditWho } from "./audit.js";

export const ResolveRequest = Type.Object(
  {
    escalation_id: Type.Integer({ minimum: 1 }),
    winner_assertion_id: Type.Optional(Type.String({ pattern: "^[0-9a-f]{32}$" })),
    value: Type.Optional(
      Type.Unknown({ description: "The winning value, when no assertion has it" }),
    ),
    reason: Type.Optional(Type.String({ maxLength: MAX_REASON_LENGTH })),
  },
  { additionalProperties: false },
);

function render(e: EscalationRecord): string {
  return JSON.stringify({
    ...e,
    plan: undefined,
    resolving: e.status === "open" && e.plan !== undefined ? true : undefined,
    sides: e.sides.map((s) => ({
      ...s,
      value: JSON.parse(s.value_json) as unknown,
      value_json: undefined,
    })),
  });
}

const ListParams = queryParams(
  Type.Object({
    status: Type.Union([Type.Literal("open"), Type.Literal("resolved"), Type.Literal("all")], {
      default: "open",
      description: "Which escalations",
    }),
    limit: limitSchema(),
    cursor: Type.Optional(
      Type.Integer({ minimum: 0, description: "next_cursor of the previous page (an id)" }),
    ),
  }),
  {
    status: { code: "invalid_status" },
    limit: LIMIT_RULE,
    cursor: { code: "invalid_cursor", emptyIsAbsent: true },
  },
);

function list(server: ServerContext, ctx: RouteContext): Reply {
  const { status, limit, cursor: after = 0 } = ListParams.parse(ctx.query);
  const page = server.escalations.list(after, limit + 1, status === "all" ? null : status);
  const items = page.items;
  const more = items.length > limit;
  if (more) items.length = limit;
  // A filtered scan that hit its bound resumes after the last record it looked at.
  const nextId = more ? items[items.length - 1]?.id : page.lastScanned;
  const next = nextId === undefined || nextId === null ? null : String(nextId);
  return {
    status: 200,
    body: `{"open":${server.escalations.openCount},"items":[${items.map(render).join(",")}],"next_cursor":${JSON.stringify(next)}}`,
  };
}

/** Escalations being resolved right now: a second resolve of one of them is a 409. */
const resolving = new Set<number>();

async function resolve(server: ServerContext, ctx: RouteContext): Promise<Reply> {
  const req = parseBody(ResolveRequest, ctx.body as Buffer);
  const esc = server.escalations.get(req.escalation_id);
  if (esc === undefined) throw notFound(`No escalation has id ${req.escalation_id}.`);
  if (esc.status !== "open" || resolving.has(esc.id)) {
    throw conflict(`Escalation ${esc.id} is already resolved (or being resolved).`, "resolved");
  }
  if ((req.winner_assertion_id === undefined) === (req.value === undefined)) {
    throw unprocessable("Give exactly one of winner_assertion_id and value.", "invalid_request");
  }
  resolving.add(esc.id);
  try {
    return await resolveOpen(server, ctx, esc, req);
  } finally {
    resolving.delete(esc.id);
  }
}

async function resolveOpen(
  server: ServerContext,
  ctx: RouteContext,
  esc: EscalationRecord,
  req: Static<typeof ResolveRequest>,
): Promise<Reply> {
  const who = auditWho(ctx);
  const shard = shardForConcept(esc.concept, server.pool.shardCount);
  // A resolve that was interrupted left its plan: finish that one, whatever this request says.
  const plan = esc.plan ?? (await makePlan(server, esc, req, who.actor, shard));
  const superseded: string[] = [];
  for (const loser of plan.losers) {
    try {
      // A loser superseded by the interrupted run answers `duplicate`: still superseded.
      await server.pool.request<{ duplicate: boolean }>(shard, {
        t: "status_event",
        kind: "supersede",
        by: plan.winner_id,
        target: loser,
        actor: plan.resolved_by,
        privileged: true,
        reason: plan.reason ?? `escalation ${esc.id}`,
        atMs: server.clock.nowMs(),
      });
      superseded.push(loser);
    } catch (err) {
      if (err instanceof ShardRequestError && err.code === "winner_not_active") {
        // The plan cannot finish: drop it, so the next resolve plans from what is active now
        // (nothing of this one was counted; losers it superseded stay superseded).
        await server.escalations.dropPlan(esc.id);
        throw conflict(
          `The planned winner ${plan.winner_id} is no longer active; resolve escalation ${esc.id} again.`,
          "not_active",
        );
      }
      // A loser retracted (or otherwise changed) since the plan was made: nothing to supersede.
      if (!(err instanceof ShardRequestError && err.code === "not_active")) throw err;
    }
  }
  // The plan's trust evidence and the resolved record commit in one meta transaction.
  const resolution = server.escalations.resolution(esc.id, {
    resolved_by: plan.resolved_by,
    winner_id: plan.winner_id,
    superseded,
    reason: plan.reason,
  });
  await server.trust.addEvidenceFor(
    plan.evidence.map(([agent, agree, disagree]) => ({
      agent,
      ev: { agree, disagree, kind: "escalation" as const },
    })),
    resolution.put,
  );
  resolution.committed();
  await server.audit.append({
    ...who,
    action: "escalation.resolve",
    target: String(esc.id),
    outcome: "ok",
    details: {
      concept: esc.concept,
      winner_id: plan.winner_id,
      superseded: superseded.length,
      resumed: esc.plan !== undefined,
    },
  });
  return { status: 200, body: render(resolution.record) };
}

/**
 * Picks the winner (writing it first when it is a value), the losers and the evidence, and
 * stores that plan before anything is superseded.
 */
async function makePlan(
  server: ServerContext,
  esc: EscalationRecord,
  req: Static<typeof ResolveRequest>,
  actor: string,
  shard: number,
): Promise<ResolutionPlan> {
  const active = await server.reads.lens<ActiveList>(shard, {
    t: "lens_active",
    concept: esc.concept,
    asOfLsn: null,
    limit: 1000,
    render: false,
  });
  let winnerId: string;
  let winnerValue: string;
  if (req.winner_assertion_id !== undefined) {
    const w = active.items.find((i) => i.id === req.winner_assertion_id);
    if (w === undefined) {
      throw conflict(
        `Assertion ${req.winner_assertion_id} is not an active assertion of ${esc.concept}.`,
        "not_active",
      );
    }
    winnerId = w.id;
    winnerValue = w.valueJson;
  } else {
    winnerValue = canonicalJson(req.value);
    if (Buffer.byteLength(winnerValue) > MAX_VALUE_JSON_BYTES) {
      throw unprocessable(`The value exceeds ${MAX_VALUE_JSON_BYTES} bytes.`, "value_too_large");
    }
    const item = {
      concept: esc.concept,
      value: req.value,
      valueJson: winnerValue,
      confidence: 1,
      sources: [],
      validFromMs: null,
      validToMs: null,
      nonce: `escalation-${esc.id}`,
    };
    const placed = encodeNew(item, writeStamp(server, actor), server.pool.shardCount);
    await server.pool.write(placed.shard, [placed.record]);
    winnerId = placed.id;
  }
  // Trust: per author, one agreement per assertion on the winning side, one disagreement per
  // assertion on a losing side.
  const evidence = new Map<string, [string, number, number]>();
  const losers: string[] = [];
  for (const item of active.items) {
    const e = evidence.get(item.agent) ?? [item.agent, 0, 0];
    if (item.valueJson === winnerValue) e[1]++;
    else {
      e[2]++;
      losers.push(item.id);
    }
    evidence.set(item.agent, e);
  }
  const plan: ResolutionPlan = {
    winner_id: winnerId,
    losers,
    evidence: [...evidence.values()],
    resolved_by: actor,
    reason: req.reason ?? null,
  };
  await server.escalations.savePlan(esc.id, plan);
  return plan;
}

export function escalationRoutes(server: ServerContext): Route[] {
  return [
    {
      method: "get",
      pattern: "/v1/admin/escalations",
      role: "admin",
      jsonBody: false,
      summary: "Escalations (status=open|resolved|all, limit, cursor)",
      queryParams: ListParams.docs,
      handler: (ctx) => list(server, ctx),
    },
    {
      method: "post",
      pattern: "/v1/admin/escalation/resolve",
      role: "admin",
      jsonBody: true,
      summary: "Resolve an escalation by a winning assertion or value; losers are superseded",
      bodySchema: ResolveRequest,
      handler: (ctx) => resolve(server, ctx),
    },
  ];
}
