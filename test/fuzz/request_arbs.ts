// fast-check arbitraries for whole requests against every route: bodies, query strings and
// path ids, credentials, header abuse, wrong methods, slow and cut deliveries, raw garbage
// and pipelining. Each yields a FuzzCase (see cases.ts).
import fc from "fast-check";
import type { AuthKind, Delivery, FuzzCase } from "./cases.js";
import {
  apiKeyBody,
  assertionBody,
  type BodyRecipe,
  damagedBody,
  validAssertion,
  weirdConcept,
  weirdString,
} from "./json_arbs.js";
import { ALLOWED, ROUTES } from "./route_table.js";

const JSON_TYPE = "application/json";
const WHOLE: Delivery = { kind: "whole" };
const EMPTY = () => Buffer.alloc(0);

// ---- Encoding helpers -------------------------------------------------------------------

/** Percent-encodes UTF-8 bytes (lone surrogates become U+FFFD, as any client would send). */
export function pct(s: string): string {
  let out = "";
  for (const byte of Buffer.from(s, "utf8")) {
    const ch = String.fromCharCode(byte);
    out += /[A-Za-z0-9._~-]/.test(ch) ? ch : `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

export const BAD_PERCENT = [
  "%",
  "%Z",
  "%zz",
  "%00",
  "%C0%80",
  "%ED%A0%80",
  "%FF",
  "%E0%A4%A",
  "%25%",
];

/** How one query value or path segment is written into the target. */
export const encoding = fc.constantFrom("pct", "pct", "pct", "raw", "bad");
export function encodeWith(mode: string, s: string, salt: number): Buffer {
  if (mode === "raw") return Buffer.from(s, "utf8"); // raw bytes in the request line
  if (mode === "bad") {
    const bad = BAD_PERCENT[salt % BAD_PERCENT.length] as string;
    const e = pct(s);
    const at = salt % (e.length + 1);
    return Buffer.from(e.slice(0, at) + bad + e.slice(at));
  }
  return Buffer.from(pct(s));
}

// ---- Base requests ----------------------------------------------------------------------

function base(
  family: string,
  label: string,
  method: string,
  target: string | Buffer,
  auth: AuthKind,
  body: BodyRecipe | null,
  expect?: readonly number[],
): FuzzCase {
  return {
    family,
    label,
    method,
    target,
    auth,
    headers: [],
    contentType: body === null ? null : JSON_TYPE,
    contentLength: "auto",
    body: body === null ? EMPTY : body.build,
    delivery: WHOLE,
    protocolLevel: false,
    ...(expect !== undefined ? { expect } : {}),
  };
}

/** Well-formed requests to the original routes, with the status each must get. */
const wellFormedCore: fc.Arbitrary<FuzzCase> = fc.oneof(
  validAssertion.map((a) =>
    base(
      "base",
      "valid assert",
      "POST",
      "/v1/assert",
      "agent",
      {
        label: "valid",
        build: () => Buffer.from(JSON.stringify(a)),
      },
      [201],
    ),
  ),
  fc.constantFrom("agent", "reader").map((role) =>
    base(
      "base",
      `create ${role} key`,
      "POST",
      "/v1/admin/api_keys",
      "admin",
      {
        label: role,
        build: () => Buffer.from(JSON.stringify({ role })),
      },
      [201],
    ),
  ),
  fc.constant(base("base", "list keys", "GET", "/v1/admin/api_keys", "admin", null, [200])),
  fc.constant(base("base", "health", "GET", "/v1/health", "none", null, [200])),
  fc.constant(base("base", "metrics", "GET", "/metrics", "none", null, [200])),
  fc
    .stringMatching(/^[0-9a-f]{32}$/)
    .map((id) =>
      base("base", "get unknown id", "GET", `/v1/assertions/${id}`, "reader", null, [404]),
    ),
  fc
    .constantFrom("latest", "history")
    .map((lens) =>
      base(
        "base",
        `query ${lens}`,
        "GET",
        `/v1/query?concept=fuzz/a&lens=${lens}`,
        "reader",
        null,
        [200],
      ),
    ),
  fc.constant(
    base("base", "subtree", "GET", "/v1/query?concept=fuzz/*&limit=5", "reader", null, [200]),
  ),
);

/** The example request of every registered route (route_table.ts), with its least role. */
const routeExample: fc.Arbitrary<FuzzCase> = fc
  .record({ route: fc.constantFrom(...ROUTES), body: validAssertion })
  .map(({ route, body }) => {
    const text = route.body;
    const recipe: BodyRecipe | null =
      text === null
        ? null
        : {
            label: "example",
            build: () => Buffer.from(text === "ASSERTION" ? JSON.stringify(body) : text),
          };
    return base(
      "base",
      `example ${route.method} ${route.path}`,
      route.method,
      route.path,
      route.role ?? "none",
      recipe,
    );
  });

/** Well-formed requests to every route (the transport families abuse these further). */
export const wellFormed: fc.Arbitrary<FuzzCase> = fc.oneof(
  { weight: 1, arbitrary: wellFormedCore },
  { weight: 1, arbitrary: routeExample },
);

// ---- Bodies -----------------------------------------------------------------------------

export const assertFamily: fc.Arbitrary<FuzzCase> = assertionBody.map((b) =>
  base("assert_body", b.label, "POST", "/v1/assert", "agent", b, b.expect),
);

export const malformedFamily: fc.Arbitrary<FuzzCase> = fc.oneof(
  damagedBody(assertionBody).map((b) =>
    base("malformed_json", b.label, "POST", "/v1/assert", "agent", b),
  ),
  damagedBody(apiKeyBody).map((b) =>
    base("malformed_json", b.label, "POST", "/v1/admin/api_keys", "admin", b),
  ),
);

export const apiKeyFamily: fc.Arbitrary<FuzzCase> = apiKeyBody.map((b) =>
  base("api_keys", b.label, "POST", "/v1/admin/api_keys", "admin", b),
);

// ---- Query strings and path ids -------------------------------------------------------------

const b64 = (s: string) => Buffer.from(s, "utf8").toString("base64url");
export const cursorValue: fc.Arbitrary<string> = fc.oneof(
  fc.base64String({ maxLength: 64 }),
  fc.stringMatching(/^[A-Za-z0-9_-]{1,64}$/),
  // Subtree cursors are base64url("c2:" + JSON concept), history ones "h2:" + [concept, lsn].
  weirdConcept.map((c) => b64(`c2:${JSON.stringify(c)}`)),
  weirdConcept.map((c) => b64(`h2:${JSON.stringify([c, 1])}`)),
  fc.integer({ min: 500, max: 8000 }).map((n) => b64(`c2:"fuzz/${"z".repeat(n)}"`)),
  fc.integer({ min: 3000, max: 6000 }).map((n) => b64(`c2:${"\u0000".repeat(n)}`)),
  fc
    .record({
      kind: fc.constantFrom("h1", "u1", "a1", "c1", ""),
      scope: fc.constantFrom("fuzz/a", "", "fuzz"),
      pos: fc.constantFrom(0, -1, 1.5, 2 ** 53, 1e300, "x", null, [], 9_007_199_254_740_991),
    })
    .map(({ kind, scope, pos }) => b64(JSON.stringify([kind, scope, pos]))),
  fc.constantFrom("", "%%", "====", "c2:", b64("c2:"), b64("q1:[]"), "x".repeat(5000)),
);

const queryParam: fc.Arbitrary<[string, string]> = fc.oneof(
  { weight: 4, arbitrary: fc.tuple(fc.constant("concept"), weirdConcept) },
  {
    weight: 2,
    arbitrary: weirdConcept.map((c): [string, string] => ["concept", `${c}/*`]),
  },
  {
    weight: 1,
    arbitrary: fc.tuple(
      fc.constant("concept"),
      fc.constantFrom("*", "/*", "a//*", "a/**", "fuzz/*", "fuzz/*/x", "fuzz/*"),
    ),
  },
  {
    weight: 2,
    arbitrary: fc.tuple(
      fc.constant("lens"),
      fc.oneof(
        fc.constantFrom("latest", "history", "consensus", "trusted", "gold", "bogus", "", "LATEST"),
        weirdString,
      ),
    ),
  },
  {
    weight: 2,
    arbitrary: fc.tuple(
      fc.constant("limit"),
      fc.oneof(
        fc.constantFrom("", "0", "1", "1000", "1001", "-1", "1.5", "1e2", "0x10", " 5", "NaN"),
        fc.constantFrom("Infinity", "99999999999999999999", "\u0661\u0662", "1.0", "+3"),
        fc.integer({ min: -5, max: 2000 }).map(String),
      ),
    ),
  },
  { weight: 2, arbitrary: fc.tuple(fc.constant("cursor"), cursorValue) },
  {
    weight: 1,
    arbitrary: fc.tuple(fc.constantFrom("as_of_epoch", "x", "", "concept[]"), weirdString),
  },
);

const randomQuery: fc.Arbitrary<FuzzCase> = fc
  .record({
    params: fc.array(fc.tuple(queryParam, encoding, fc.nat()), { minLength: 0, maxLength: 6 }),
    auth: fc.constantFrom<AuthKind>("reader", "reader", "agent", "admin", "none", "revoked"),
    tail: fc.constantFrom("", "", "#frag", "&", "&&=", "?x"),
  })
  .map(({ params, auth, tail }) => {
    const parts = params.map(([[k, v], mode, salt]) =>
      Buffer.concat([Buffer.from(`${pct(k)}=`), encodeWith(mode, v, salt)]),
    );
    const joined: Buffer[] = [];
    parts.forEach((p, i) => {
      if (i > 0) joined.push(Buffer.from("&"));
      joined.push(p);
    });
    const target = Buffer.concat([Buffer.from("/v1/query?"), ...joined, Buffer.from(tail)]);
    const protocolLevel = params.some(([, mode]) => mode === "raw");
    const c = base(
      "query",
      `query ${target.toString("latin1").slice(0, 120)}`,
      "GET",
      target,
      auth,
      null,
    );
    return {
      ...c,
      protocolLevel,
      ...(auth === "none" || auth === "revoked" ? { expect: [401] } : {}),
    };
  });

/** A paging cursor against the lens it belongs to (subtree latest or history). */
const cursorQuery: fc.Arbitrary<FuzzCase> = fc
  .record({
    target: fc.constantFrom("concept=fuzz/*", "concept=fuzz/warm/*", "concept=fuzz/a&lens=history"),
    cursor: cursorValue,
    limit: fc.constantFrom("", "&limit=1", "&limit=1000"),
  })
  .map(({ target, cursor, limit }) =>
    base(
      "query",
      `cursor (${cursor.length} chars) on ${target}`,
      "GET",
      `/v1/query?${target}${limit}&cursor=${pct(cursor)}`,
      "reader",
      null,
    ),
  );

export const queryFamily: fc.Arbitrary<FuzzCase> = fc.oneof(
  { weight: 3, arbitrary: randomQuery },
  { weight: 1, arbitrary: cursorQuery },
);

export const idValue: fc.Arbitrary<string> = fc.oneof(
  fc.stringMatching(/^[0-9a-f]{32}$/),
  fc.stringMatching(/^[0-9A-F]{32}$/),
  fc.stringMatching(/^[0-9a-f]{31,33}$/),
  fc.stringMatching(/^[a-z2-7]{12}$/),
  weirdString,
  fc.constantFrom("", ".", "..", "a/b", "%2F", "*", " ", "null"),
  fc.integer({ min: 200, max: 10_000 }).map((n) => "f".repeat(n)),
);

export const pathFamily: fc.Arbitrary<FuzzCase> = fc
  .record({
    route: fc.constantFrom("get_assertion", "get_assertion", "revoke_key"),
    id: idValue,
    mode: encoding,
    salt: fc.nat(),
    auth: fc.constantFrom<AuthKind>("reader", "agent", "admin", "admin", "none"),
  })
  .map(({ route, id, mode, salt, auth }) => {
    const prefix = route === "get_assertion" ? "/v1/assertions/" : "/v1/admin/api_keys/";
    const target = Buffer.concat([Buffer.from(prefix), encodeWith(mode, id, salt)]);
    const method = route === "get_assertion" ? "GET" : "DELETE";
    const c = base(
      "path_ids",
      `${method} ${target.toString("latin1").slice(0, 100)}`,
      method,
      target,
      auth,
      null,
    );
    return { ...c, protocolLevel: mode === "raw" };
  });

// ---- Credentials and roles ----------------------------------------------------------------

const RANK: Record<string, number> = { reader: 1, agent: 2, admin: 3 };
const BAD_AUTH: AuthKind[] = [
  "none",
  "revoked",
  "unknown",
  "no_scheme",
  "basic",
  "bearer_empty",
  "bearer_trailing_junk",
  "bearer_giant",
];

export const authFamily: fc.Arbitrary<FuzzCase> = fc
  .record({
    route: fc.constantFrom(...ROUTES),
    auth: fc.constantFrom<AuthKind>(
      "none",
      "agent",
      "reader",
      "admin",
      "revoked",
      "unknown",
      "no_scheme",
      "basic",
      "bearer_empty",
      "bearer_lower",
      "bearer_upper",
      "bearer_spaces",
      "bearer_trailing_junk",
      "bearer_giant",
      "bearer_latin1",
      "double_bad_first",
      "double_good_first",
    ),
    body: validAssertion,
  })
  .map(({ route, auth, body }) => {
    let expect: number[] | undefined;
    if (route.role !== null) {
      if (BAD_AUTH.includes(auth)) expect = [401];
      else if (auth === "agent" || auth === "reader" || auth === "admin") {
        if ((RANK[auth] ?? 0) < (RANK[route.role] ?? 0)) expect = [403];
      }
    }
    const text = route.body;
    const recipe: BodyRecipe | null =
      text === null
        ? null
        : {
            label: "body",
            build: () => Buffer.from(text === "ASSERTION" ? JSON.stringify(body) : text),
          };
    return base(
      "auth",
      `${auth} → ${route.method} ${route.path}`,
      route.method,
      route.path,
      auth,
      recipe,
      expect,
    );
  });

// ---- Methods ------------------------------------------------------------------------------

const STANDARD = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"];

export const methodFamily: fc.Arbitrary<FuzzCase> = fc
  .record({
    method: fc.constantFrom(...STANDARD, "HEAD", "CONNECT", "PROPFIND", "get", "FOO", "M-SEARCH"),
    path: fc.constantFrom(
      ...Object.keys(ALLOWED),
      "/",
      "/v1",
      "/v1/",
      "/v1/assert/",
      "//v1/assert",
      "/V1/ASSERT",
      "/v1/assertions/",
      "/v1/assertions/a/b",
      "/v1/nope",
      "/v1/stream",
      "/v1/audit/",
      "/v1/source/a/b",
      "/v1/concepts",
      "/v1/concepts/",
      "/v1/gold_standard/",
      "/v1/admin/escalation",
      "*",
      "http://127.0.0.1/v1/health",
    ),
    body: fc.boolean(),
  })
  .map(({ method, path, body }) => {
    let expect: number[] | undefined;
    const allowed = ALLOWED[path];
    if (STANDARD.includes(method) && allowed !== undefined && !allowed.includes(method))
      expect = [405];
    const recipe: BodyRecipe | null = body
      ? { label: "body", build: () => Buffer.from('{"concept":"fuzz/m","value":1,"confidence":1}') }
      : null;
    const c = base("methods", `${method} ${path}`, method, path, "admin", recipe, expect);
    // uWS drops connections with methods it does not know (no answer at all), and "*" or
    // absolute-form targets are unusual: for those only the general rules apply.
    const unusual = !STANDARD.includes(method) && method !== "HEAD";
    return { ...c, protocolLevel: unusual || path === "*" || path.startsWith("http:") };
  });

export { base as baseCase };
