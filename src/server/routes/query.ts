// GET /v1/query: lenses over one concept, or over a subtree (`…/*`) answered by every
// shard and merged. Supported here: latest, history. Other lenses answer 422 until built.
import { isInSubtree, normalizeConceptPath, parseConceptQuery } from "../../domain/concept_path.js";
import { DEFAULT_QUERY_LIMIT, MAX_QUERY_LIMIT } from "../../domain/limits.js";
import { shardForConcept } from "../../domain/shard_hash.js";
import type { RenderedPage } from "../../shard/protocol.js";
import type { ServerContext } from "../context.js";
import { badRequest, unprocessable } from "../errors.js";
import type { Reply, Route, RouteContext } from "../router.js";

export const SUPPORTED_LENSES = ["latest", "history"] as const;
/** base64url of "c1:" + a concept path of at most 512 bytes, with room to spare. */
const MAX_CURSOR_CHARS = 1024;
const KNOWN_LENSES = ["latest", "consensus", "trusted", "gold", "history"];

function parseLimit(raw: string | null): number {
  if (raw === null || raw === "") return DEFAULT_QUERY_LIMIT;
  const limit = Number(raw);
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_QUERY_LIMIT) {
    throw unprocessable(
      `limit must be an integer from 1 to ${MAX_QUERY_LIMIT} (got ${JSON.stringify(raw)}).`,
      "invalid_limit",
    );
  }
  return limit;
}

/** A subtree cursor names the last concept returned; every shard resumes after it. */
function encodeSubtreeCursor(concept: string): string {
  return Buffer.from(`c1:${concept}`, "utf8").toString("base64url");
}
function decodeSubtreeCursor(cursor: string, prefix: string): string {
  const invalid = badRequest(
    "The cursor is not one this server issued for this query.",
    "invalid_cursor",
  );
  // A cursor names a concept: bound its size before decoding (a path is at most 512 bytes).
  if (cursor.length > MAX_CURSOR_CHARS) throw invalid;
  const text = Buffer.from(cursor, "base64url").toString("utf8");
  if (!text.startsWith("c1:")) throw invalid;
  const concept = normalizeConceptPath(text.slice(3));
  if (!concept.ok || concept.path !== text.slice(3) || !isInSubtree(concept.path, prefix))
    throw invalid;
  return concept.path;
}

function pageBody(
  lens: string,
  concept: string,
  items: readonly string[],
  nextCursor: string | null,
): string {
  return `{"lens":"${lens}","concept":${JSON.stringify(concept)},"items":[${items.join(",")}],"next_cursor":${
    nextCursor === null ? "null" : JSON.stringify(nextCursor)
  }}`;
}

async function subtreeLatest(
  server: ServerContext,
  prefix: string,
  limit: number,
  cursor: string | null,
): Promise<Reply> {
  const after = cursor === null ? null : decodeSubtreeCursor(cursor, prefix);
  const pages = await Promise.all(
    Array.from({ length: server.pool.shardCount }, (_, shard) =>
      server.pool.under(shard, prefix, after, limit + 1),
    ),
  );
  const merged: Array<{ key: string; json: string }> = [];
  for (const page of pages as RenderedPage[]) {
    for (let i = 0; i < page.items.length; i++)
      merged.push({ key: page.keys[i] as string, json: page.items[i] as string });
  }
  merged.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  const more = merged.length > limit;
  const kept = merged.slice(0, limit);
  const next = more ? encodeSubtreeCursor((kept[kept.length - 1] as { key: string }).key) : null;
  return {
    status: 200,
    body: pageBody(
      "latest",
      `${prefix}/*`,
      kept.map((m) => m.json),
      next,
    ),
  };
}

async function queryHandler(server: ServerContext, ctx: RouteContext): Promise<Reply> {
  const rawConcept = ctx.query.get("concept");
  if (rawConcept === null || rawConcept === "")
    throw badRequest("The concept query parameter is required.", "missing_concept");
  const lens = ctx.query.get("lens") ?? "latest";
  if (!(SUPPORTED_LENSES as readonly string[]).includes(lens)) {
    const known = KNOWN_LENSES.includes(lens);
    throw unprocessable(
      known
        ? `The ${lens} lens is not available in this version; use one of ${SUPPORTED_LENSES.join(", ")}.`
        : `Unknown lens ${JSON.stringify(lens)}; use one of ${SUPPORTED_LENSES.join(", ")}.`,
      "unsupported_lens",
    );
  }
  const parsed = parseConceptQuery(rawConcept);
  if (!parsed.ok) throw unprocessable(parsed.message, parsed.code);
  // [concepts] an exact concept is alias-resolved; a subtree (`a/*`) is a literal key range.
  if (!parsed.subtree) parsed.path = server.aliases.resolve(parsed.path);
  const limit = parseLimit(ctx.query.get("limit"));
  const cursor = ctx.query.get("cursor");
  if (ctx.query.has("as_of_epoch")) {
    throw unprocessable("as_of_epoch is not available in this version.", "unsupported_parameter");
  }
  if (parsed.subtree) {
    if (lens !== "latest")
      throw unprocessable("Subtree queries (…/*) support the latest lens.", "unsupported_lens");
    return subtreeLatest(server, parsed.path, limit, cursor);
  }
  const shard = shardForConcept(parsed.path, server.pool.shardCount);
  if (lens === "latest") {
    const json = await server.pool.latest(shard, parsed.path);
    return {
      status: 200,
      body: pageBody("latest", parsed.path, json === null ? [] : [json], null),
    };
  }
  const page = await server.pool.history(shard, parsed.path, limit, cursor);
  return { status: 200, body: pageBody("history", parsed.path, page.items, page.nextCursor) };
}

export function queryRoutes(server: ServerContext): Route[] {
  return [
    {
      method: "get",
      pattern: "/v1/query",
      role: "reader",
      jsonBody: false,
      handler: (ctx) => queryHandler(server, ctx),
    },
  ];
}
