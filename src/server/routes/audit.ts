// GET /v1/audit (paged by seq), GET /v1/audit/verify, GET /v1/audit/{id}; and auditWho(), the
// actor and request id of a route's request, for handlers that append audit entries.

import { ACTION_PATTERN, MAX_AUDIT_PAGE } from "../../audit/audit_log.js";
import { isValidPrincipal } from "../../domain/api_keys.js";
import type { ServerContext } from "../context.js";
import { badRequest, notFound, unprocessable } from "../errors.js";
import { limitParam } from "../params.js";
import type { Reply, Route, RouteContext } from "../router.js";

const DEFAULT_AUDIT_PAGE = 100;
const SEQ_PATTERN = /^[1-9][0-9]{0,14}$/;

/** Who did it, for AuditLog.append: the key's principal (or "anonymous") and the request id. */
export function auditWho(ctx: RouteContext): { actor: string; requestId: string } {
  return { actor: ctx.principal?.principal ?? "anonymous", requestId: ctx.requestId };
}

/** The cursor is the last seq of the previous page, as a decimal string (treat as opaque). */
function cursorParam(query: URLSearchParams): number {
  const raw = query.get("cursor");
  if (raw === null || raw === "") return 0;
  if (!SEQ_PATTERN.test(raw))
    throw badRequest("The cursor is not one this server issued.", "invalid_cursor");
  return Number(raw);
}

function listAudit(server: ServerContext, ctx: RouteContext): Reply {
  const action = ctx.query.get("action") ?? undefined;
  const actor = ctx.query.get("actor") ?? undefined;
  if (action !== undefined && !ACTION_PATTERN.test(action)) {
    throw unprocessable(`action must match ${ACTION_PATTERN.source}.`, "invalid_filter");
  }
  if (actor !== undefined && actor !== "system" && !isValidPrincipal(actor)) {
    throw unprocessable('actor must be an agent id or "system".', "invalid_filter");
  }
  const page = server.audit.list({
    afterSeq: cursorParam(ctx.query),
    limit: limitParam(ctx.query.get("limit"), DEFAULT_AUDIT_PAGE, MAX_AUDIT_PAGE),
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
