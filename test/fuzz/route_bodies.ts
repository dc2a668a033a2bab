// Body generators for the JSON routes beyond POST /v1/assert and /v1/admin/api_keys, built by
// hand from their TypeBox schemas (src/server/state_schemas.ts, safety_schemas.ts and the
// route files): a valid-ish body, then at most two mutations (a wrong type, a dropped field,
// an unknown field, an out-of-range number, a huge string, nested junk). Mutations are data;
// the bytes are built when the case runs.
//
// The generated state is kept away from what the other families' oracles rely on: gold
// standards and aliases live under gold/ and alias/ (the assert family writes fuzz/...), ids
// are random (so votes, retractions, decisions and resolutions mostly meet 404), and a backup
// target is never an empty absolute directory (nothing is ever copied).
import fc from "fast-check";
import { type AuthKind, KNOWN_ID_MARKS } from "./cases.js";
import {
  type BodyRecipe,
  damagedBody,
  type LongString,
  longString,
  materialize,
  type Nest,
  nesting,
  nestText,
  validAssertion,
  validConcept,
  weirdConcept,
  weirdString,
  wrongTypeValue,
} from "./json_arbs.js";

type Draft = Record<string, unknown>;

/** One field of a route's body: how to make a valid-ish value, and its type (for expectations). */
interface Field {
  value: fc.Arbitrary<unknown>;
  required: boolean;
  /** Type.Unknown: any JSON is valid, so a "wrong type" is not wrong. */
  anyJson?: boolean;
}

export interface BodyRoute {
  path: string;
  role: AuthKind;
  fields: Record<string, Field>;
}

/** Ids: random (404), or one of the assertions written at setup (cases.ts KNOWN_ID_MARKS). */
export const id32 = fc.oneof(
  { weight: 2, arbitrary: fc.stringMatching(/^[0-9a-f]{32}$/) },
  { weight: 1, arbitrary: fc.constant("00000000000000000000000000000000") },
  { weight: 3, arbitrary: fc.constantFrom(...KNOWN_ID_MARKS) },
);
const reason = fc.oneof(fc.string({ maxLength: 40 }), weirdString);
const agentId = fc.oneof(
  fc.constantFrom("fuzz-agent", "fuzz-reader", "fuzz-nobody", "admin"),
  fc.stringMatching(/^[a-zA-Z0-9_.:-]{1,20}$/),
  weirdString,
);
const scoped = (prefix: string) =>
  fc.oneof(
    { weight: 4, arbitrary: validConcept.map((c) => `${prefix}/${c}`) },
    { weight: 1, arbitrary: weirdConcept.map((c) => `${prefix}/${c}`) },
  );
const anyValue = fc.oneof(fc.jsonValue({ maxDepth: 2 }), fc.double(), weirdString);

const req = (value: fc.Arbitrary<unknown>, anyJson = false): Field => ({
  value,
  required: true,
  anyJson,
});
const opt = (value: fc.Arbitrary<unknown>, anyJson = false): Field => ({
  value,
  required: false,
  anyJson,
});

export const BODY_ROUTES: readonly BodyRoute[] = [
  {
    path: "/v1/vote",
    role: "agent",
    fields: { assertion_id: req(id32), vote: req(fc.constantFrom("up", "down")) },
  },
  {
    path: "/v1/supersede",
    role: "agent",
    fields: { supersedes: req(id32), assertion: req(validAssertion) },
  },
  { path: "/v1/retract", role: "agent", fields: { assertion_id: req(id32), reason: opt(reason) } },
  { path: "/v1/epoch", role: "admin", fields: { label: opt(fc.string({ maxLength: 30 })) } },
  {
    path: "/v1/source",
    role: "agent",
    fields: {
      uri: req(fc.oneof(fc.webUrl(), weirdString)),
      title: opt(fc.string({ maxLength: 30 })),
      kind: opt(fc.constantFrom("web", "paper", "dataset", "assertion")),
      content_hash: opt(fc.stringMatching(/^[0-9a-f]{64}$/)),
      published_at: opt(fc.integer({ min: 0, max: 4_102_444_800_000 })),
      derived_from: opt(fc.array(id32, { maxLength: 4 })),
    },
  },
  {
    path: "/v1/concepts/alias",
    role: "admin",
    fields: {
      alias: req(scoped("alias")),
      canonical: req(scoped("alias")),
      force: opt(fc.boolean()),
    },
  },
  { path: "/v1/admin/circuit_breaker/reset", role: "admin", fields: { agent: req(agentId) } },
  {
    path: "/v1/gold_standard",
    role: "admin",
    fields: {
      concept: req(scoped("gold")),
      value: req(anyValue, true),
      tolerance: opt(fc.double({ min: 0, max: 100, noNaN: true })),
    },
  },
  { path: "/v1/gold_standard/verify", role: "admin", fields: { agent: req(agentId) } },
  {
    path: "/v1/admin/quarantine/approve",
    role: "admin",
    fields: { assertion_id: req(id32), reason: opt(reason) },
  },
  {
    path: "/v1/admin/quarantine/reject",
    role: "admin",
    fields: { assertion_id: req(id32), reason: opt(reason) },
  },
  {
    path: "/v1/admin/escalation/resolve",
    role: "admin",
    fields: {
      escalation_id: req(fc.oneof(fc.integer({ min: 1, max: 50 }), fc.constant(2 ** 31))),
      // Exactly one of these two is valid; the draft keeps both optional so either, both or
      // neither get sent.
      winner_assertion_id: opt(id32),
      value: opt(anyValue, true),
      reason: opt(reason),
    },
  },
  {
    path: "/v1/admin/backup",
    role: "admin",
    fields: { to: req(fc.constantFrom("relative/dir", "", "./x", "/", "/etc", "/usr", "~/x")) },
  },
  // No body expected; junk must still be answered, not crash the handler.
  { path: "/v1/admin/decay_trust_ranks", role: "admin", fields: { junk: opt(anyValue, true) } },
];

const OUT_OF_RANGE: readonly unknown[] = [
  -1,
  0,
  -0,
  1.5,
  2 ** 53,
  2 ** 53 + 2,
  -(2 ** 63),
  1e308,
  5e-324,
  Number.MAX_SAFE_INTEGER,
];

type Mutation =
  | { kind: "wrong_type"; field: string; value: unknown }
  | { kind: "drop"; field: string }
  | { kind: "unknown_field"; key: string; value: unknown }
  | { kind: "out_of_range"; field: string; value: unknown }
  | { kind: "huge"; field: string; big: LongString }
  | { kind: "nested"; field: string; nest: Nest };

function mutation(fields: readonly string[]): fc.Arbitrary<Mutation> {
  const field = fc.constantFrom(...fields);
  return fc.oneof(
    {
      weight: 3,
      arbitrary: fc.record({
        kind: fc.constant("wrong_type" as const),
        field,
        value: wrongTypeValue,
      }),
    },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant("drop" as const), field }) },
    {
      weight: 2,
      arbitrary: fc.record({
        kind: fc.constant("unknown_field" as const),
        key: fc.oneof(fc.constantFrom("agent", "__proto__", "constructor", "id", ""), weirdString),
        value: wrongTypeValue,
      }),
    },
    {
      weight: 2,
      arbitrary: fc.record({
        kind: fc.constant("out_of_range" as const),
        field,
        value: fc.constantFrom(...OUT_OF_RANGE),
      }),
    },
    {
      weight: 2,
      arbitrary: fc.record({ kind: fc.constant("huge" as const), field, big: longString }),
    },
    {
      weight: 1,
      arbitrary: fc.record({ kind: fc.constant("nested" as const), field, nest: nesting }),
    },
  );
}

const NEST_MARK = "\u0000nest\u0000";

function applyAll(draft: Draft, muts: readonly Mutation[]): Buffer {
  const d: Draft = { ...draft };
  let nest: Nest | null = null;
  for (const m of muts) {
    if (m.kind === "drop") delete d[m.field];
    else if (m.kind === "unknown_field")
      Object.defineProperty(d, m.key, {
        value: m.value,
        enumerable: true,
        configurable: true,
        writable: true,
      });
    else if (m.kind === "huge") d[m.field] = materialize(m.big);
    else if (m.kind === "nested") {
      d[m.field] = NEST_MARK;
      nest = m.nest;
    } else d[m.field] = m.value;
  }
  const text = JSON.stringify(d);
  if (nest === null) return Buffer.from(text);
  return Buffer.from(text.replace(JSON.stringify(NEST_MARK), nestText(nest)));
}

/** The body field a mutation touches (an unknown field's key for that kind). */
function fieldOf(m: Mutation): string {
  return m.kind === "unknown_field" ? m.key : m.field;
}

function describe(m: Mutation): string {
  switch (m.kind) {
    case "drop":
      return `drop ${m.field}`;
    case "unknown_field":
      return `unknown field ${JSON.stringify(m.key).slice(0, 20)}`;
    case "huge":
      return `huge ${m.field} (${m.big.length})`;
    case "nested":
      return `depth ${m.nest.depth} in ${m.field}`;
    default:
      return `${m.kind} ${m.field}=${JSON.stringify(m.value)?.slice(0, 30)}`;
  }
}

/** A 422 is certain only for a mutation the schema refuses whatever the rest of the body is. */
function surelyInvalid(route: BodyRoute, m: Mutation): boolean {
  if (route.path === "/v1/admin/decay_trust_ranks") return false;
  if (m.kind === "unknown_field") return m.key !== "" && !(m.key in route.fields);
  if (m.kind === "drop") return route.fields[m.field]?.required === true;
  // Wrong types and odd numbers are often still valid somewhere ([] for an array of ids, 0 for
  // a tolerance, a weird string for a string): only the general rules apply to them.
  return false;
}

/** A valid-ish draft for a route: required fields always, optional ones sometimes. */
function draftOf(route: BodyRoute): fc.Arbitrary<Draft> {
  const entries = Object.entries(route.fields);
  const record: Record<string, fc.Arbitrary<unknown>> = {};
  for (const [k, f] of entries) record[k] = f.value;
  const required = entries.filter(([, f]) => f.required).map(([k]) => k);
  return fc.record(record, { requiredKeys: required }) as fc.Arbitrary<Draft>;
}

/** One route's body: valid-ish or mutated (up to two mutations). */
export function routeBody(route: BodyRoute): fc.Arbitrary<BodyRecipe> {
  const names = Object.keys(route.fields);
  return fc
    .record({
      draft: draftOf(route),
      muts: fc.oneof(
        { weight: 1, arbitrary: fc.constant<Mutation[]>([]) },
        { weight: 4, arbitrary: fc.array(mutation(names), { minLength: 1, maxLength: 2 }) },
      ),
    })
    .map(({ draft, muts }) => {
      const label = muts.length === 0 ? "valid-ish" : muts.map(describe).join(", ");
      // A dropped field that a later mutation puts back (nested, huge, …) is not missing.
      const sure = muts.some(
        (m, i) =>
          surelyInvalid(route, m) &&
          !(
            m.kind === "drop" &&
            muts.slice(i + 1).some((n) => n.kind !== "drop" && fieldOf(n) === m.field)
          ),
      );
      const huge = muts.some((m) => m.kind === "huge" || m.kind === "nested");
      return {
        label: `${route.path} ${label}`,
        build: () => applyAll(draft, muts),
        // Size and depth limits may answer first (413/422/400); else the schema's 422.
        ...(sure ? { expect: huge ? [400, 413, 422] : [422] } : {}),
      };
    });
}

/** A body route with its recipes, plain or byte-damaged (truncated, invalid UTF-8, …). */
export const routeBodies = fc
  .constantFrom(...BODY_ROUTES)
  .chain((route) => fc.record({ route: fc.constant(route), body: routeBody(route) }));

export const routeDamagedBodies = fc
  .constantFrom(...BODY_ROUTES)
  .chain((route) => fc.record({ route: fc.constant(route), body: damagedBody(routeBody(route)) }));
