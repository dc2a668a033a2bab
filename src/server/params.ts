// Query-string parameters several routes share, parsed one way everywhere.
import { DEFAULT_QUERY_LIMIT, MAX_QUERY_LIMIT } from "../domain/limits.js";
import { type ApiError, badRequest, unprocessable } from "./errors.js";

/** An integer `limit` in [1, max], or the default when absent (422 `invalid_limit`). */
export function limitParam(
  raw: string | null,
  defaultLimit: number = DEFAULT_QUERY_LIMIT,
  max: number = MAX_QUERY_LIMIT,
): number {
  if (raw === null || raw === "") return defaultLimit;
  const limit = Number(raw);
  if (!/^[0-9]{1,9}$/.test(raw) || limit < 1 || limit > max) {
    throw unprocessable(
      `limit must be an integer from 1 to ${max} (got ${JSON.stringify(raw.slice(0, 40))}).`,
      "invalid_limit",
    );
  }
  return limit;
}

/** The 400 every cursor this server did not issue (or issued for another query) gets. */
export function invalidCursor(): ApiError {
  return badRequest("The cursor is not one this server issued for this query.", "invalid_cursor");
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
