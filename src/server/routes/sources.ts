// POST /v1/source, GET /v1/source/{id}, GET /v1/source/provenance?assertion_id=…
// Sources are content-addressed and live on the shard their URI hashes to. Provenance walks
// from an assertion through its sources and their `derived_from` assertions (bounded depth and
// node count, cycles marked, never followed twice), and along its supersession chain.
import { Type } from "@sinclair/typebox";
import {
  MAX_PROVENANCE_DEPTH,
  MAX_PROVENANCE_NODES,
  MAX_PROVENANCE_VOTES,
} from "../../domain/limits.js";
import { ROUTABLE_ID_PATTERN, shardForAssertionId } from "../../domain/routable_id.js";
import type { SourceRecord } from "../../domain/state_events.js";
import type { RecordFacts, StateWriteResult } from "../../shard/protocol.js";
import type { VoteEntry } from "../../store/state_reads.js";
import type { ServerContext } from "../context.js";
import { badRequest, notFound } from "../errors.js";
import { queryParams } from "../query_params.js";
import type { Reply, Route, RouteContext } from "../router.js";
import { parseBody, SourceRequest, sourceRecord } from "../state_schemas.js";
import { recordOr404 } from "./state.js";

/** Longest supersession chain followed in each direction. */
const MAX_SUPERSESSION_CHAIN = 64;

function shardOf(server: ServerContext, id: string): number {
  return shardForAssertionId(id, server.pool.shardCount);
}

const ProvenanceParams = queryParams(
  Type.Object({
    assertion_id: Type.String({
      pattern: ROUTABLE_ID_PATTERN.source,
      description: "The assertion whose provenance is walked",
    }),
  }),
  {
    assertion_id: {
      code: "invalid_id",
      status: 400,
      message: "assertion_id must be 32 lowercase hex digits.",
    },
  },
);

function checkId(id: string | null, what: string): string {
  if (id === null || !ROUTABLE_ID_PATTERN.test(id))
    throw badRequest(`${what} must be 32 lowercase hex digits.`, "invalid_id");
  return id;
}

async function createSource(server: ServerContext, ctx: RouteContext): Promise<Reply> {
  const req = parseBody(SourceRequest, ctx.body as Buffer);
  const agent = (ctx.principal as { principal: string }).principal;
  const source = sourceRecord(req, agent, Date.now());
  const result = await server.pool.request<StateWriteResult>(shardOf(server, source.id), {
    t: "source_put",
    source,
  });
  return {
    status: 201,
    body: JSON.stringify({ id: source.id, duplicate: result.duplicate }),
  };
}

function getSourceRecord(server: ServerContext, id: string): Promise<SourceRecord | null> {
  return server.pool.request<SourceRecord | null>(shardOf(server, id), { t: "source_get", id });
}

async function getSource(server: ServerContext, ctx: RouteContext): Promise<Reply> {
  const id = checkId(ctx.params[0] ?? null, "A source id");
  const source = await getSourceRecord(server, id);
  if (source === null) throw notFound(`No source has id ${id}.`);
  return { status: 200, body: JSON.stringify(source) };
}

interface Walk {
  server: ServerContext;
  visited: Set<string>;
  nodes: number;
  truncated: boolean;
}

type Node = Record<string, unknown>;

/**
 * The walk's guard for one node: a stub when it is on the current path (a cycle), was met
 * before, or lies past the bounds; else null after counting it as visited.
 */
function stubOrVisit(w: Walk, id: string, path: Set<string>, depth: number): Node | null {
  if (path.has(id)) return { id, cycle: true };
  if (w.visited.has(id)) return { id, ref: true };
  if (depth > MAX_PROVENANCE_DEPTH || w.nodes >= MAX_PROVENANCE_NODES) {
    w.truncated = true;
    return { id, truncated: true };
  }
  w.visited.add(id);
  w.nodes++;
  return null;
}

async function sourceNode(w: Walk, id: string, path: Set<string>, depth: number): Promise<Node> {
  const stub = stubOrVisit(w, id, path, depth);
  if (stub !== null) return stub;
  if (!ROUTABLE_ID_PATTERN.test(id)) return { id, missing: true };
  const src = await getSourceRecord(w.server, id);
  if (src === null) return { id, missing: true };
  const inner = new Set(path).add(id);
  const derived: Node[] = [];
  for (const aid of src.derived_from) derived.push(await assertionNode(w, aid, inner, depth + 1));
  return { ...src, derived_from: derived };
}

async function assertionNode(w: Walk, id: string, path: Set<string>, depth: number): Promise<Node> {
  const stub = stubOrVisit(w, id, path, depth);
  if (stub !== null) return stub;
  const rec = await w.server.pool.request<RecordFacts | null>(shardOf(w.server, id), {
    t: "record",
    id,
  });
  if (rec === null) return { id, missing: true };
  const inner = new Set(path).add(id);
  const sources: Node[] = [];
  for (const sid of rec.sources) sources.push(await sourceNode(w, sid, inner, depth + 1));
  return {
    id,
    concept: rec.concept,
    agent: rec.agent,
    status: rec.status,
    value: JSON.parse(rec.valueJson) as unknown,
    author_trust_then: rec.authorTrust,
    sources,
  };
}

/** The chain of records reached by following `next` from `start` (exclusive), bounded. */
async function chain(
  server: ServerContext,
  start: RecordFacts,
  next: (r: RecordFacts) => string | null,
): Promise<Node[]> {
  const out: Node[] = [];
  const seen = new Set([start.id]);
  let id = next(start);
  while (id !== null && out.length < MAX_SUPERSESSION_CHAIN && !seen.has(id)) {
    seen.add(id);
    const rec = await server.pool.request<RecordFacts | null>(shardOf(server, id), {
      t: "record",
      id,
    });
    if (rec === null) {
      out.push({ id, missing: true });
      break;
    }
    out.push({
      id,
      agent: rec.agent,
      status: rec.status,
      recorded_at: rec.recordedAtMs,
      value: JSON.parse(rec.valueJson) as unknown,
    });
    id = next(rec);
  }
  return out;
}

async function provenance(server: ServerContext, ctx: RouteContext): Promise<Reply> {
  const id = ProvenanceParams.parse(ctx.query).assertion_id;
  const rec = await recordOr404(server, id);
  const w: Walk = { server, visited: new Set([id]), nodes: 1, truncated: false };
  const path = new Set([id]);
  const sources: Node[] = [];
  for (const sid of rec.sources) sources.push(await sourceNode(w, sid, path, 1));
  const votes = await server.pool.request<{ votes: VoteEntry[]; truncated: boolean } | null>(
    shardOf(server, id),
    { t: "votes", id, asOfLsn: null, limit: MAX_PROVENANCE_VOTES },
  );
  const body = {
    assertion: JSON.parse(rec.json) as unknown,
    author: {
      agent: rec.agent,
      trust_then: rec.authorTrust,
      trust_now: server.trust.trust(rec.agent),
    },
    sources,
    votes: votes?.votes ?? [],
    votes_truncated: votes?.truncated ?? false,
    supersession: {
      supersedes: await chain(server, rec, (r) => r.supersedes),
      superseded_by: await chain(server, rec, (r) => r.supersededBy),
    },
    truncated: w.truncated,
    bounds: { depth: MAX_PROVENANCE_DEPTH, nodes: MAX_PROVENANCE_NODES },
  };
  return { status: 200, body: JSON.stringify(body) };
}

export function sourceRoutes(server: ServerContext): Route[] {
  return [
    {
      method: "post",
      pattern: "/v1/source",
      role: "agent",
      jsonBody: true,
      summary: "Store a source once (content-addressed id); cite it from assertions by id",
      bodySchema: SourceRequest,
      handler: (ctx) => createSource(server, ctx),
    },
    {
      method: "get",
      pattern: "/v1/source/provenance",
      role: "reader",
      jsonBody: false,
      summary: "Provenance of an assertion: author trust then/now, sources, votes, supersession",
      queryParams: ProvenanceParams.docs,
      handler: (ctx) => provenance(server, ctx),
    },
    {
      method: "get",
      pattern: "/v1/source/:id",
      role: "reader",
      jsonBody: false,
      summary: "One source",
      handler: (ctx) => getSource(server, ctx),
    },
  ];
}
