// Request schemas of the knowledge-semantics routes (votes, supersession, retraction, epochs,
// sources). As in schemas.ts, one TypeBox schema per request gives validation, the TS type
// and the OpenAPI document; rules a schema cannot express are checked right after.
import { createHash } from "node:crypto";
import { type Static, type TSchema, Type } from "@sinclair/typebox";
import { type TypeCheck, TypeCompiler } from "@sinclair/typebox/compiler";
import { canonicalJson } from "../domain/canonical_json.js";
import {
  MAX_EPOCH_LABEL_LENGTH,
  MAX_REASON_LENGTH,
  MAX_SOURCE_DERIVED_FROM,
  MAX_SOURCE_HASH_LENGTH,
  MAX_SOURCE_KIND_LENGTH,
  MAX_SOURCE_TITLE_LENGTH,
  MAX_SOURCE_URI_LENGTH,
  MAX_TIME_MS,
} from "../domain/limits.js";
import { conceptHashHex } from "../domain/shard_hash.js";
import type { SourceRecord } from "../domain/state_events.js";
import { unprocessable } from "./errors.js";
import {
  AssertionInput,
  type NormalizedAssertion,
  normalizeAssertionInput,
  parseJsonBody,
  validate,
} from "./schemas.js";

const Id = (description: string) =>
  Type.String({ pattern: "^[0-9a-f]{32}$", description: `${description} (32 lowercase hex)` });
const Reason = Type.Optional(
  Type.String({ maxLength: MAX_REASON_LENGTH, description: "Why, for the record" }),
);

export const VoteRequest = Type.Object(
  {
    assertion_id: Id("The assertion voted on"),
    vote: Type.Union([Type.Literal("up"), Type.Literal("down")]),
  },
  { additionalProperties: false },
);
export type VoteRequest = Static<typeof VoteRequest>;

export const SupersedeRequest = Type.Object(
  {
    supersedes: Id("The active assertion being replaced"),
    assertion: AssertionInput,
  },
  { additionalProperties: false },
);
export type SupersedeRequest = Static<typeof SupersedeRequest>;

export const RetractRequest = Type.Object(
  { assertion_id: Id("The assertion to retract"), reason: Reason },
  { additionalProperties: false },
);
export type RetractRequest = Static<typeof RetractRequest>;

export const EpochRequest = Type.Object(
  { label: Type.Optional(Type.String({ maxLength: MAX_EPOCH_LABEL_LENGTH })) },
  { additionalProperties: false },
);
export type EpochRequest = Static<typeof EpochRequest>;

export const SourceRequest = Type.Object(
  {
    uri: Type.String({ minLength: 1, maxLength: MAX_SOURCE_URI_LENGTH }),
    title: Type.Optional(Type.String({ maxLength: MAX_SOURCE_TITLE_LENGTH })),
    kind: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: MAX_SOURCE_KIND_LENGTH,
        description: "e.g. web, paper, dataset, assertion",
      }),
    ),
    content_hash: Type.Optional(Type.String({ minLength: 1, maxLength: MAX_SOURCE_HASH_LENGTH })),
    published_at: Type.Optional(Type.Integer({ minimum: 0, maximum: MAX_TIME_MS })),
    derived_from: Type.Optional(
      Type.Array(Id("An assertion this source was derived from"), {
        maxItems: MAX_SOURCE_DERIVED_FROM,
      }),
    ),
  },
  { additionalProperties: false },
);
export type SourceRequest = Static<typeof SourceRequest>;

const checks = new Map<TSchema, TypeCheck<TSchema>>();
function compiled<T extends TSchema>(schema: T): TypeCheck<T> {
  let c = checks.get(schema);
  if (c === undefined) {
    c = TypeCompiler.Compile(schema);
    checks.set(schema, c);
  }
  return c as TypeCheck<T>;
}

/** Parse and validate a JSON body against `schema`. Throws ApiError 400/413/422. */
export function parseBody<T extends TSchema>(schema: T, bytes: Uint8Array): Static<T> {
  const checked = validate(compiled(schema), parseJsonBody(bytes));
  if (!checked.ok) throw unprocessable(checked.message);
  return checked.value;
}

export function parseSupersede(bytes: Uint8Array): {
  supersedes: string;
  assertion: NormalizedAssertion;
} {
  const req = parseBody(SupersedeRequest, bytes);
  return {
    supersedes: req.supersedes,
    assertion: normalizeAssertionInput(req.assertion, "/assertion"),
  };
}

/**
 * A source's id names the document (uri, title, kind, content hash, publication time), so
 * the same document cited by many agents is stored once; the first registration's
 * `derived_from` is kept (later ones are duplicates). The first 16 hex digits hash the URI
 * (they pick the owning shard, like an assertion id's concept hash), the last 16 are a
 * SHA-256 prefix of the canonical identity. Because `derived_from` is not part of the id, a
 * client can cite a source before registering it, which is also how provenance cycles can
 * exist (and why the walk guards against them).
 */
export function sourceRecord(req: SourceRequest, agent: string, nowMs: number): SourceRecord {
  const identity = {
    uri: req.uri,
    title: req.title ?? null,
    kind: req.kind ?? null,
    content_hash: req.content_hash ?? null,
    published_at: req.published_at ?? null,
  };
  const digest = createHash("sha256").update(canonicalJson(identity)).digest("hex");
  const id = conceptHashHex(req.uri) + digest.slice(0, 16);
  const derived_from = [...new Set(req.derived_from ?? [])].sort();
  return { id, ...identity, derived_from, created_by: agent, created_at: nowMs };
}
