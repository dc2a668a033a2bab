// Opaque paging cursors for ShardStore queries.
//
// A cursor is base64url(JSON [kind, scope, position]). The scope (concept, agent or prefix)
// is inside so a cursor from one query cannot silently page through another. Clients must
// treat cursors as opaque; the format may change between versions (bump the kind tags).

export class InvalidCursorError extends Error {
  readonly code = "invalid_cursor";
  constructor(message: string) {
    super(message);
    this.name = "InvalidCursorError";
  }
}

export type CursorKind = "h1" | "a1" | "u1"; // history, byAgent, latestUnder (format v1)

// Concepts are <= 512 bytes and agent ids are short; 4 KiB of base64url is ample.
export const MAX_CURSOR_CHARS = 4096;
const BASE64URL_RE = /^[A-Za-z0-9_-]+$/;

export const MIN_PAGE_LIMIT = 1;
export const MAX_PAGE_LIMIT = 1000;

export function checkLimit(limit: number): void {
  if (!Number.isInteger(limit) || limit < MIN_PAGE_LIMIT || limit > MAX_PAGE_LIMIT) {
    throw new RangeError(`limit must be an integer in ${MIN_PAGE_LIMIT}..${MAX_PAGE_LIMIT}`);
  }
}

export function encodeCursor(kind: CursorKind, scope: string, position: number | string): string {
  return Buffer.from(JSON.stringify([kind, scope, position]), "utf8").toString("base64url");
}

function parse(cursor: string, kind: CursorKind, scope: string): unknown {
  if (typeof cursor !== "string" || cursor.length === 0 || cursor.length > MAX_CURSOR_CHARS) {
    throw new InvalidCursorError("cursor is empty or too long");
  }
  // Buffer's base64url decoder silently skips invalid characters, so check the alphabet.
  if (!BASE64URL_RE.test(cursor)) throw new InvalidCursorError("cursor is not base64url");
  let decoded: unknown;
  try {
    decoded = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8"));
  } catch {
    throw new InvalidCursorError("cursor does not decode");
  }
  if (!Array.isArray(decoded) || decoded.length !== 3) {
    throw new InvalidCursorError("cursor has the wrong shape");
  }
  if (decoded[0] !== kind) throw new InvalidCursorError("cursor belongs to a different query");
  if (decoded[1] !== scope) throw new InvalidCursorError("cursor belongs to a different scope");
  return decoded[2];
}

/** Position of an LSN-ordered cursor (history, byAgent). */
export function decodeLsnCursor(cursor: string, kind: "h1" | "a1", scope: string): number {
  const pos = parse(cursor, kind, scope);
  if (typeof pos !== "number" || !Number.isSafeInteger(pos) || pos < 0) {
    throw new InvalidCursorError("cursor position is not a valid lsn");
  }
  return pos;
}

/** Position of a concept-ordered cursor (latestUnder): the last concept returned. */
export function decodeConceptCursor(cursor: string, scope: string): string {
  const pos = parse(cursor, "u1", scope);
  if (typeof pos !== "string" || pos.length === 0) {
    throw new InvalidCursorError("cursor position is not a concept");
  }
  return pos;
}
