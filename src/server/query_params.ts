// Query parameters from one TypeBox schema per route, like request bodies: the schema checks
// the values (after reading the query's strings as the schema's types), gives the handler's
// type, and is the OpenAPI document. A parameter with a `default` may be left out or left
// empty (`limit=`); a required one left empty is missing; any other empty value is checked
// like every value (so `as_of_epoch=` is refused, not read as "now") unless its rule says an
// empty value means "left out" (cursors: `cursor=` is the first page). Parameters the schema
// does not name are ignored.
import type { Static, TObject, TSchema } from "@sinclair/typebox";
import { TypeCompiler } from "@sinclair/typebox/compiler";
import { ApiError } from "./errors.js";
import type { QueryParamDoc } from "./router.js";

/** The answer to a bad value of one parameter (and to a missing one, if required). */
export interface ParamRule {
  code: string;
  /** 422 unless said. */
  status?: 400 | 422;
  /** When a required parameter is absent: 400 with this code. */
  missingCode?: string;
  /** The whole message for a bad value, where "must be <what the schema says>" tells nothing. */
  message?: string;
  /** An empty value is the same as leaving the (optional) parameter out. */
  emptyIsAbsent?: boolean;
}

export interface QueryParams<T extends TObject> {
  /** The parameters' values, defaults filled in; throws the ApiError of the first bad one. */
  parse(query: URLSearchParams): Static<T>;
  /** The OpenAPI parameter objects (`in: "query"` is added by openapi.ts). */
  readonly docs: readonly QueryParamDoc[];
}

/** Raw values longer than this are refused before any conversion (and quoted shortened). */
const MAX_RAW_VALUE_CHARS = 8192;
const INTEGER_TEXT = /^-?[0-9]{1,15}$/;
const NUMBER_TEXT = /^[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]{1,3})?$/;

interface Param {
  name: string;
  schema: TSchema & { type?: string; default?: unknown; description?: string };
  check: ReturnType<typeof TypeCompiler.Compile>;
  required: boolean;
  rule: ParamRule;
}

export function queryParams<T extends TObject>(
  schema: T,
  rules: { [K in keyof Static<T> & string]: ParamRule },
): QueryParams<T> {
  const requiredNames = new Set(schema.required ?? []);
  const params: Param[] = Object.entries(schema.properties).map(([name, property]) => {
    const prop = property as Param["schema"];
    return {
      name,
      schema: prop,
      check: TypeCompiler.Compile(prop),
      required: requiredNames.has(name) && prop.default === undefined,
      rule: (rules as Record<string, ParamRule>)[name] as ParamRule,
    };
  });
  const docs = params.map(({ name, schema: prop, required, rule }) => {
    const { description, ...rest } = prop;
    const emptyAccepted = !required && (prop.default !== undefined || rule.emptyIsAbsent === true);
    return {
      name,
      required,
      description: description ?? "",
      schema: JSON.parse(JSON.stringify(rest)) as Record<string, unknown>,
      ...(emptyAccepted ? { allowEmptyValue: true } : {}),
    };
  });
  return {
    docs,
    parse(query) {
      const out: Record<string, unknown> = {};
      for (const param of params) {
        const raw = query.get(param.name);
        if (
          raw === null ||
          (raw === "" &&
            (param.required || param.schema.default !== undefined || param.rule.emptyIsAbsent))
        ) {
          if (param.schema.default !== undefined) out[param.name] = param.schema.default;
          else if (param.required) throw missing(param);
          continue;
        }
        const value = convert(param.schema.type, raw);
        if (value === undefined || !param.check.Check(value)) throw invalid(param, raw);
        out[param.name] = value;
      }
      return out as Static<T>;
    },
  };
}

/** The query's text as the schema's type; undefined when it is not one. */
function convert(type: string | undefined, raw: string): unknown {
  if (raw.length > MAX_RAW_VALUE_CHARS) return undefined;
  if (type === "integer") return INTEGER_TEXT.test(raw) ? Number(raw) : undefined;
  if (type === "number") return NUMBER_TEXT.test(raw) ? Number(raw) : undefined;
  return raw;
}

function missing(param: Param): ApiError {
  return new ApiError(
    400,
    param.rule.missingCode ?? param.rule.code,
    `The ${param.name} query parameter is required.`,
  );
}

function invalid(param: Param, raw: string): ApiError {
  const shown = JSON.stringify(raw.length > 40 ? `${raw.slice(0, 40)}…` : raw);
  return new ApiError(
    param.rule.status ?? 422,
    param.rule.code,
    param.rule.message ?? `${param.name} must be ${expected(param.schema)} (got ${shown}).`,
  );
}

/** "an integer from 1 to 1000", "one of latest, history", … from the schema. */
function expected(schema: TSchema): string {
  const s = schema as {
    type?: string;
    minimum?: number;
    maximum?: number;
    minLength?: number;
    maxLength?: number;
    pattern?: string;
    anyOf?: Array<{ const?: unknown }>;
  };
  if (s.anyOf !== undefined) return `one of ${s.anyOf.map((c) => String(c.const)).join(", ")}`;
  const noun = s.type === "integer" ? "an integer" : s.type === "number" ? "a number" : "text";
  if (s.minimum !== undefined && s.maximum !== undefined)
    return `${noun} from ${s.minimum} to ${s.maximum}`;
  if (s.minimum !== undefined) return `${noun} of at least ${s.minimum}`;
  if (s.pattern !== undefined) return `${noun} matching ${s.pattern}`;
  if (s.maxLength !== undefined)
    return `${noun} of ${s.minLength ?? 0} to ${s.maxLength} characters`;
  return noun;
}
