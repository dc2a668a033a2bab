// GET /v1/agents/{id} (trust, evidence, breaker state) and POST /v1/admin/decay_trust_ranks.

import type { ServerContext } from "../context.js";
import type { Reply, Route, RouteContext } from "../router.js";
import { agentParam } from "../safety_schemas.js";
import { auditWho } from "./audit.js";

/**
 * An unknown agent answers 200 with the prior (trust 0.5, `known: false`) rather than 404:
 * every valid agent id has a trust (the one a write by it would be weighed with), and agents
 * exist only as key principals, which this route does not need to look up.
 */
function getAgent(server: ServerContext, ctx: RouteContext): Reply {
  const agent = agentParam(ctx.params[0] ?? "");
  const t = server.trust.get(agent);
  const body = {
    agent,
    known: t.known,
    trust: t.trust,
    alpha: t.alpha,
    beta: t.beta,
    evidence: t.evidence,
    breaker: server.breakers.stateOf(agent, server.clock.nowMs()),
    created_at: t.known ? t.createdAtMs : null,
    updated_at: t.known ? t.updatedAtMs : null,
    decayed_at: t.known ? t.decayedAtMs : null,
  };
  return { status: 200, body: JSON.stringify(body) };
}

async function decayTrustRanks(server: ServerContext, ctx: RouteContext): Promise<Reply> {
  const result = await server.safety.decayNow(auditWho(ctx));
  return {
    status: 200,
    body: JSON.stringify({
      agents: result.agents,
      ran_at: result.ranAtMs,
      half_life_ms: server.trust.halfLifeMs,
    }),
  };
}

export function agentRoutes(server: ServerContext): Route[] {
  return [
    {
      method: "get",
      pattern: "/v1/agents/:id",
      summary: "An agent's trust (Beta α, β), evidence counters and circuit breaker",
      role: "reader",
      jsonBody: false,
      handler: (ctx) => getAgent(server, ctx),
    },
    {
      method: "post",
      pattern: "/v1/admin/decay_trust_ranks",
      summary: "Decay every agent's trust evidence toward the prior now (audited)",
      role: "admin",
      jsonBody: false,
      handler: (ctx) => decayTrustRanks(server, ctx),
    },
  ];
}
