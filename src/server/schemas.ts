// Request schemas. One TypeBox schema per request gives: validation (compiled once with
// TypeCompiler), the TypeScript type (Static<>), and the JSON Schema for /v1/openapi.json.
// Rules a JSON Schema cannot express (concept path normalization, canonical value size,
// valid_to ≥ valid_from) are checked right after, in this file, so every handler gets
// fully validated, normalized input from one call. API-key requests: key_schemas.ts.
//
// Status policy: bytes that are not JSON → 400 `malformed_json`; JSON that breaks the
// schema or a rule → 422 (`invalid_request` or a specific code); body or batch too big → 413.

import { type Static, type TSchema, Type } from "@sinclair/typebox";
import {
  type TypeCheck,
  TypeCompiler,
  type ValueError,
  ValueErrorType,
} from "@sinclair/typebox/compiler";
import { CanonicalJsonError, canonicalJson, jsonTextDepth } from "../domain/canonical_json.js";
import { normalizeConceptPath } from "../domain/concept_path.js";
import {
  MAX_BATCH_ITEMS,
  MAX_BODY_BYTES,
  MAX_ID_LENGTH,
  MAX_JSON_DEPTH,
  MAX_NONCE_LENGTH,
  MAX_RAW_CONCEPT_LENGTH,
  MAX_SOURCES,
  MAX_TIME_MS,
  MAX_VALUE_JSON_BYTES,
} from "../domain/limits.js";
import type { AssertionRecord } from "../store/assertion_codec.js";
import { ApiError, badRequest, payloadTooLarge, unprocessable } from "./errors.js";

// ---- Schemas --------------------------------------------------------------------------

export const TimeMs = (description: string) =>
  Type.Integer({ minimum: 0, maximum: MAX_TIME_MS, description });

export const AssertionInput = Type.Object(
  {
    concept: Type.String({
      minLength: 1,
      maxLength: MAX_RAW_CONCEPT_LENGTH,
      description: "Concept path; normalized to NFC lowercase `[a-z0-9_.-]+` segments",
    }),
    value: Type.Unknown({ description: "Any JSON value; canonical JSON ≤ 16 KiB" }),
    confidence: Type.Number({ minimum: 0, maximum: 1 }),
    sources: Type.Optional(
      Type.Array(Type.String({ minLength: 1, maxLength: MAX_ID_LENGTH }), {
        maxItems: MAX_SOURCES,
        description: "Ids of sources cited",
      }),
    ),
    valid_from: Type.Optional(TimeMs("Start of validity, ms since the epoch (UTC)")),
    valid_to: Type.Optional(TimeMs("End of validity, ms since the epoch (UTC); ≥ valid_from")),
    nonce: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: MAX_NONCE_LENGTH,
        description: "Makes an otherwise identical assertion distinct (ids are content-derived)",
      }),
    ),
  },
  { additionalProperties: false },
);
export type AssertionInput = Static<typeof AssertionInput>;

export const AssertBatch = Type.Object(
  { assertions: Type.Array(AssertionInput, { minItems: 1, maxItems: MAX_BATCH_ITEMS }) },
  { additionalProperties: false },
);
export type AssertBatch = Static<typeof AssertBatch>;

export const AssertRequest = Type.Union([AssertionInput, AssertBatch]);
export type AssertRequest = Static<typeof AssertRequest>;

/** One text frame of WS /v1/stream: a client sequence number and one assertion. */
export const StreamMessage = Type.Object(
  {
    seq: Type.Integer({
      minimum: 0,
      maximum: Number.MAX_SAFE_INTEGER,
      description: "Client sequence number, echoed in the ack or error frame",
    }),
    assertion: AssertionInput,
  },
  { additionalProperties: false },
);
export type StreamMessage = Static<typeof StreamMessage>;

// ---- Compiled validators ------------------------------------------------------------------

export const AssertionInputCheck = TypeCompiler.Compile(AssertionInput);
export const AssertBatchCheck = TypeCompiler.Compile(AssertBatch);
export const AssertRequestCheck = TypeCompiler.Compile(AssertRequest);
export const StreamMessageCheck = TypeCompiler.Compile(StreamMessage);

export type ValidationResult<T> =
  | { ok: true; value: T }
  | { ok: false; message: string; path: string };

function capitalize(s: string): string {
  return s.length === 0 ? s : s.charAt(0).toUpperCase() + s.slice(1);
}

function lowerFirst(s: string): string {
  return s.length === 0 ? s : s.charAt(0).toLowerCase() + s.slice(1);
}

function literalChoices(schema: TSchema): string[] | null {
  const anyOf = (schema as { anyOf?: TSchema[] }).anyOf;
  if (!Array.isArray(anyOf) || anyOf.length === 0) return null;
  const out: string[] = [];
  for (const s of anyOf) {
    if (!("const" in s)) return null;
    out.push(JSON.stringify((s as unknown as { const: unknown }).const));
  }
  return out;
}

/** For a failed union, the most specific (deepest) first error among its variants. */
function deepestUnionError(e: ValueError): ValueError {
  let best: ValueError | undefined;
  for (const it of e.errors) {
    const first = it.First();
    if (first && (!best || first.path.length > best.path.length)) best = first;
  }
  return best ?? e;
}

/** One TypeBox error as a human sentence. */
export function describeValueError(error: ValueError): { message: string; path: string } {
  let e = error;
  const choices = e.type === ValueErrorType.Union ? literalChoices(e.schema) : null;
  if (e.type === ValueErrorType.Union && choices === null) e = deepestUnionError(e);
  const where = e.path === "" ? "request body" : `field ${e.path}`;
  let sentence: string;
  switch (e.type) {
    case ValueErrorType.ObjectRequiredProperty:
      sentence = `missing required ${where}`;
      break;
    case ValueErrorType.ObjectAdditionalProperties:
      sentence = `${where} is not an allowed property`;
      break;
    case ValueErrorType.StringPattern:
      sentence = `${where} must match the pattern ${(e.schema as { pattern?: string }).pattern}`;
      break;
    case ValueErrorType.Union:
      sentence = choices
        ? `${where} must be one of ${choices.join(", ")}`
        : `${where} does not match any accepted form`;
      break;
    default:
      sentence = `${where}: ${lowerFirst(e.message)}`;
  }
  return { message: `${capitalize(sentence)}.`, path: e.path };
}

/** Validate `value` against a compiled schema; on failure, the first error as a sentence. */
export function validate<T extends TSchema>(
  compiled: TypeCheck<T>,
  value: unknown,
): ValidationResult<Static<T>> {
  if (compiled.Check(value)) return { ok: true, value };
  const first = compiled.Errors(value).First();
  if (first === undefined) return { ok: false, message: "Request body is invalid.", path: "" };
  return { ok: false, ...describeValueError(first) };
}

/** Validate a POST /v1/assert body: a batch if it has an `assertions` key, else one item. */
export function validateAssertRequest(value: unknown): ValidationResult<AssertRequest> {
  const isBatch = typeof value === "object" && value !== null && "assertions" in value;
  return isBatch ? validate(AssertBatchCheck, value) : validate(AssertionInputCheck, value);
}

// ---- Body parsing -----------------------------------------------------------------------

const utf8Fatal = new TextDecoder("utf-8", { fatal: true });

/**
 * Decode and parse a JSON request body. Throws ApiError: 413 beyond MAX_BODY_BYTES,
 * 400 `malformed_json` for empty, non-UTF-8 or non-JSON bytes, 422 `too_deep` when nested
 * deeper than `maxDepth` (checked on the text before JSON.parse runs). `what` names the
 * input in error messages ("Request body", or "Message" for a WebSocket frame).
 */
export function parseJsonBody(
  bytes: Uint8Array,
  what = "Request body",
  maxDepth = MAX_JSON_DEPTH,
): unknown {
  if (bytes.length > MAX_BODY_BYTES) {
    throw payloadTooLarge(
      `${what} is ${bytes.length} bytes; at most ${MAX_BODY_BYTES} bytes are allowed.`,
    );
  }
  if (bytes.length === 0) throw badRequest(`${what} is empty.`, "malformed_json");
  let text: string;
  try {
    text = utf8Fatal.decode(bytes);
  } catch {
    throw badRequest(`${what} is not valid UTF-8.`, "malformed_json");
  }
  if (jsonTextDepth(text, maxDepth) > maxDepth) {
    throw unprocessable(`${what} is nested deeper than ${maxDepth} levels.`, "too_deep");
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    const detail = e instanceof Error ? ` (${e.message})` : "";
    throw badRequest(`${what} is not valid JSON${detail}.`, "malformed_json");
  }
}

// ---- Normalized requests ----------------------------------------------------------------

/**
 * An assertion after validation and normalization, ready for id derivation and routing: the
 * client-supplied fields of the stored record (concept canonical, aliases not yet resolved;
 * valueJson = canonicalJson(value), at most MAX_VALUE_JSON_BYTES) plus the parsed value.
 */
export type NormalizedAssertion = Pick<
  AssertionRecord,
  "concept" | "valueJson" | "confidence" | "sources" | "validFromMs" | "validToMs" | "nonce"
> & { value: unknown };

/**
 * Apply the rules a schema cannot express to one schema-valid assertion. `pointer` is the
 * JSON pointer of the item in the body ("" for a single assertion) for error messages.
 * Throws ApiError 422.
 */
export function normalizeAssertionInput(input: AssertionInput, pointer = ""): NormalizedAssertion {
  const concept = normalizeConceptPath(input.concept);
  if (!concept.ok) {
    throw unprocessable(`Field ${pointer}/concept: ${concept.message}.`, concept.code);
  }
  let valueJson: string;
  try {
    valueJson = canonicalJson(input.value);
  } catch (e) {
    const why = e instanceof CanonicalJsonError ? e.message : "not a JSON value";
    throw unprocessable(`Field ${pointer}/value is not valid JSON: ${why}.`, "invalid_value");
  }
  const valueBytes = Buffer.byteLength(valueJson, "utf8");
  if (valueBytes > MAX_VALUE_JSON_BYTES) {
    throw unprocessable(
      `Field ${pointer}/value is ${valueBytes} bytes as canonical JSON; at most ${MAX_VALUE_JSON_BYTES} are allowed.`,
      "value_too_large",
    );
  }
  const validFromMs = input.valid_from ?? null;
  const validToMs = input.valid_to ?? null;
  if (validFromMs !== null && validToMs !== null && validToMs < validFromMs) {
    throw unprocessable(
      `Field ${pointer}/valid_to (${validToMs}) is before ${pointer}/valid_from (${validFromMs}).`,
      "invalid_validity_window",
    );
  }
  return {
    concept: concept.path,
    value: input.value,
    valueJson,
    confidence: input.confidence,
    sources: input.sources ?? [],
    validFromMs,
    validToMs,
    nonce: input.nonce ?? null,
  };
}

/** Parse, validate and normalize a POST /v1/assert body. Throws ApiError 400/413/422. */
export function parseAssertRequest(bytes: Uint8Array): {
  batch: boolean;
  items: NormalizedAssertion[];
} {
  const body = parseJsonBody(bytes);
  if (typeof body === "object" && body !== null && "assertions" in body) {
    const list = (body as { assertions: unknown }).assertions;
    if (Array.isArray(list) && list.length > MAX_BATCH_ITEMS) {
      throw payloadTooLarge(
        `Batch has ${list.length} assertions; at most ${MAX_BATCH_ITEMS} are allowed per request.`,
        "batch_too_large",
      );
    }
  }
  const checked = validateAssertRequest(body);
  if (!checked.ok) throw unprocessable(checked.message);
  const request = checked.value;
  if ("assertions" in request) {
    const items = request.assertions.map((a, i) => normalizeAssertionInput(a, `/assertions/${i}`));
    return { batch: true, items };
  }
  return { batch: false, items: [normalizeAssertionInput(request)] };
}

/** A WS /v1/stream message that cannot be written; `seq` is null when it could not be read. */
export class StreamMessageError extends Error {
  constructor(
    readonly seq: number | null,
    readonly error: ApiError,
  ) {
    super(error.message);
    this.name = "StreamMessageError";
  }
}

function readableSeq(value: unknown): number | null {
  if (typeof value !== "object" || value === null) return null;
  const seq = (value as { seq?: unknown }).seq;
  return typeof seq === "number" && Number.isSafeInteger(seq) && seq >= 0 ? seq : null;
}

/**
 * Parse, validate and normalize one WS /v1/stream text frame
 * `{"seq": n, "assertion": {…the body of a single POST /v1/assert…}}` with the same schema
 * and rules as POST /v1/assert. The envelope adds one level of nesting, so the frame may be
 * one level deeper than an HTTP body. Throws StreamMessageError carrying the ApiError (its
 * code is the one HTTP would answer) and the seq when the frame had a readable one.
 */
export function parseStreamMessage(bytes: Uint8Array): { seq: number; item: NormalizedAssertion } {
  let body: unknown;
  try {
    body = parseJsonBody(bytes, "Message", MAX_JSON_DEPTH + 1);
  } catch (err) {
    throw err instanceof ApiError ? new StreamMessageError(null, err) : err;
  }
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw new StreamMessageError(
      null,
      unprocessable('Message must be a JSON object {"seq": n, "assertion": {…}}.'),
    );
  }
  const seq = readableSeq(body);
  const assertion = (body as { assertion?: unknown }).assertion;
  if (typeof assertion === "object" && assertion !== null && "assertions" in assertion) {
    throw new StreamMessageError(
      seq,
      unprocessable(
        "Field /assertion must be one assertion; send a batch as one message per assertion.",
      ),
    );
  }
  const checked = validate(StreamMessageCheck, body);
  if (!checked.ok) throw new StreamMessageError(seq, unprocessable(checked.message));
  try {
    return {
      seq: checked.value.seq,
      item: normalizeAssertionInput(checked.value.assertion, "/assertion"),
    };
  } catch (err) {
    throw err instanceof ApiError ? new StreamMessageError(seq, err) : err;
  }
}
