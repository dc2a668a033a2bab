// GET /v1/admin/quarantine (paged, filter by agent/concept), POST …/quarantine/approve and
// …/quarantine/reject. A decision is a status event in the owning shard's WAL; the author's
// trust moves (approve: one agreement, reject: one disagreement) and the decision is audited.
import { Type } from "@sinclair/typebox";
import { PRINCIPAL_PATTERN } from "../../domain/api_keys.js";
import { normalizeConceptPath } from "../../domain/concept_path.js";
import { MAX_RAW_CONCEPT_LENGTH, MAX_REASON_LENGTH, MAX_SHARDS } from "../../domain/limits.js";
import { shardForAssertionId } from "../../domain/routable_id.js";
import type { HeldItem, StateWriteResult } from "../../shard/protocol.js";
import type { DecisionKind } from "../../store/decision_marks.js";
import type { ServerContext } from "../context.js";
import { unprocessable } from "../errors.js";
import {
  CURSOR_RULE,
  cursorSchema,
  decodeTaggedCursor,
  encodeTaggedCursor,
  invalidCursor,
  LIMIT_RULE,
  limitSchema,
} from "../params.js";
import { queryParams } from "../query_params.js";
import type { Reply, Route, RouteContext } from "../router.js";
import { parseBody } from "../state_schemas.js";
import { auditWho } from "./audit.js";
import { recordOr404 } from "./state.js";

export const DecisionRequest = Type.Object(
  {
    assertion_id: Type.String({ pattern: "^[0-9a-f]{32}$" }),
    reason: Type.Optional(Type.String({ maxLength: MAX_REASON_LENGTH })),
  },
  { additionalProperties: false },
);

/** The longest cursor of the most shards; decodeCursor bounds it by the actual count. */
const MAX_CURSOR_CHARS = 16 * MAX_SHARDS + 64;

/** Per-shard positions (last LSN returned, -1 = from the start, null = exhausted). */
type Positions = Array<number | null>;

function encodeCursor(p: Positions): string {
  return encodeTaggedCursor("q1", p);
}

function decodeCursor(raw: string | undefined, shards: number): Positions {
  if (raw === undefined) return Array.from({ length: shards }, () => -1);
  const p = decodeTaggedCursor(raw, "q1", 16 * shards + 64);
  if (
    !Array.isArray(p) ||
    p.length !== shards ||
    !p.every((v) => v === null || (Number.isSafeInteger(v) && v >= -1))
  )
    throw invalidCursor();
  return p as Positions;
}

const ListParams = queryParams(
  Type.Object({
    agent: Type.Optional(
      Type.String({ pattern: PRINCIPAL_PATTERN, description: "Only this agent's assertions" }),
    ),
    concept: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: MAX_RAW_CONCEPT_LENGTH,
        description: "Only this concept (exact, alias-resolved)",
      }),
    ),
    limit: limitSchema(),
    cursor: cursorSchema(MAX_CURSOR_CHARS),
  }),
  {
    agent: { code: "invalid_filter" },
    concept: { code: "invalid_concept_path" },
    limit: LIMIT_RULE,
    cursor: CURSOR_RULE,
  },
);

async function list(server: ServerContext, ctx: RouteContext): Promise<Reply> {
  const params = ListParams.parse(ctx.query);
  const limit = params.limit;
  const agent = params.agent ?? null;
  let concept: string | null = null;
  if (params.concept !== undefined) {
    const c = normalizeConceptPath(params.concept);
    if (!c.ok) throw unprocessable(c.message, c.code);
    concept = server.aliases.resolve(c.path);
  }
  const positions = decodeCursor(params.cursor, server.pool.shardCount);
  const pages = await Promise.all(
    positions.map((pos, shard) =>
      pos === null
        ? Promise.resolve({ items: [] as HeldItem[], exhausted: true, lastScanned: null })
        : server.pool.request<{
            items: HeldItem[];
            exhausted: boolean;
            lastScanned: number | null;
          }>(shard, {
            t: "held_list",
            after: pos === -1 ? null : pos,
            limit: limit + 1,
            agent,
            concept,
          }),
    ),
  );
  // Oldest first across shards, as a k-way merge of each shard's page (in LSN order): only a
  // page's head is ever taken, so what a shard contributes is a prefix of its page and it
  // resumes right after it.
  const heads = pages.map(() => 0);
  const kept: Array<{ shard: number; item: HeldItem }> = [];
  while (kept.length < limit) {
    let best = -1;
    for (let shard = 0; shard < pages.length; shard++) {
      const item = pages[shard]?.items[heads[shard] as number];
      if (item === undefined) continue;
      const bestItem = best < 0 ? undefined : pages[best]?.items[heads[best] as number];
      if (bestItem === undefined || item.recordedAtMs < bestItem.recordedAtMs) best = shard;
    }
    if (best < 0) break;
    kept.push({ shard: best, item: pages[best]?.items[heads[best] as number] as HeldItem });
    heads[best] = (heads[best] as number) + 1;
  }
  const next: Positions = positions.map((pos, shard) => {
    const page = pages[shard];
    if (pos === null || page === undefined) return null;
    const taken = kept.filter((k) => k.shard === shard);
    const last = taken[taken.length - 1];
    if (taken.length === page.items.length && page.exhausted) return null;
    if (last !== undefined) return last.item.lsn;
    // Nothing of this shard made the page: resume where its filtered scan stopped.
    return page.items.length === 0 && page.lastScanned !== null ? page.lastScanned : pos;
  });
  const more = next.some((p) => p !== null);
  return {
    status: 200,
    body: `{"items":[${kept.map((k) => k.item.json).join(",")}],"next_cursor":${more ? JSON.stringify(encodeCursor(next)) : "null"}}`,
  };
}

/**
 * Decisions on one assertion run one at a time, so a retry cannot count evidence a first try
 * is counting. Keyed by the raw body's assertion id (a bad body fails inside, alone).
 */
const deciding = new Map<string, Promise<unknown>>();

function decide(server: ServerContext, ctx: RouteContext, kind: DecisionKind): Promise<Reply> {
  const key = assertionIdOf(ctx.body as Buffer);
  const run = (deciding.get(key) ?? Promise.resolve()).then(() => decideNow(server, ctx, kind));
  const settled = run.catch(() => {});
  deciding.set(key, settled);
  void settled.then(() => {
    if (deciding.get(key) === settled) deciding.delete(key);
  });
  return run;
}

/** The assertion id a decision body names, or "" (bounded: ids are 32 characters). */
function assertionIdOf(body: Buffer): string {
  try {
    const id = (JSON.parse(body.toString("utf8")) as { assertion_id?: unknown }).assertion_id;
    return typeof id === "string" ? id.slice(0, 64) : "";
  } catch {
    return "";
  }
}

async function decideNow(
  server: ServerContext,
  ctx: RouteContext,
  kind: DecisionKind,
): Promise<Reply> {
  const req = parseBody(DecisionRequest, ctx.body as Buffer);
  const who = auditWho(ctx);
  const rec = await recordOr404(server, req.assertion_id);
  const result = await server.pool.request<StateWriteResult>(
    shardForAssertionId(req.assertion_id, server.pool.shardCount),
    {
      t: "status_event",
      kind,
      target: req.assertion_id,
      actor: who.actor,
      privileged: true,
      reason: req.reason ?? null,
      atMs: server.clock.nowMs(),
    },
  );
  // A retry of a decision whose evidence a crash lost (the shard kept the decision: it is in
  // its WAL) counts it now: the assertion was written quarantined, is now what this decision
  // makes it, and no mark says its evidence was counted.
  const resumed =
    result.duplicate &&
    rec.quarantineReason !== null &&
    !server.decisions.counted(req.assertion_id, result.decidedAtMs ?? 0);
  let trust: { before: number; after: number } | null = null;
  if (!result.duplicate || resumed) {
    const ev = kind === "approve" ? { agree: 1, disagree: 0 } : { agree: 0, disagree: 1 };
    trust = await server.trust.addEvidence(rec.agent, { ...ev, kind: "quarantine" }, () =>
      server.decisions.putCounted(req.assertion_id, kind),
    );
  }
  await server.audit.append({
    ...who,
    action: `quarantine.${kind}`,
    target: req.assertion_id,
    outcome: result.duplicate && !resumed ? "unchanged" : "ok",
    details: {
      author: rec.agent,
      concept: rec.concept,
      reason: req.reason ?? null,
      trust,
      ...(resumed ? { resumed: true } : {}),
    },
  });
  return {
    status: 200,
    body: JSON.stringify({
      id: req.assertion_id,
      status: kind === "approve" ? "active" : "rejected",
      lsn: result.lsn,
      duplicate: result.duplicate,
      author: rec.agent,
      author_trust: trust,
    }),
  };
}

export function quarantineRoutes(server: ServerContext): Route[] {
  return [
    {
      method: "get",
      pattern: "/v1/admin/quarantine",
      role: "admin",
      jsonBody: false,
      summary: "Assertions waiting in quarantine, oldest first (agent, concept, limit, cursor)",
      queryParams: ListParams.docs,
      handler: (ctx) => list(server, ctx),
    },
    {
      method: "post",
      pattern: "/v1/admin/quarantine/approve",
      role: "admin",
      jsonBody: true,
      summary: "Approve a quarantined assertion: active, author trust up",
      bodySchema: DecisionRequest,
      handler: (ctx) => decide(server, ctx, "approve"),
    },
    {
      method: "post",
      pattern: "/v1/admin/quarantine/reject",
      role: "admin",
      jsonBody: true,
      summary: "Reject a quarantined assertion: rejected, author trust down",
      bodySchema: DecisionRequest,
      handler: (ctx) => decide(server, ctx, "reject"),
    },
  ];
}
