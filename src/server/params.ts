// Query-string parameters several routes share, as pieces of their TypeBox parameter schemas
// (src/server/query_params.ts), and the opaque cursor format.
import { Type } from "@sinclair/typebox";
import { DEFAULT_QUERY_LIMIT, MAX_QUERY_LIMIT } from "../domain/limits.js";
import { type ApiError, badRequest } from "./errors.js";
import type { ParamRule } from "./query_params.js";

/** `limit`: an integer in [1, max]; the default when left out or empty. */
export function limitSchema(defaultLimit: number = DEFAULT_QUERY_LIMIT, max = MAX_QUERY_LIMIT) {
  return Type.Integer({
    minimum: 1,
    maximum: max,
    default: defaultLimit,
    description: `Most items returned (default ${defaultLimit})`,
  });
}

export const LIMIT_RULE: ParamRule = { code: "invalid_limit" };

/** `cursor`: the previous page's next_cursor; left out or empty, the first page. */
export function cursorSchema(maxChars: number, description = "next_cursor of the previous page") {
  return Type.Optional(Type.String({ minLength: 1, maxLength: maxChars, description }));
}

const CURSOR_MESSAGE = "The cursor is not one this server issued for this query.";

export const CURSOR_RULE: ParamRule = {
  code: "invalid_cursor",
  status: 400,
  emptyIsAbsent: true,
  message: CURSOR_MESSAGE,
};

/** The 400 every cursor this server did not issue (or issued for another query) gets. */
export function invalidCursor(): ApiError {
  return badRequest(CURSOR_MESSAGE, "invalid_cursor");
}

/**
 * An opaque cursor: base64url of `tag:` + JSON. The tag names the query kind and format
 * version, so a cursor from one query cannot page another.
 */
export function encodeTaggedCursor(tag: string, position: unknown): string {
  return Buffer.from(`${tag}:${JSON.stringify(position)}`, "utf8").toString("base64url");
}

/** The JSON position inside a cursor with this tag; 400 `invalid_cursor` for anything else. */
export function decodeTaggedCursor(cursor: string, tag: string, maxChars: number): unknown {
  if (cursor.length === 0 || cursor.length > maxChars) throw invalidCursor();
  const text = Buffer.from(cursor, "base64url").toString("utf8");
  if (!text.startsWith(`${tag}:`)) throw invalidCursor();
  try {
    return JSON.parse(text.slice(tag.length + 1)) as unknown;
  } catch {
    throw invalidCursor();
  }
}
