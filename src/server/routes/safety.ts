// Circuit breaker admin routes, the test clock, and the list of every trust/safety route
// (agents.ts, audit.ts) that app.ts registers in one line.

import { Type } from "@sinclair/typebox";
import { PRINCIPAL_PATTERN } from "../../domain/api_keys.js";
import { TestClock } from "../../domain/clock.js";
import { BREAKER_STATES } from "../../safety/circuit_breaker.js";
import type { ServerContext } from "../context.js";
import { LIMIT_RULE, limitSchema } from "../params.js";
import { queryParams } from "../query_params.js";
import type { Reply, Route, RouteContext } from "../router.js";
import {
  AdvanceClockRequest,
  parseAdvanceClockRequest,
  parseResetBreakerRequest,
  ResetBreakerRequest,
} from "../safety_schemas.js";
import { agentRoutes } from "./agents.js";
import { auditRoutes, auditWho } from "./audit.js";

const DEFAULT_BREAKER_PAGE = 100;
const MAX_BREAKER_PAGE = 1_000;

const ListParams = queryParams(
  Type.Object({
    state: Type.Optional(
      Type.Union(
        BREAKER_STATES.map((state) => Type.Literal(state)),
        { description: "Only breakers in this state" },
      ),
    ),
    limit: limitSchema(DEFAULT_BREAKER_PAGE, MAX_BREAKER_PAGE),
    cursor: Type.Optional(
      Type.String({
        pattern: PRINCIPAL_PATTERN,
        description: "The last agent id of the page before",
      }),
    ),
  }),
  {
    state: { code: "invalid_filter" },
    limit: LIMIT_RULE,
    cursor: { code: "invalid_agent_id", status: 400, emptyIsAbsent: true },
  },
);

function listBreakers(server: ServerContext, ctx: RouteContext): Reply {
  const { state, limit, cursor } = ListParams.parse(ctx.query);
  const nowMs = server.clock.nowMs();
  // One extra row tells whether another page follows.
  const rows = server.breakers.list(nowMs, {
    limit: limit + 1,
    ...(cursor !== undefined ? { afterAgent: cursor } : {}),
    ...(state !== undefined ? { state } : {}),
  });
  const page = rows.slice(0, limit);
  return {
    status: 200,
    body: JSON.stringify({
      circuit_breakers: page,
      next_cursor: rows.length > limit ? (page[page.length - 1]?.agent ?? null) : null,
      counts: server.breakers.counts(nowMs),
    }),
  };
}

async function resetBreaker(server: ServerContext, ctx: RouteContext): Promise<Reply> {
  const { agent } = parseResetBreakerRequest(ctx.body as Buffer);
  const nowMs = server.clock.nowMs();
  const previous = server.breakers.reset(agent, nowMs);
  await server.breakers.flushed();
  await server.audit.append({
    ...auditWho(ctx),
    action: "circuit_breaker.reset",
    target: agent,
    outcome: "ok",
    details: { previous_state: previous },
  });
  return {
    status: 200,
    body: JSON.stringify({
      agent,
      previous_state: previous,
      breaker: server.breakers.stateOf(agent, nowMs),
    }),
  };
}

async function advanceClock(
  server: ServerContext,
  clock: TestClock,
  ctx: RouteContext,
): Promise<Reply> {
  const { advance_ms } = parseAdvanceClockRequest(ctx.body as Buffer);
  const nowMs = clock.advance(advance_ms);
  await server.audit.append({
    ...auditWho(ctx),
    action: "test_clock.advance",
    outcome: "ok",
    details: { advance_ms, offset_ms: clock.offsetMs },
  });
  return { status: 200, body: JSON.stringify({ now_ms: nowMs, offset_ms: clock.offsetMs }) };
}

export function safetyRoutes(server: ServerContext): Route[] {
  const routes: Route[] = [
    ...agentRoutes(server),
    ...auditRoutes(server),
    {
      method: "get",
      pattern: "/v1/admin/circuit_breakers",
      summary: "Tracked agents' circuit breakers by agent id: limit, cursor, state",
      queryParams: ListParams.docs,
      role: "admin",
      jsonBody: false,
      handler: (ctx) => listBreakers(server, ctx),
    },
    {
      method: "post",
      pattern: "/v1/admin/circuit_breaker/reset",
      summary: "Close an agent's circuit breaker and clear its window (audited)",
      bodySchema: ResetBreakerRequest,
      role: "admin",
      jsonBody: true,
      handler: (ctx) => resetBreaker(server, ctx),
    },
  ];
  const clock = server.clock;
  // TEST ONLY: exists only when STEMEDB_TEST_CLOCK=on (otherwise the path is a plain 404).
  if (clock instanceof TestClock) {
    routes.push({
      method: "post",
      pattern: "/v1/admin/test/clock",
      summary: "TEST ONLY (STEMEDB_TEST_CLOCK=on): move the server's clock forward (audited)",
      bodySchema: AdvanceClockRequest,
      role: "admin",
      jsonBody: true,
      handler: (ctx) => advanceClock(server, clock, ctx),
    });
  }
  return routes;
}
