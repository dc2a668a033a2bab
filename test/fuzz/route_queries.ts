// Request families for the routes added to the fuzzer with the full route table: the JSON
// bodies of route_bodies.ts (plain and byte-damaged), query-string fuzzing for every GET (and
// DELETE) route with parameters, and path ids for every route with an id in its path.
import fc from "fast-check";
import type { AuthKind, FuzzCase } from "./cases.js";
import { validConcept, weirdConcept, weirdString } from "./json_arbs.js";
import { baseCase, cursorValue, encodeWith, encoding, idValue, pct } from "./request_arbs.js";
import { id32, routeBodies, routeDamagedBodies } from "./route_bodies.js";

// ---- Bodies -------------------------------------------------------------------------------

export const routeBodyFamily: fc.Arbitrary<FuzzCase> = routeBodies.map(({ route, body }) =>
  baseCase("route_body", body.label, "POST", route.path, route.role, body, body.expect),
);

export const routeMalformedFamily: fc.Arbitrary<FuzzCase> = routeDamagedBodies.map(
  ({ route, body }) => baseCase("malformed_json", body.label, "POST", route.path, route.role, body),
);

// ---- Query strings ----------------------------------------------------------------------

const limitValue = fc.oneof(
  fc.constantFrom("", "0", "1", "50", "51", "1000", "1001", "-1", "1.5", "1e2", "0x10", " 5"),
  fc.constantFrom("NaN", "Infinity", "99999999999999999999", "\u0661\u0662", "+3", "1,2"),
  fc.integer({ min: -5, max: 2000 }).map(String),
  weirdString,
);
const intLike = fc.oneof(
  fc.constantFrom("0", "1", "-1", "1.5", "abc", "", "99999999999999999999", "1e3", "0x1"),
  fc.constantFrom("9007199254740993", "-0", " 2", "2 ", "Infinity"),
  fc.integer({ min: 0, max: 50 }).map(String),
  weirdString,
);
const trustValue = fc.oneof(
  fc.constantFrom("0", "1", "0.5", "-0.1", "1.1", "NaN", "1e-400", "", ".", "0.2.3"),
  fc.double({ min: -2, max: 2, noNaN: true }).map(String),
  weirdString,
);
const hexId = fc.oneof(id32, idValue);
const principal = fc.oneof(
  fc.constantFrom("fuzz-agent", "fuzz-reader", "admin", ""),
  fc.stringMatching(/^[a-zA-Z0-9_.:-]{1,20}$/),
  weirdString,
  fc.integer({ min: 129, max: 5000 }).map((n) => "p".repeat(n)),
);
const concept = fc.oneof(
  weirdConcept,
  validConcept.map((c) => `gold/${c}`),
);
const q = fc.oneof(
  weirdString,
  validConcept,
  fc.integer({ min: 100, max: 300 }).map((n) => "q".repeat(n)),
  fc.constantFrom("", " ", "/", "//", "a".repeat(128), "a".repeat(129), "\u{1F600}".repeat(40)),
);
const choice = (...known: string[]) =>
  fc.oneof(fc.constantFrom(...known, "", "bogus"), weirdString);

type Params = Record<string, fc.Arbitrary<string>>;
interface QueryRoute {
  method: string;
  path: string;
  role: AuthKind;
  params: Params;
}

const QUERY_ROUTES: readonly QueryRoute[] = [
  {
    method: "GET",
    path: "/v1/query",
    role: "reader",
    params: {
      concept: fc.oneof(weirdConcept, fc.constantFrom("fuzz/a", "fuzz/*", "fuzz/warm/0/0")),
      lens: choice("latest", "history", "consensus", "trusted", "gold"),
      as_of_epoch: intLike,
      min_trust: trustValue,
      cursor: cursorValue,
      limit: limitValue,
    },
  },
  {
    method: "GET",
    path: "/v1/epochs",
    role: "reader",
    params: { after: intLike, limit: limitValue },
  },
  { method: "GET", path: "/v1/source/provenance", role: "reader", params: { assertion_id: hexId } },
  {
    method: "GET",
    path: "/v1/admin/quarantine",
    role: "admin",
    params: { agent: principal, concept, limit: limitValue, cursor: cursorValue },
  },
  {
    method: "GET",
    path: "/v1/admin/escalations",
    role: "admin",
    params: { status: choice("open", "resolved", "all"), limit: limitValue, cursor: intLike },
  },
  {
    method: "GET",
    path: "/v1/audit",
    role: "admin",
    params: {
      limit: limitValue,
      cursor: fc.oneof(intLike, cursorValue),
      action: choice("trust.decay", "gold_standard.set", "quarantine.approve", "api_key.create"),
      actor: principal,
    },
  },
  {
    method: "GET",
    path: "/v1/gold_standard",
    role: "reader",
    params: { concept, limit: limitValue, cursor: fc.oneof(concept, cursorValue) },
  },
  { method: "DELETE", path: "/v1/gold_standard", role: "admin", params: { concept } },
  {
    method: "GET",
    path: "/v1/admin/circuit_breakers",
    role: "admin",
    params: { state: choice("closed", "open", "half_open"), limit: limitValue, cursor: principal },
  },
  { method: "GET", path: "/v1/concepts/alias", role: "reader", params: { path: concept } },
  { method: "DELETE", path: "/v1/concepts/alias", role: "admin", params: { path: concept } },
  {
    method: "GET",
    path: "/v1/concepts/aliases",
    role: "reader",
    params: { limit: limitValue, cursor: fc.oneof(concept, cursorValue) },
  },
  { method: "GET", path: "/v1/concepts/suggest", role: "reader", params: { q, limit: limitValue } },
  { method: "GET", path: "/v1/concepts/parse", role: "reader", params: { path: concept } },
];

/** Parameters of one route: its own (repeated, empty, misspelled sometimes) plus junk. */
function paramsOf(route: QueryRoute): fc.Arbitrary<Array<[string, string]>> {
  const names = Object.keys(route.params);
  const own = fc
    .constantFrom(...names)
    .chain((name) => fc.tuple(fc.constant(name), route.params[name] as fc.Arbitrary<string>));
  const junk = fc.tuple(
    fc.oneof(
      fc.constantFrom("", "x", `${names[0]}[]`, (names[0] ?? "").toUpperCase()),
      weirdString,
    ),
    weirdString,
  );
  return fc.array(fc.oneof({ weight: 5, arbitrary: own }, { weight: 1, arbitrary: junk }), {
    maxLength: 6,
  });
}

export const routeQueryFamily: fc.Arbitrary<FuzzCase> = fc
  .constantFrom(...QUERY_ROUTES)
  .chain((route) =>
    fc.record({
      route: fc.constant(route),
      params: paramsOf(route),
      modes: fc.array(fc.tuple(encoding, fc.nat()), { minLength: 6, maxLength: 6 }),
      tail: fc.constantFrom("", "", "", "#frag", "&", "&&=", "?x"),
      badAuth: fc.constantFrom<AuthKind | null>(null, null, null, null, null, null, "none"),
    }),
  )
  .map(({ route, params, modes, tail, badAuth }) => {
    const parts: Buffer[] = [];
    let raw = false;
    params.forEach(([k, v], i) => {
      const [mode, salt] = modes[i] ?? ["pct", 0];
      raw ||= mode === "raw";
      if (i > 0) parts.push(Buffer.from("&"));
      parts.push(Buffer.from(`${pct(k)}=`), encodeWith(mode, v, salt));
    });
    const target = Buffer.concat([Buffer.from(`${route.path}?`), ...parts, Buffer.from(tail)]);
    const auth = badAuth ?? route.role;
    const c = baseCase(
      "route_query",
      `${route.method} ${target.toString("latin1").slice(0, 120)}`,
      route.method,
      target,
      auth,
      null,
      badAuth === null ? undefined : [401],
    );
    return { ...c, protocolLevel: raw };
  });

// ---- Path ids -----------------------------------------------------------------------------

const seqValue = fc.oneof(
  fc.constantFrom("0", "1", "-1", "1.5", "01", "1e3", "9007199254740993", "99999999999999999999"),
  fc.integer({ min: 1, max: 200 }).map(String),
  idValue,
);

const ID_ROUTES: ReadonlyArray<{ prefix: string; role: AuthKind; id: fc.Arbitrary<string> }> = [
  { prefix: "/v1/source/", role: "reader", id: idValue },
  { prefix: "/v1/agents/", role: "reader", id: fc.oneof(principal, idValue) },
  { prefix: "/v1/audit/", role: "admin", id: seqValue },
  { prefix: "/v1/admin/backups/", role: "admin", id: idValue },
];

export const routePathFamily: fc.Arbitrary<FuzzCase> = fc
  .constantFrom(...ID_ROUTES)
  .chain((route) =>
    fc.record({
      route: fc.constant(route),
      id: route.id,
      mode: encoding,
      salt: fc.nat(),
      auth: fc.constantFrom<AuthKind>(route.role, route.role, route.role, "admin", "none"),
    }),
  )
  .map(({ route, id, mode, salt, auth }) => {
    const target = Buffer.concat([Buffer.from(route.prefix), encodeWith(mode, id, salt)]);
    const c = baseCase(
      "route_path_ids",
      `GET ${target.toString("latin1").slice(0, 100)}`,
      "GET",
      target,
      auth,
      null,
    );
    return { ...c, protocolLevel: mode === "raw" };
  });
