// GET /v1/query: the lenses (latest, consensus, trusted, gold, history) over one concept, or
// over a subtree (`…/*`, answered by every shard and merged by concept). Every lens accepts
// `as_of_epoch` (each shard reads at the LSN the epoch recorded for it, and author trust is
// the epoch's snapshot), `limit` and an opaque `cursor`.

import { Type } from "@sinclair/typebox";
import { isInSubtree, normalizeConceptPath, parseConceptQuery } from "../../domain/concept_path.js";
import { type ConsensusGroup, consensus } from "../../domain/consensus.js";
import type { GoldStandard } from "../../domain/gold.js";
import { DEFAULT_QUERY_LIMIT, MAX_QUERY_LIMIT } from "../../domain/limits.js";
import { shardForConcept } from "../../domain/shard_hash.js";
import { PRIOR_TRUST } from "../../domain/trust_view.js";
import type { ActiveItem, ActiveList, RenderedPage } from "../../shard/protocol.js";
import type { ServerContext } from "../context.js";
import { unprocessable } from "../errors.js";
import {
  CURSOR_RULE,
  cursorSchema,
  decodeTaggedCursor,
  encodeTaggedCursor,
  invalidCursor,
  LIMIT_RULE,
} from "../params.js";
import { queryParams } from "../query_params.js";
import type { Reply, Route, RouteContext } from "../router.js";

export const SUPPORTED_LENSES = ["latest", "consensus", "trusted", "gold", "history"] as const;
type Lens = (typeof SUPPORTED_LENSES)[number];
/** base64url of "c1:" + a concept path of at most 512 bytes, with room to spare. */
const MAX_CURSOR_CHARS = 1024;
/** Most active assertions (newest first) one concept's consensus weighs. */
export const MAX_CONSENSUS_ASSERTIONS = 1000;
/** Runners-up listed per concept in a subtree consensus. */
const SUBTREE_RUNNERS_UP = 3;
export const DEFAULT_MIN_TRUST = 0.6;

interface Boundary {
  epoch: number | null;
  lsnOf: (shard: number) => number | null;
  trustOf: (agent: string) => number;
}

function boundary(server: ServerContext, asOfEpoch: number | undefined): Boundary {
  if (asOfEpoch === undefined) {
    return { epoch: null, lsnOf: () => null, trustOf: (a) => server.trust.trust(a) };
  }
  const rec = server.epochs.get(asOfEpoch);
  if (rec === undefined) {
    throw unprocessable(
      `as_of_epoch ${asOfEpoch} is not a closed epoch (closed: 1..${server.epochs.lastClosed}).`,
      "unknown_epoch",
    );
  }
  return {
    epoch: asOfEpoch,
    lsnOf: (shard) => rec.lsns[shard] ?? 0,
    trustOf: (a) => server.epochs.trustAtEpoch(asOfEpoch, a) ?? PRIOR_TRUST,
  };
}

/** A subtree cursor names the last concept returned; every shard resumes after it. */
function encodeSubtreeCursor(concept: string): string {
  return encodeTaggedCursor("c2", concept);
}
function decodeSubtreeCursor(cursor: string, prefix: string): string {
  return subtreeConcept(decodeTaggedCursor(cursor, "c2", MAX_CURSOR_CHARS), prefix);
}

/** A concept named inside a cursor: canonical and inside the queried subtree, or 400. */
function subtreeConcept(raw: unknown, prefix: string): string {
  if (typeof raw !== "string") throw invalidCursor();
  const concept = normalizeConceptPath(raw);
  if (!concept.ok || concept.path !== raw || !isInSubtree(concept.path, prefix))
    throw invalidCursor();
  return concept.path;
}

const str = JSON.stringify;

function head(lens: Lens, concept: string, b: Boundary): string {
  return `"lens":"${lens}","concept":${str(concept)},"as_of_epoch":${b.epoch ?? "null"}`;
}

function pageBody(
  lens: Lens,
  concept: string,
  b: Boundary,
  items: readonly string[],
  next: string | null,
): string {
  return `{${head(lens, concept, b)},"items":[${items.join(",")}],"next_cursor":${next === null ? "null" : str(next)}}`;
}

function groupJson(g: ConsensusGroup): string {
  return (
    `{"value":${g.valueJson},"score":${g.score},"author_score":${g.authorScore},` +
    `"vote_score":${g.voteScore},"votes_up":${g.votesUp},"votes_down":${g.votesDown},` +
    `"assertions":${str(g.assertions)}}`
  );
}

/** winner / margin / runners_up of one concept's active assertions. */
function consensusJson(items: readonly ActiveItem[], b: Boundary, runnersUp: number): string {
  const result = consensus(items, b.trustOf);
  const winner = result.groups[0];
  const rest = result.groups.slice(1, 1 + runnersUp);
  return (
    `"winner":${winner === undefined ? "null" : groupJson(winner)},"margin":${result.margin},` +
    `"runners_up":[${rest.map(groupJson).join(",")}],"considered":${items.length}`
  );
}

function trustedPick(
  items: readonly ActiveItem[],
  b: Boundary,
  minTrust: number,
): ActiveItem | undefined {
  return items.find((i) => b.trustOf(i.agent) >= minTrust);
}

async function subtree(
  server: ServerContext,
  lens: Lens,
  prefix: string,
  b: Boundary,
  limit: number,
  cursor: string | null,
  minTrust: number,
): Promise<Reply> {
  if (lens === "history") return subtreeHistory(server, prefix, b, limit, cursor);
  const after = cursor === null ? null : decodeSubtreeCursor(cursor, prefix);
  const shards = Array.from({ length: server.pool.shardCount }, (_, s) => s);
  const merged: Array<{ key: string; json: string }> = [];
  let cap: string | null = null;
  const lower = (last: string | null) => {
    if (last !== null && (cap === null || last < cap)) cap = last;
  };
  if (lens === "latest") {
    const pages = await Promise.all(
      shards.map((shard) =>
        server.reads.lens<RenderedPage & { lastScanned: string | null }>(shard, {
          t: "lens_under",
          mode: "latest",
          prefix,
          after,
          limit: limit + 1,
          asOfLsn: b.lsnOf(shard),
        }),
      ),
    );
    for (const page of pages) {
      lower(page.lastScanned);
      for (let i = 0; i < page.items.length; i++)
        merged.push({ key: page.keys[i] as string, json: page.items[i] as string });
    }
  } else {
    const answers = await Promise.all(
      shards.map((shard) =>
        server.reads.lens<{ lists: ActiveList[]; lastScanned: string | null }>(shard, {
          t: "lens_under",
          mode: "active",
          prefix,
          after,
          limit: limit + 1,
          asOfLsn: b.lsnOf(shard),
        }),
      ),
    );
    for (const answer of answers) {
      lower(answer.lastScanned);
      for (const list of answer.lists) {
        const json = conceptAnswer(lens, list, b, minTrust, (c) => server.gold.get(c));
        if (json !== null) merged.push({ key: list.concept, json });
      }
    }
  }
  // A shard that stopped at its scan bound has not looked past `cap`: keep the page there.
  const visible = cap === null ? merged : merged.filter((m) => m.key <= (cap as string));
  visible.sort((x, y) => (x.key < y.key ? -1 : x.key > y.key ? 1 : 0));
  const kept = visible.slice(0, limit);
  const lastKept = kept[kept.length - 1]?.key ?? null;
  const resumeAfter = visible.length > limit ? lastKept : cap;
  const next = resumeAfter === null ? null : encodeSubtreeCursor(resumeAfter);
  return {
    status: 200,
    body: pageBody(
      lens,
      `${prefix}/*`,
      b,
      kept.map((m) => m.json),
      next,
    ),
  };
}

/** A subtree history cursor: the last (concept, lsn) returned; every shard resumes after it. */
function encodeHistoryCursor(concept: string, lsn: number): string {
  return encodeTaggedCursor("h2", [concept, lsn]);
}
function decodeHistoryCursor(cursor: string, prefix: string): { concept: string; lsn: number } {
  const pos = decodeTaggedCursor(cursor, "h2", MAX_CURSOR_CHARS);
  if (!Array.isArray(pos) || pos.length !== 2) throw invalidCursor();
  const [raw, lsn] = pos as [unknown, unknown];
  if (!Number.isSafeInteger(lsn) || (lsn as number) < 0) throw invalidCursor();
  return { concept: subtreeConcept(raw, prefix), lsn: lsn as number };
}

/** Every assertion under the prefix, by concept then newest first, merged across shards. */
async function subtreeHistory(
  server: ServerContext,
  prefix: string,
  b: Boundary,
  limit: number,
  cursor: string | null,
): Promise<Reply> {
  const after = cursor === null ? null : decodeHistoryCursor(cursor, prefix);
  const pages = await Promise.all(
    Array.from({ length: server.pool.shardCount }, (_, shard) =>
      server.reads.lens<{
        items: string[];
        keys: string[];
        lsns: number[];
        lastScanned: string | null;
      }>(shard, {
        t: "lens_under",
        mode: "history",
        prefix,
        after: after?.concept ?? null,
        afterLsn: after?.lsn ?? 0,
        limit: limit + 1,
        asOfLsn: b.lsnOf(shard),
      }),
    ),
  );
  let cap: string | null = null;
  const merged: Array<{ key: string; lsn: number; json: string }> = [];
  for (const page of pages) {
    if (page.lastScanned !== null && (cap === null || page.lastScanned < cap))
      cap = page.lastScanned;
    for (let i = 0; i < page.items.length; i++) {
      merged.push({
        key: page.keys[i] as string,
        lsn: page.lsns[i] as number,
        json: page.items[i] as string,
      });
    }
  }
  const visible = cap === null ? merged : merged.filter((m) => m.key <= (cap as string));
  visible.sort((x, y) => (x.key < y.key ? -1 : x.key > y.key ? 1 : y.lsn - x.lsn));
  const kept = visible.slice(0, limit);
  const last = kept[kept.length - 1];
  const next =
    visible.length > limit && last !== undefined
      ? encodeHistoryCursor(last.key, last.lsn)
      : cap !== null
        ? encodeHistoryCursor(cap, 0)
        : null;
  return {
    status: 200,
    body: pageBody(
      "history",
      `${prefix}/*`,
      b,
      kept.map((m) => m.json),
      next,
    ),
  };
}

/** One concept's answer inside a subtree page, or null when the lens finds nothing there. */
function conceptAnswer(
  lens: Lens,
  list: ActiveList,
  b: Boundary,
  minTrust: number,
  goldOf: (concept: string) => GoldStandard | undefined,
): string | null {
  if (lens === "trusted") {
    return trustedPick(list.items, b, minTrust)?.json ?? null;
  }
  if (lens === "gold") {
    const gold = goldOf(list.concept);
    if (gold !== undefined) return `{"concept":${str(list.concept)},${goldJson(gold)}}`;
  }
  const source = lens === "gold" ? `"source":"consensus",` : "";
  return `{"concept":${str(list.concept)},${source}${consensusJson(list.items, b, SUBTREE_RUNNERS_UP)}}`;
}

/** The gold lens's answer where a gold standard exists (gold standards are not versioned by epoch). */
function goldJson(g: GoldStandard): string {
  return `"source":"gold_standard","gold":{"value":${g.value_json},"tolerance":${g.tolerance},"set_by":${str(g.set_by)},"set_at":${g.set_at}}`;
}

/** The parameters of GET /v1/query: validation, the handler's type and the OpenAPI document. */
const QueryParamsSchema = Type.Object({
  concept: Type.String({
    minLength: 1,
    maxLength: 2048,
    description: "Concept path, or `path/*` for the subtree",
  }),
  lens: Type.Union(
    SUPPORTED_LENSES.map((lens) => Type.Literal(lens)),
    { default: "latest", description: "The lens" },
  ),
  limit: Type.Integer({
    minimum: 1,
    maximum: MAX_QUERY_LIMIT,
    default: DEFAULT_QUERY_LIMIT,
    description: "Items (history, subtree) or runners-up (consensus)",
  }),
  cursor: cursorSchema(MAX_CURSOR_CHARS),
  as_of_epoch: Type.Optional(
    Type.Integer({ minimum: 1, description: "Read the state at a closed epoch's boundary" }),
  ),
  min_trust: Type.Number({
    minimum: 0,
    maximum: 1,
    default: DEFAULT_MIN_TRUST,
    description: "trusted lens: least author trust",
  }),
});
const QUERY_PARAMS = queryParams(QueryParamsSchema, {
  concept: { code: "invalid_concept_path", missingCode: "missing_concept" },
  lens: { code: "unsupported_lens" },
  limit: LIMIT_RULE,
  cursor: CURSOR_RULE,
  as_of_epoch: { code: "unknown_epoch" },
  min_trust: { code: "invalid_min_trust" },
});

async function queryHandler(server: ServerContext, ctx: RouteContext): Promise<Reply> {
  const {
    concept: rawConcept,
    lens,
    limit,
    min_trust: minTrust,
    ...rest
  } = QUERY_PARAMS.parse(ctx.query);
  const cursor = rest.cursor ?? null;
  const parsed = parseConceptQuery(rawConcept);
  if (!parsed.ok) throw unprocessable(parsed.message, parsed.code);
  // [concepts] an exact concept is alias-resolved; a subtree (`a/*`) is a literal key range.
  if (!parsed.subtree) parsed.path = server.aliases.resolve(parsed.path);
  const b = boundary(server, rest.as_of_epoch);
  if (parsed.subtree) return subtree(server, lens, parsed.path, b, limit, cursor, minTrust);
  const concept = parsed.path;
  const shard = shardForConcept(concept, server.pool.shardCount);
  const asOfLsn = b.lsnOf(shard);
  switch (lens) {
    case "latest": {
      const json = await server.reads.lens<string | null>(shard, {
        t: "lens_latest",
        concept,
        asOfLsn,
      });
      return { status: 200, body: pageBody(lens, concept, b, json === null ? [] : [json], null) };
    }
    case "history": {
      const page = await server.reads.lens<RenderedPage>(shard, {
        t: "lens_history",
        concept,
        asOfLsn,
        limit,
        cursor,
      });
      return { status: 200, body: pageBody(lens, concept, b, page.items, page.nextCursor) };
    }
    case "trusted": {
      const list = await server.reads.lens<ActiveList>(shard, {
        t: "lens_active",
        concept,
        asOfLsn,
        limit: MAX_CONSENSUS_ASSERTIONS,
        render: true,
      });
      const pick = trustedPick(list.items, b, minTrust);
      const body = pageBody(lens, concept, b, pick?.json == null ? [] : [pick.json], null);
      // No trusted author among the newest active assertions, and older ones exist.
      const truncated = pick?.json == null && list.truncated;
      return {
        status: 200,
        body: `${body.slice(0, -1)},"min_trust":${minTrust},"truncated":${truncated}}`,
      };
    }
    case "consensus":
    case "gold": {
      const gold = lens === "gold" ? server.gold.get(concept) : undefined;
      if (gold !== undefined) {
        return { status: 200, body: `{${head(lens, concept, b)},${goldJson(gold)}}` };
      }
      const list = await server.reads.lens<ActiveList>(shard, {
        t: "lens_active",
        concept,
        asOfLsn,
        limit: MAX_CONSENSUS_ASSERTIONS,
        render: false,
      });
      const source = lens === "gold" ? `"source":"consensus",` : "";
      return {
        status: 200,
        body: `{${head(lens, concept, b)},${source}${consensusJson(list.items, b, limit)},"truncated":${list.truncated}}`,
      };
    }
  }
}

export function queryRoutes(server: ServerContext): Route[] {
  return [
    {
      method: "get",
      pattern: "/v1/query",
      role: "reader",
      jsonBody: false,
      summary:
        "Lenses: latest, consensus, trusted (min_trust), gold, history; as_of_epoch, limit, cursor; concept/* for a subtree",
      queryParams: QUERY_PARAMS.docs,
      handler: (ctx) => queryHandler(server, ctx),
    },
  ];
}
