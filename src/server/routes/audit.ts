// GET /v1/audit (paged by seq), GET /v1/audit/verify, GET /v1/audit/{id}; and auditWho(), the
// actor and request id of a route's request, for handlers that append audit entries.

import { Type } from "@sinclair/typebox";
import { ACTION_PATTERN, MAX_AUDIT_PAGE } from "../../audit/audit_log.js";
import { PRINCIPAL_PATTERN } from "../../domain/api_keys.js";
import type { ServerContext } from "../context.js";
import { badRequest, notFound } from "../errors.js";
import { CURSOR_RULE, LIMIT_RULE, limitSchema } from "../params.js";
import { queryParams } from "../query_params.js";
import type { Reply, Route, RouteContext } from "../router.js";

const DEFAULT_AUDIT_PAGE = 100;
const SEQ_PATTERN = /^[1-9][0-9]{0,14}$/;

/** Who did it, for AuditLog.append: the key's principal (or "anonymous") and the request id. */
export function auditWho(ctx: RouteContext): { actor: string; requestId: string } {
  return { actor: ctx.principal?.principal ?? "anonymous", requestId: ctx.requestId };
}

const ListParams = queryParams(
  Type.Object({
    limit: limitSchema(DEFAULT_AUDIT_PAGE, MAX_AUDIT_PAGE),
    // The last seq of the previous page, as a decimal string (treat as opaque).
    cursor: Type.Optional(
      Type.String({ pattern: SEQ_PATTERN.source, description: "next_cursor of the previous page" }),
    ),
    action: Type.Optional(
      Type.String({ pattern: ACTION_PATTERN.source, description: "Only this action" }),
    ),
    actor: Type.Optional(
      Type.String({
        // An agent id (PRINCIPAL_PATTERN) or "system", which it already matches.
        pattern: PRINCIPAL_PATTERN,
        description: 'Only this actor: an agent id or "system"',
      }),
    ),
  }),
  {
    limit: LIMIT_RULE,
    cursor: CURSOR_RULE,
    action: { code: "invalid_filter" },
    actor: { code: "invalid_filter" },
  },
);

function listAudit(server: ServerContext, ctx: RouteContext): Reply {
  const { limit, cursor, action, actor } = ListParams.parse(ctx.query);
  const page = server.audit.list({
    afterSeq: cursor === undefined ? 0 : Number(cursor),
    limit,
    ...(action !== undefined ? { action } : {}),
    ...(actor !== undefined ? { actor } : {}),
  });
  return {
    status: 200,
    body: JSON.stringify({
      items: page.items,
      next_cursor: page.nextAfterSeq === null ? null : String(page.nextAfterSeq),
      head_seq: server.audit.head.seq,
    }),
  };
}

function getAudit(server: ServerContext, ctx: RouteContext): Reply {
  const raw = ctx.params[0] ?? "";
  if (!SEQ_PATTERN.test(raw))
    throw badRequest("An audit entry id is its seq, a positive integer.", "invalid_id");
  const entry = server.audit.get(Number(raw));
  if (entry === null) throw notFound(`No audit entry has id ${raw}.`);
  return { status: 200, body: JSON.stringify(entry) };
}

async function verifyAudit(server: ServerContext): Promise<Reply> {
  return { status: 200, body: JSON.stringify(await server.audit.verify()) };
}

export function auditRoutes(server: ServerContext): Route[] {
  return [
    {
      method: "get",
      pattern: "/v1/audit",
      summary: "Audit entries in seq order: limit, cursor, action, actor",
      queryParams: ListParams.docs,
      role: "admin",
      jsonBody: false,
      handler: (ctx) => listAudit(server, ctx),
    },
    {
      method: "get",
      pattern: "/v1/audit/verify",
      summary: "Walk the hash chain; ok, or the first broken seq",
      role: "admin",
      jsonBody: false,
      handler: () => verifyAudit(server),
    },
    {
      method: "get",
      pattern: "/v1/audit/:id",
      summary: "One audit entry by seq",
      role: "admin",
      jsonBody: false,
      handler: (ctx) => getAudit(server, ctx),
    },
  ];
}
