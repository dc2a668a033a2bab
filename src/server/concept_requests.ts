// Requests of the /v1/concepts routes: the TypeBox schema of POST /v1/concepts/alias (one
// schema: validation, TS type, OpenAPI) and the routes' query-parameter schemas, each
// throwing the documented ApiError (docs/api.md).
import { type Static, Type } from "@sinclair/typebox";
import { TypeCompiler } from "@sinclair/typebox/compiler";
import { normalizeConceptPath } from "../domain/concept_path.js";
import {
  DEFAULT_QUERY_LIMIT,
  DEFAULT_SUGGEST_LIMIT,
  MAX_QUERY_LIMIT,
  MAX_RAW_CONCEPT_LENGTH,
  MAX_SUGGEST_LIMIT,
  MAX_SUGGEST_QUERY_CHARS,
} from "../domain/limits.js";
import { unprocessable } from "./errors.js";
import { CURSOR_RULE, cursorSchema, invalidCursor, LIMIT_RULE, limitSchema } from "./params.js";
import { type ParamRule, queryParams } from "./query_params.js";
import { parseJsonBody, validate } from "./schemas.js";

const PathField = (description: string) =>
  Type.String({ minLength: 1, maxLength: MAX_RAW_CONCEPT_LENGTH, description });

export const CreateAliasRequest = Type.Object(
  {
    alias: PathField("Path that becomes an alias; normalized like any concept path"),
    canonical: PathField("Path the alias resolves to; must not itself be an alias"),
    force: Type.Optional(
      Type.Boolean({
        description:
          "Create the alias even though assertions are stored under the alias path (they stay readable by id and by the literal subtree query)",
      }),
    ),
  },
  { additionalProperties: false },
);
export type CreateAliasRequest = Static<typeof CreateAliasRequest>;
const CreateAliasRequestCheck = TypeCompiler.Compile(CreateAliasRequest);

export interface CreateAliasInput {
  alias: string;
  canonical: string;
  force: boolean;
}

/** Parse, validate and normalize a POST /v1/concepts/alias body. Throws ApiError 400/413/422. */
export function parseCreateAliasRequest(bytes: Uint8Array): CreateAliasInput {
  const checked = validate(CreateAliasRequestCheck, parseJsonBody(bytes));
  if (!checked.ok) throw unprocessable(checked.message);
  const alias = normalizeConceptPath(checked.value.alias);
  if (!alias.ok) throw unprocessable(`Field /alias: ${alias.message}.`, alias.code);
  const canonical = normalizeConceptPath(checked.value.canonical);
  if (!canonical.ok) throw unprocessable(`Field /canonical: ${canonical.message}.`, canonical.code);
  return { alias: alias.path, canonical: canonical.path, force: checked.value.force ?? false };
}

export const DEFAULT_ALIAS_PAGE = DEFAULT_QUERY_LIMIT;
export const MAX_ALIAS_PAGE = MAX_QUERY_LIMIT;

/** An alias-list cursor names the last alias returned; "a1:" tags the format. */
const ALIAS_CURSOR_TAG = "a1:";
/** base64url of the tag plus a path of at most 512 bytes, with room to spare. */
const MAX_ALIAS_CURSOR_CHARS = 1024;
const BASE64URL = /^[A-Za-z0-9_-]+$/;

const PATH_RULE: ParamRule = { code: "invalid_concept_path", missingCode: "missing_path" };

/** `?path=` of GET and DELETE /v1/concepts/alias. */
const AliasPathParams = queryParams(
  Type.Object({ path: PathField("Concept path (normalized: NFC, lowercase)") }),
  { path: PATH_RULE },
);
export const ALIAS_PATH_DOCS = AliasPathParams.docs;

/** `?path=` of GET /v1/concepts/parse: a concept path or a subtree query. */
export const ParseParams = queryParams(
  Type.Object({ path: PathField("Concept path, or a subtree query ending in /*") }),
  { path: PATH_RULE },
);

export const AliasListParams = queryParams(
  Type.Object({
    limit: limitSchema(DEFAULT_ALIAS_PAGE, MAX_ALIAS_PAGE),
    cursor: cursorSchema(MAX_ALIAS_CURSOR_CHARS),
  }),
  { limit: LIMIT_RULE, cursor: CURSOR_RULE },
);

export const SuggestParams = queryParams(
  Type.Object({
    q: Type.String({
      minLength: 1,
      // A raw bound before normalization; the normalized query has at most
      // MAX_SUGGEST_QUERY_CHARS (normalizeSuggestQuery).
      maxLength: 4 * MAX_SUGGEST_QUERY_CHARS,
      description:
        "What to match: typos, transpositions and reordered words are found (≤ 128 characters once normalized)",
    }),
    limit: limitSchema(DEFAULT_SUGGEST_LIMIT, MAX_SUGGEST_LIMIT),
  }),
  {
    q: {
      code: "query_too_long",
      missingCode: "missing_query",
      message: `q is too long; at most ${MAX_SUGGEST_QUERY_CHARS} characters are allowed.`,
    },
    limit: LIMIT_RULE,
  },
);

/** The required `path` query parameter as a concept path (400 missing, 422 invalid). */
export function aliasPathParam(query: URLSearchParams): string {
  const normalized = normalizeConceptPath(AliasPathParams.parse(query).path);
  if (!normalized.ok) throw unprocessable(`path: ${normalized.message}.`, normalized.code);
  return normalized.path;
}

export function encodeAliasCursor(alias: string): string {
  return Buffer.from(ALIAS_CURSOR_TAG + alias, "utf8").toString("base64url");
}

/** The alias a cursor names (400 `invalid_cursor` for anything this server did not issue). */
export function decodeAliasCursor(cursor: string | undefined): string | null {
  if (cursor === undefined) return null;
  if (cursor.length > MAX_ALIAS_CURSOR_CHARS || !BASE64URL.test(cursor)) throw invalidCursor();
  const text = Buffer.from(cursor, "base64url").toString("utf8");
  if (!text.startsWith(ALIAS_CURSOR_TAG)) throw invalidCursor();
  const alias = text.slice(ALIAS_CURSOR_TAG.length);
  const normalized = normalizeConceptPath(alias);
  if (!normalized.ok || normalized.path !== alias) throw invalidCursor();
  return alias;
}
