// Gold standards: POST/DELETE/GET /v1/gold_standard and POST /v1/gold_standard/verify.
// Every change and every verify run is audited; verify turns an agent's agreements and
// disagreements with gold standards into trust evidence, each assertion counted once.
import { Type } from "@sinclair/typebox";
import { canonicalJson } from "../../domain/canonical_json.js";
import { normalizeConceptPath } from "../../domain/concept_path.js";
import { agreesWithGold, type GoldStandard } from "../../domain/gold.js";
import { MAX_RAW_CONCEPT_LENGTH, MAX_VALUE_JSON_BYTES } from "../../domain/limits.js";
import type { AgentAssertion } from "../../shard/protocol.js";
import { GoldLimitError } from "../../store/gold_store.js";
import type { ServerContext } from "../context.js";
import { conflict, notFound, unprocessable } from "../errors.js";
import { CURSOR_RULE, cursorSchema, LIMIT_RULE, limitSchema } from "../params.js";
import { queryParams } from "../query_params.js";
import type { Reply, Route, RouteContext } from "../router.js";
import { parseBody } from "../state_schemas.js";
import { auditWho } from "./audit.js";

/** Newest assertions of the agent each shard reports for one verify run. */
export const MAX_VERIFY_ASSERTIONS_PER_SHARD = 1000;
/** Statuses whose assertions a verify run checks: what the agent claimed and still stands by. */
const CHECKED_STATUSES = new Set(["active", "superseded", "quarantined"]);

export const GoldRequest = Type.Object(
  {
    concept: Type.String({ minLength: 1, maxLength: 2048 }),
    value: Type.Unknown({ description: "The true value (any JSON)" }),
    tolerance: Type.Optional(
      Type.Number({ minimum: 0, description: "Numeric values within ± tolerance agree" }),
    ),
  },
  { additionalProperties: false },
);

export const VerifyRequest = Type.Object(
  { agent: Type.String({ minLength: 1, maxLength: 128 }) },
  { additionalProperties: false },
);

const conceptSchema = (description: string) =>
  Type.String({ minLength: 1, maxLength: MAX_RAW_CONCEPT_LENGTH, description });
const CONCEPT_RULE = { code: "invalid_concept_path", missingCode: "missing_concept" };

const DeleteParams = queryParams(
  Type.Object({ concept: conceptSchema("The concept whose gold standard goes") }),
  { concept: CONCEPT_RULE },
);

const GetParams = queryParams(
  Type.Object({
    concept: Type.Optional(conceptSchema("This concept's gold standard; left out, all of them")),
    limit: limitSchema(),
    cursor: cursorSchema(MAX_RAW_CONCEPT_LENGTH),
  }),
  { concept: CONCEPT_RULE, limit: LIMIT_RULE, cursor: CURSOR_RULE },
);

/** The canonical concept a valid raw path names (422 for an invalid one). */
function conceptOf(raw: string, server: ServerContext): string {
  const c = normalizeConceptPath(raw);
  if (!c.ok) throw unprocessable(c.message, c.code);
  return server.aliases.resolve(c.path);
}

function render(g: GoldStandard): string {
  return `{"concept":${JSON.stringify(g.concept)},"value":${g.value_json},"tolerance":${g.tolerance},"set_by":${JSON.stringify(g.set_by)},"set_at":${g.set_at}}`;
}

async function setGold(server: ServerContext, ctx: RouteContext): Promise<Reply> {
  const req = parseBody(GoldRequest, ctx.body as Buffer);
  const concept = conceptOf(req.concept, server);
  if (req.value === undefined) throw unprocessable("Field /value is required.", "invalid_request");
  const valueJson = canonicalJson(req.value);
  if (Buffer.byteLength(valueJson) > MAX_VALUE_JSON_BYTES)
    throw unprocessable(`The value exceeds ${MAX_VALUE_JSON_BYTES} bytes.`, "value_too_large");
  const gold: GoldStandard = {
    concept,
    value_json: valueJson,
    tolerance: req.tolerance ?? null,
    set_by: auditWho(ctx).actor,
    set_at: server.clock.nowMs(),
  };
  let previous: GoldStandard | undefined;
  try {
    previous = await server.gold.put(gold);
  } catch (err) {
    if (err instanceof GoldLimitError) throw conflict(err.message, "gold_limit");
    throw err;
  }
  await server.audit.append({
    ...auditWho(ctx),
    action: "gold_standard.set",
    target: concept,
    outcome: "ok",
    details: { value: req.value, tolerance: gold.tolerance, replaced: previous !== undefined },
  });
  return { status: previous === undefined ? 201 : 200, body: render(gold) };
}

async function deleteGold(server: ServerContext, ctx: RouteContext): Promise<Reply> {
  const concept = conceptOf(DeleteParams.parse(ctx.query).concept, server);
  const previous = await server.gold.remove(concept);
  await server.audit.append({
    ...auditWho(ctx),
    action: "gold_standard.delete",
    target: concept,
    outcome: previous === undefined ? "not_found" : "ok",
  });
  if (previous === undefined) throw notFound(`No gold standard for ${concept}.`);
  return { status: 200, body: render(previous) };
}

function getGold(server: ServerContext, ctx: RouteContext): Reply {
  const { concept: raw, limit, cursor } = GetParams.parse(ctx.query);
  if (raw !== undefined) {
    const concept = conceptOf(raw, server);
    const g = server.gold.get(concept);
    if (g === undefined) throw notFound(`No gold standard for ${concept}.`);
    return { status: 200, body: render(g) };
  }
  const items = server.gold.list(cursor ?? null, limit + 1);
  const more = items.length > limit;
  if (more) items.length = limit;
  const next = more ? (items[items.length - 1]?.concept ?? null) : null;
  return {
    status: 200,
    body: `{"items":[${items.map(render).join(",")}],"next_cursor":${JSON.stringify(next)}}`,
  };
}

/** Verify runs in progress, per agent: they run one at a time so evidence is counted once. */
const verifying = new Map<string, Promise<unknown>>();

async function verify(server: ServerContext, ctx: RouteContext): Promise<Reply> {
  const { agent } = parseBody(VerifyRequest, ctx.body as Buffer);
  const previous = verifying.get(agent) ?? Promise.resolve();
  const run = previous.catch(() => {}).then(() => verifyAgent(server, ctx, agent));
  verifying.set(agent, run);
  try {
    return await run;
  } finally {
    if (verifying.get(agent) === run) verifying.delete(agent);
  }
}

async function verifyAgent(
  server: ServerContext,
  ctx: RouteContext,
  agent: string,
): Promise<Reply> {
  const perShard = await Promise.all(
    Array.from({ length: server.pool.shardCount }, (_, shard) =>
      server.pool.request<AgentAssertion[]>(shard, {
        t: "agent_assertions",
        agent,
        limit: MAX_VERIFY_ASSERTIONS_PER_SHARD,
      }),
    ),
  );
  let checked = 0;
  let agreed = 0;
  const fresh: Array<[string, boolean]> = [];
  const disagreements: Array<{ id: string; concept: string }> = [];
  for (const list of perShard) {
    for (const a of list) {
      const gold = server.gold.get(a.concept);
      if (gold === undefined || !CHECKED_STATUSES.has(a.status)) continue;
      const ok = agreesWithGold(a.valueJson, gold);
      checked++;
      if (ok) agreed++;
      else if (disagreements.length < 100) disagreements.push({ id: a.id, concept: a.concept });
      if (!server.gold.counted(agent, a.id)) fresh.push([a.id, ok]);
    }
  }
  const freshAgreed = fresh.filter(([, ok]) => ok).length;
  const evidence = { agree: freshAgreed, disagree: fresh.length - freshAgreed };
  const before = server.trust.trust(agent);
  let after = before;
  if (fresh.length > 0) {
    // One transaction: a crash cannot keep the evidence and lose the marks (or the reverse),
    // which would count it again at the next verify.
    ({ after } = await server.trust.addEvidence(agent, { ...evidence, kind: "gold" }, () =>
      server.gold.putCounted(agent, fresh),
    ));
  }
  const result = {
    agent,
    checked,
    agreed,
    disagreed: checked - agreed,
    accuracy: checked === 0 ? null : agreed / checked,
    new_evidence: evidence,
    trust_before: before,
    trust_after: after,
    disagreements,
  };
  await server.audit.append({
    ...auditWho(ctx),
    action: "gold_standard.verify",
    target: agent,
    outcome: "ok",
    details: { checked, agreed, new_evidence: evidence, trust_before: before, trust_after: after },
  });
  return { status: 200, body: JSON.stringify(result) };
}

export function goldRoutes(server: ServerContext): Route[] {
  return [
    {
      method: "post",
      pattern: "/v1/gold_standard",
      role: "admin",
      jsonBody: true,
      summary:
        "Pin the true value of a concept (201 new, 200 replaced); contradicting writes are quarantined",
      bodySchema: GoldRequest,
      handler: (ctx) => setGold(server, ctx),
    },
    {
      method: "del",
      pattern: "/v1/gold_standard",
      role: "admin",
      jsonBody: false,
      summary: "Remove the gold standard of ?concept=",
      queryParams: DeleteParams.docs,
      handler: (ctx) => deleteGold(server, ctx),
    },
    {
      method: "get",
      pattern: "/v1/gold_standard",
      role: "reader",
      jsonBody: false,
      summary: "One gold standard (?concept=) or all, paged (limit, cursor)",
      queryParams: GetParams.docs,
      handler: (ctx) => getGold(server, ctx),
    },
    {
      method: "post",
      pattern: "/v1/gold_standard/verify",
      role: "admin",
      jsonBody: true,
      summary: "Check an agent's assertions against every gold standard; update its trust",
      bodySchema: VerifyRequest,
      handler: (ctx) => verify(server, ctx),
    },
  ];
}
