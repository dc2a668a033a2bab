// /v1/concepts: aliases (admin create/delete; reader resolve/list), suggest and parse.
// Rules and shapes: docs/api.md "Concepts". Aliases live in src/store/alias_store.ts; the
// suggest scoring is src/domain/concept_suggest.ts, run by every shard on its own concepts
// (src/shard/concept_scan.ts) and here on the alias snapshot, then merged.
import { Gauge } from "prom-client";
import { parseConceptQuery } from "../../domain/concept_path.js";
import {
  compareScored,
  normalizeSuggestQuery,
  type ScoredPath,
  SuggestScorer,
  TopK,
} from "../../domain/concept_suggest.js";
import { MAX_SUGGEST_SCAN_ALIASES, MAX_SUGGEST_SCAN_KEYS_PER_SHARD } from "../../domain/limits.js";
import { shardForConcept } from "../../domain/shard_hash.js";
import type { RenderedPage } from "../../shard/protocol.js";
import { type AliasRecord, AliasRuleError } from "../../store/alias_store.js";
import {
  ALIAS_PATH_DOCS,
  AliasListParams,
  aliasPathParam,
  CreateAliasRequest,
  decodeAliasCursor,
  encodeAliasCursor,
  ParseParams,
  parseCreateAliasRequest,
  SuggestParams,
} from "../concept_requests.js";
import type { ServerContext } from "../context.js";
import { type ApiError, badRequest, conflict, notFound, unprocessable } from "../errors.js";
import type { Reply, Route, RouteContext } from "../router.js";

/** Aliases scored between two yields of the main thread (it also serves every request). */
const ALIAS_SCORE_CHUNK = 1_000;

interface Suggestion extends ScoredPath {
  kind: "concept" | "alias";
  canonical: string;
}

function aliasJson(r: AliasRecord, shardCount: number): Record<string, unknown> {
  return {
    alias: r.alias,
    canonical: r.canonical,
    shard: shardForConcept(r.canonical, shardCount),
    created_at: r.createdAtMs,
    created_by: r.createdBy,
  };
}

function ruleError(err: AliasRuleError): ApiError {
  return err.code === "alias_is_canonical"
    ? unprocessable(err.message, err.code)
    : conflict(err.message, err.code);
}

async function createAlias(server: ServerContext, ctx: RouteContext): Promise<Reply> {
  const input = parseCreateAliasRequest(ctx.body as Buffer);
  const shardCount = server.pool.shardCount;
  let existing: AliasRecord | null;
  try {
    existing = server.aliases.check(input.alias, input.canonical);
  } catch (err) {
    throw err instanceof AliasRuleError ? ruleError(err) : err;
  }
  if (existing === null && !input.force) {
    // Assertions already stored under the alias path would disappear behind the alias (exact
    // queries resolve to the canonical path): refuse unless the admin says so. A write racing
    // this check can still land there; it stays readable by id and by `alias/*`.
    const stored = await server.pool.request<RenderedPage>(
      shardForConcept(input.alias, shardCount),
      { t: "lens_history", concept: input.alias, asOfLsn: null, limit: 1, cursor: null },
    );
    if (stored.items.length > 0) {
      throw conflict(
        `Assertions are stored under ${JSON.stringify(input.alias)}; an alias would hide them from exact queries. Send "force": true to create it anyway.`,
        "alias_path_in_use",
      );
    }
  }
  const principal = ctx.principal?.principal ?? "unknown";
  let outcome: { created: boolean; record: AliasRecord };
  try {
    outcome = await server.aliases.create(input.alias, input.canonical, principal);
  } catch (err) {
    throw err instanceof AliasRuleError ? ruleError(err) : err;
  }
  server.logger.info(
    {
      request_id: ctx.requestId,
      alias: input.alias,
      canonical: input.canonical,
      created: outcome.created,
    },
    "concept alias created",
  );
  return {
    status: outcome.created ? 201 : 200,
    body: JSON.stringify({ ...aliasJson(outcome.record, shardCount), created: outcome.created }),
  };
}

function notAnAlias(path: string): ApiError {
  return notFound(
    `${JSON.stringify(path)} is not an alias (GET /v1/concepts/parse shows any path's canonical form).`,
    "alias_not_found",
  );
}

function resolveAlias(server: ServerContext, ctx: RouteContext): Reply {
  const path = aliasPathParam(ctx.query);
  const record = server.aliases.get(path);
  if (record === undefined) throw notAnAlias(path);
  return { status: 200, body: JSON.stringify(aliasJson(record, server.pool.shardCount)) };
}

async function deleteAlias(server: ServerContext, ctx: RouteContext): Promise<Reply> {
  const path = aliasPathParam(ctx.query);
  const record = await server.aliases.remove(path);
  if (record === null) throw notAnAlias(path);
  server.logger.info({ request_id: ctx.requestId, alias: path }, "concept alias deleted");
  return {
    status: 200,
    body: JSON.stringify({ ...aliasJson(record, server.pool.shardCount), deleted: true }),
  };
}

function listAliases(server: ServerContext, ctx: RouteContext): Reply {
  const { limit, cursor } = AliasListParams.parse(ctx.query);
  const after = decodeAliasCursor(cursor);
  const page = server.aliases.page(after, limit);
  const last = page.items[page.items.length - 1];
  const shardCount = server.pool.shardCount;
  return {
    status: 200,
    body: JSON.stringify({
      items: page.items.map((r) => aliasJson(r, shardCount)),
      next_cursor: page.more && last !== undefined ? encodeAliasCursor(last.alias) : null,
    }),
  };
}

const yieldTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** Scores alias paths and their canonical paths (bounded, in chunks). */
async function suggestFromAliases(
  server: ServerContext,
  scorer: SuggestScorer,
  limit: number,
): Promise<{ top: TopK<Suggestion>; scanned: number; complete: boolean }> {
  const top = new TopK<Suggestion>(limit);
  const aliases = server.aliases;
  function* candidates(): Generator<Omit<Suggestion, "score">> {
    for (const r of aliases.aliases())
      yield { path: r.alias, kind: "alias", canonical: r.canonical };
    for (const c of aliases.canonicals()) yield { path: c, kind: "concept", canonical: c };
  }
  let scanned = 0;
  for (const candidate of candidates()) {
    if (scanned === MAX_SUGGEST_SCAN_ALIASES) return { top, scanned, complete: false };
    scanned++;
    const score = scorer.score(candidate.path);
    if (score > 0) top.offer({ ...candidate, score });
    if (scanned % ALIAS_SCORE_CHUNK === 0) await yieldTurn();
  }
  return { top, scanned, complete: true };
}

async function suggest(server: ServerContext, ctx: RouteContext): Promise<Reply> {
  const params = SuggestParams.parse(ctx.query);
  const q = normalizeSuggestQuery(params.q);
  if (!q.ok) {
    throw q.code === "missing_query"
      ? badRequest(q.message, q.code)
      : unprocessable(q.message, q.code);
  }
  const limit = params.limit;
  const shardAnswers = Promise.all(
    Array.from({ length: server.pool.shardCount }, (_, shard) =>
      server.pool.suggestConcepts(shard, q.q, limit, MAX_SUGGEST_SCAN_KEYS_PER_SHARD),
    ),
  );
  // Handled now: a shard failing while the aliases are scored (which yields) must not be an
  // unhandled rejection (fatal in Node 20); the await below still throws it.
  shardAnswers.catch(() => {});
  const fromAliases = await suggestFromAliases(server, new SuggestScorer(q.q), limit);
  const shards = await shardAnswers;
  // One entry per path: an alias path keeps kind "alias" (it resolves elsewhere), whether it
  // came from the snapshot or from a shard (assertions stored before the alias existed).
  const byPath = new Map<string, Suggestion>();
  for (const s of fromAliases.top.items)
    if (!byPath.has(s.path) || s.kind === "alias") byPath.set(s.path, s);
  let scanned = fromAliases.scanned;
  let complete = fromAliases.complete;
  for (const answer of shards) {
    scanned += answer.scanned;
    complete &&= answer.complete;
    for (const item of answer.items) {
      if (byPath.has(item.path)) continue;
      const canonical = server.aliases.resolve(item.path);
      const kind = canonical === item.path ? "concept" : "alias";
      byPath.set(item.path, { path: item.path, score: item.score, kind, canonical });
    }
  }
  const items = [...byPath.values()].sort(compareScored).slice(0, limit);
  return {
    status: 200,
    body: JSON.stringify({
      q: q.q,
      items: items.map((s) => ({
        path: s.path,
        kind: s.kind,
        canonical: s.canonical,
        score: s.score,
      })),
      scanned,
      complete,
    }),
  };
}

function parse(server: ServerContext, ctx: RouteContext): Reply {
  const input = ParseParams.parse(ctx.query).path;
  const parsed = parseConceptQuery(input);
  if (!parsed.ok) throw unprocessable(`path: ${parsed.message}.`, parsed.code);
  // A subtree (`a/*`) is a literal key range answered by every shard: not alias-resolved.
  const record = parsed.subtree ? undefined : server.aliases.get(parsed.path);
  const canonical = record?.canonical ?? parsed.path;
  return {
    status: 200,
    body: JSON.stringify({
      input,
      normalized: parsed.path,
      valid: true,
      canonical,
      alias_of: record?.canonical ?? null,
      shard: parsed.subtree ? null : shardForConcept(canonical, server.pool.shardCount),
      segments: parsed.path.split("/"),
      subtree: parsed.subtree,
    }),
  };
}

export function conceptRoutes(server: ServerContext): Route[] {
  new Gauge({
    name: "stemedb_concept_aliases",
    help: "Concept aliases held by the meta store",
    registers: [server.registry],
    collect() {
      this.set(server.aliases.size);
    },
  });
  return [
    {
      method: "post",
      pattern: "/v1/concepts/alias",
      summary:
        "Create an alias → canonical concept path; 201 created, 200 if it already exists with that canonical",
      bodySchema: CreateAliasRequest,
      role: "admin",
      jsonBody: true,
      handler: (ctx) => createAlias(server, ctx),
    },
    {
      method: "get",
      pattern: "/v1/concepts/alias",
      summary: "Resolve an alias: ?path= → its record (404 alias_not_found if it is not an alias)",
      queryParams: ALIAS_PATH_DOCS,
      role: "reader",
      jsonBody: false,
      handler: (ctx) => resolveAlias(server, ctx),
    },
    {
      method: "del",
      pattern: "/v1/concepts/alias",
      summary: "Delete an alias: ?path=",
      queryParams: ALIAS_PATH_DOCS,
      role: "admin",
      jsonBody: false,
      handler: (ctx) => deleteAlias(server, ctx),
    },
    {
      method: "get",
      pattern: "/v1/concepts/aliases",
      summary: "List aliases in path order: ?limit=(1..1000, default 100)&cursor=",
      queryParams: AliasListParams.docs,
      role: "reader",
      jsonBody: false,
      handler: (ctx) => listAliases(server, ctx),
    },
    {
      method: "get",
      pattern: "/v1/concepts/suggest",
      summary: "Near matches among known concepts and aliases: ?q=&limit=(1..50, default 10)",
      queryParams: SuggestParams.docs,
      role: "reader",
      jsonBody: false,
      handler: (ctx) => suggest(server, ctx),
    },
    {
      method: "get",
      pattern: "/v1/concepts/parse",
      summary: "Normalization, canonical path and owning shard of ?path=",
      queryParams: ParseParams.docs,
      role: "reader",
      jsonBody: false,
      handler: (ctx) => parse(server, ctx),
    },
  ];
}
