// Concept paths: the routing key of every assertion (DESIGN §3).
//
// Canonical form: the raw string is normalized to Unicode NFC, then lowercased
// (locale-independent `toLowerCase`), then split on `/`. One leading and one trailing `/` are
// dropped; every remaining segment must be non-empty, match `[a-z0-9_.-]+`, and not be `.` or
// `..` (proxies and URL libraries rewrite those, so such a path could not be addressed safely
// in a URL). At most MAX_CONCEPT_SEGMENTS segments and MAX_CONCEPT_PATH_BYTES UTF-8 bytes.
//
// Because the allowed alphabet is ASCII, a canonical path is pure ASCII: its UTF-8 byte
// length equals its string length, and the shard hash can read char codes directly.
// Note that NFC + lowercase maps a few non-ASCII characters onto ASCII (for example
// U+212A KELVIN SIGN → "k"); that is deterministic and documented in docs/sharding.md.

import { MAX_CONCEPT_PATH_BYTES, MAX_CONCEPT_SEGMENTS, MAX_RAW_CONCEPT_LENGTH } from "./limits.js";

export const INVALID_CONCEPT_PATH = "invalid_concept_path";

export type ConceptPathError = {
  ok: false;
  code: typeof INVALID_CONCEPT_PATH;
  message: string;
};

export type ConceptPathResult = { ok: true; path: string } | ConceptPathError;

export type ConceptQueryResult = { ok: true; path: string; subtree: boolean } | ConceptPathError;

/** The suffix that turns a concept query into a subtree query. */
export const SUBTREE_SUFFIX = "/*";

const SEGMENT_CHAR = /^[a-z0-9_.-]$/;

function fail(message: string): ConceptPathError {
  return { ok: false, code: INVALID_CONCEPT_PATH, message };
}

/** Describe one character for an error message: the glyph (if printable) and its code point. */
function describeChar(ch: string): string {
  const cp = ch.codePointAt(0) ?? 0;
  const hex = `U+${cp.toString(16).toUpperCase().padStart(4, "0")}`;
  const printable = cp > 0x20 && cp !== 0x7f && !(cp >= 0x80 && cp <= 0x9f);
  return printable ? `${JSON.stringify(ch)} (${hex})` : hex;
}

function quoteSegment(segment: string): string {
  // Bound what we echo back so a hostile input cannot make error messages huge.
  const shown = segment.length > 40 ? `${segment.slice(0, 40)}…` : segment;
  return JSON.stringify(shown);
}

function utf8Length(s: string): number {
  return Buffer.byteLength(s, "utf8");
}

/**
 * `raw` itself if it is already canonical — lowercase ASCII segments of [a-z0-9_.-], none
 * empty, "." or "..", within the bounds — else null (then the full normalization decides).
 * Clients mostly send canonical paths; this skips NFC, lowercasing, split and the per-char
 * regex for them (they were ≈ 6 % of the main thread's time on 1000-item batches).
 */
export function canonicalAsIs(raw: string): string | null {
  const n = raw.length;
  if (n === 0 || n > MAX_CONCEPT_PATH_BYTES) return null;
  let segments = 1;
  let segmentStart = 0;
  for (let i = 0; i <= n; i++) {
    const c = i < n ? raw.charCodeAt(i) : 0x2f; // the end closes the last segment like a "/"
    if (c === 0x2f) {
      const length = i - segmentStart;
      if (length === 0) return null; // empty, or a leading/trailing "/" (stripped by the slow path)
      const dot = raw.charCodeAt(segmentStart) === 0x2e;
      if (dot && (length === 1 || (length === 2 && raw.charCodeAt(segmentStart + 1) === 0x2e)))
        return null;
      if (i < n) segments++;
      segmentStart = i + 1;
      continue;
    }
    const allowed =
      (c >= 0x61 && c <= 0x7a) ||
      (c >= 0x30 && c <= 0x39) ||
      c === 0x5f ||
      c === 0x2e ||
      c === 0x2d;
    if (!allowed) return null;
  }
  return segments <= MAX_CONCEPT_SEGMENTS ? raw : null;
}

/**
 * Normalize a raw concept path to its canonical form, or explain exactly what is wrong.
 * Pure function; never throws for string input.
 */
export function normalizeConceptPath(raw: string): ConceptPathResult {
  if (typeof raw !== "string") return fail("concept path must be a string");
  const asIs = canonicalAsIs(raw);
  return asIs !== null ? { ok: true, path: asIs } : normalizeConceptPathFully(raw);
}

/** The full rules (what normalizeConceptPath applies when the path is not canonical as is). */
export function normalizeConceptPathFully(raw: string): ConceptPathResult {
  if (typeof raw !== "string") return fail("concept path must be a string");
  if (raw.length > MAX_RAW_CONCEPT_LENGTH) {
    return fail(
      `concept path is ${raw.length} characters long; at most ${MAX_CONCEPT_PATH_BYTES} bytes are allowed`,
    );
  }
  const lowered = raw.normalize("NFC").toLowerCase();
  let body = lowered;
  if (body.startsWith("/")) body = body.slice(1);
  if (body.endsWith("/")) body = body.slice(0, -1);
  if (body.length === 0) return fail("concept path is empty");

  const segments = body.split("/");
  if (segments.length > MAX_CONCEPT_SEGMENTS) {
    return fail(
      `concept path has ${segments.length} segments; at most ${MAX_CONCEPT_SEGMENTS} are allowed`,
    );
  }
  for (let i = 0; i < segments.length; i++) {
    const segment = segments[i] as string;
    const position = i + 1;
    if (segment.length === 0) {
      return fail(
        `concept path segment ${position} is empty (two "/" in a row, or a doubled leading/trailing "/")`,
      );
    }
    if (segment === "." || segment === "..") {
      return fail(
        `concept path segment ${position} is ${JSON.stringify(segment)}, which is not allowed`,
      );
    }
    for (const ch of segment) {
      if (!SEGMENT_CHAR.test(ch)) {
        const hint = ch === "*" ? `; "*" is only allowed as a final "/*" in a query` : "";
        return fail(
          `concept path segment ${position} (${quoteSegment(segment)}) contains ${describeChar(ch)}; ` +
            `segments may only contain a-z, 0-9, "_", "." and "-" (after NFC normalization and lowercasing)${hint}`,
        );
      }
    }
  }
  // Every character is ASCII here, so bytes === length; utf8Length keeps this obviously right.
  const bytes = utf8Length(body);
  if (bytes > MAX_CONCEPT_PATH_BYTES) {
    return fail(
      `concept path is ${bytes} bytes long; at most ${MAX_CONCEPT_PATH_BYTES} are allowed`,
    );
  }
  return { ok: true, path: body };
}

/**
 * Parse the `concept` parameter of a query: a concept path, optionally ending in `/*`
 * (the whole subtree under that path, the path itself included). A bare `*` is refused:
 * a subtree query must name at least one segment, so it is routed to bounded work.
 */
export function parseConceptQuery(raw: string): ConceptQueryResult {
  if (typeof raw !== "string") return fail("concept path must be a string");
  if (raw === "*" || raw === "/*") {
    return fail(`a subtree query needs at least one segment before "/*", e.g. "hosts/*"`);
  }
  const subtree = raw.endsWith(SUBTREE_SUFFIX);
  const pathPart = subtree ? raw.slice(0, -SUBTREE_SUFFIX.length) : raw;
  if (subtree && pathPart.endsWith("/")) {
    return fail(`concept path has an empty segment before "/*"`);
  }
  const normalized = normalizeConceptPath(pathPart);
  if (!normalized.ok) return normalized;
  return { ok: true, path: normalized.path, subtree };
}

/**
 * True if `path` (canonical) is `prefix` itself or lies in its subtree. Segment-aware:
 * "a/bc" is not under "a/b".
 */
export function isInSubtree(path: string, prefix: string): boolean {
  return path === prefix || (path.startsWith(prefix) && path.charCodeAt(prefix.length) === 0x2f);
}
