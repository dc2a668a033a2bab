// fast-check arbitraries for the transport layer: header abuse, HTTP versions and syntax,
// content-length and transfer-encoding games, slow and cut deliveries, aborted connections,
// raw garbage and pipelining. They wrap the requests of request_arbs.ts.
import fc from "fast-check";
import type { FuzzCase } from "./cases.js";
import { assertionBody, damagedBody } from "./json_arbs.js";
import { baseCase, wellFormed } from "./request_arbs.js";
import { routeBodyFamily } from "./route_queries.js";

type Abuse = { label: string; apply: (c: FuzzCase) => FuzzCase };

const bodyRoute = (c: FuzzCase) => c.method === "POST";
/** Drop the expectation: the abuse may legitimately change the answer. */
const loose = (c: FuzzCase): FuzzCase => {
  const { expect: _e, ...rest } = c;
  return rest;
};
const linger = (c: FuzzCase, lingerMs = 300): FuzzCase => ({
  ...loose(c),
  protocolLevel: true,
  delivery: { kind: "linger", lingerMs },
});

const CONTENT_TYPES: readonly string[] = [
  "text/plain",
  "application/x-www-form-urlencoded",
  "multipart/form-data; boundary=x",
  "application/json-seq",
  "application/jsonx",
  "json",
  "application/",
  "*/*",
  "application/json, text/plain",
  "application/json\u0001",
  ";",
  "",
];
const ACCEPTED_CONTENT_TYPES: readonly string[] = [
  "APPLICATION/JSON",
  "application/json; charset=utf-8",
  "application/json;charset=latin1",
  " application/json ",
  "Application/Json;",
];

const abuse: fc.Arbitrary<Abuse> = fc.oneof(
  fc.constant<Abuse>({
    label: "no content-type",
    apply: (c) => ({
      ...c,
      contentType: null,
      ...(bodyRoute(c) && c.expect ? { expect: [415] } : {}),
    }),
  }),
  fc.constantFrom(...CONTENT_TYPES).map<Abuse>((ct) => ({
    label: `content-type ${JSON.stringify(ct)}`,
    // uWS drops a request whose header value holds a control character (no answer).
    apply: (c) =>
      [...ct].some((ch) => ch.charCodeAt(0) < 0x20)
        ? { ...linger(c), contentType: ct }
        : { ...c, contentType: ct, ...(bodyRoute(c) && c.expect ? { expect: [415] } : {}) },
  })),
  fc.constantFrom(...ACCEPTED_CONTENT_TYPES).map<Abuse>((ct) => ({
    label: `content-type ${JSON.stringify(ct)} (acceptable)`,
    // After an earlier bad content type set 415, the original expectation is gone.
    apply: (c) => ({ ...(c.expect?.includes(415) ? loose(c) : c), contentType: ct }),
  })),
  fc.constantFrom("text/plain", "application/json").map<Abuse>((ct) => ({
    label: `duplicate content-type (${ct} first)`,
    apply: (c) => ({ ...loose(c), headers: [...c.headers, ["content-type", ct]] }),
  })),
  fc.constant<Abuse>({
    label: "Title-Case header names",
    apply: (c) => ({ ...c, titleCase: true }),
  }),
  fc.integer({ min: 1024, max: 128 * 1024 }).map<Abuse>((n) => ({
    label: `giant header (${n} bytes)`,
    apply: (c) => ({ ...linger(c, 1000), headers: [...c.headers, ["x-junk", "j".repeat(n)]] }),
  })),
  fc.integer({ min: 20, max: 400 }).map<Abuse>((n) => ({
    label: `${n} headers`,
    apply: (c) => ({
      ...linger(c, 1000),
      headers: [
        ...c.headers,
        ...Array.from({ length: n }, (_, i): [string, string] => [`x-h${i}`, "v"]),
      ],
    }),
  })),
  fc
    .oneof(
      fc.stringMatching(/^[A-Za-z0-9._-]{1,64}$/).map((v) => ({ value: v, echo: true })),
      fc
        .constantFrom("a b", "<script>", "x".repeat(65), "é", "a,b", "")
        .map((v) => ({ value: v, echo: false })),
    )
    .map<Abuse>((rid) => ({
      label: `x-request-id ${JSON.stringify(rid.value.slice(0, 20))}`,
      apply: (c) => ({ ...c, requestId: rid }),
    })),
  fc
    .constantFrom(
      "abc",
      "-1",
      "+5",
      " 5",
      "0x10",
      "99999999999999999999",
      "1e3",
      "more",
      "less",
      "0",
      "dup",
    )
    .map<Abuse>((cl) => ({
      label: `content-length ${cl}`,
      apply: (c) => {
        const n = c.body().length;
        if (cl === "dup")
          return { ...linger(c), headers: [...c.headers, ["content-length", String(n + 1)]] };
        const value =
          cl === "more" ? String(n + 10) : cl === "less" ? String(Math.max(0, n - 3)) : cl;
        return { ...linger(c), contentLength: value };
      },
    })),
  fc.constantFrom("chunked", "chunked-bad", "chunked+cl", "gzip", "identity").map<Abuse>((te) => ({
    label: `transfer-encoding ${te}`,
    apply: (c) => {
      const body = c.body;
      const chunked = () => {
        const b = body();
        if (te === "chunked-bad")
          return Buffer.concat([Buffer.from("zz\r\n"), b, Buffer.from("\r\n0\r\n\r\n")]);
        return Buffer.concat([
          Buffer.from(`${b.length.toString(16)}\r\n`),
          b,
          Buffer.from("\r\n0\r\n\r\n"),
        ]);
      };
      const isChunked = te.startsWith("chunked");
      return {
        ...linger(c, 500),
        headers: [
          ...c.headers,
          ["transfer-encoding", te === "chunked+cl" || te === "chunked-bad" ? "chunked" : te],
        ],
        contentLength: te === "chunked+cl" ? "auto" : isChunked ? "omit" : c.contentLength,
        body: isChunked ? chunked : body,
      };
    },
  })),
  fc.constantFrom("100-continue", "200-ok").map<Abuse>((e) => ({
    label: `expect ${e}`,
    apply: (c) => ({ ...linger(c, 500), headers: [...c.headers, ["expect", e]] }),
  })),
  fc
    .constantFrom<[string, string][]>(
      [["connection", "close"]],
      [
        ["connection", "keep-alive, Upgrade"],
        ["upgrade", "websocket"],
        ["sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="],
        ["sec-websocket-version", "13"],
      ],
      [
        ["upgrade", "h2c"],
        ["connection", "Upgrade, HTTP2-Settings"],
        ["http2-settings", "AAMAAABkAAQCAAAAAAIAAAAA"],
      ],
      [["host", "evil.example"]],
      [["x-forwarded-for", "1.2.3.4, \u00e9"]],
      [["accept", "text/html"]],
      [["accept-encoding", "gzip, br"]],
      [["cookie", "a=".padEnd(3000, "b")]],
    )
    .map<Abuse>((hs) => ({
      label: `headers ${hs.map(([n]) => n).join(",")}`,
      apply: (c) => ({ ...c, headers: [...c.headers, ...hs] }),
    })),
  fc
    .constantFrom("HTTP/1.0", "HTTP/2.0", "HTTP/1.2", "http/1.1", "HTTP/1.1x", "")
    .map<Abuse>((v) => ({
      label: `version ${JSON.stringify(v)}`,
      apply: (c) => ({ ...linger(c), version: v }),
    })),
  fc
    .constantFrom<[string, string]>(
      ["x-fold", "a\r\n  folded"],
      ["x-nocolon\r\nbroken", "v"],
      ["x-space ", "v"],
      ["x-nul", "a\u0000b"],
      ["x-lf", "a\nx-injected: 1"],
      ["bad name", "v"],
      ["", "empty name"],
      ["x-ctl", "\u0007\u001b"],
    )
    .map<Abuse>(([n, v]) => ({
      label: `header syntax ${JSON.stringify(n)}`,
      apply: (c) => ({ ...linger(c), headers: [...c.headers, [n, v]] }),
    })),
  fc
    .constantFrom(
      Buffer.from([0xc3, 0xa9]),
      Buffer.from([0xff, 0xfe]),
      Buffer.from("\u00e9", "latin1"),
    )
    .map<Abuse>((bytes) => ({
      label: `non-ASCII header value ${bytes.toString("hex")}`,
      apply: (c) => ({ ...c, headers: [...c.headers, ["x-note", bytes]] }),
    })),
);

/** Base requests to every route, valid or broken, to be abused further. */
const anyRequest: fc.Arbitrary<FuzzCase> = fc.oneof(
  { weight: 3, arbitrary: wellFormed },
  { weight: 1, arbitrary: routeBodyFamily },
  {
    weight: 1,
    arbitrary: damagedBody(assertionBody).map((b) =>
      baseCase("x", b.label, "POST", "/v1/assert", "agent", b),
    ),
  },
);

export const headerFamily: fc.Arbitrary<FuzzCase> = fc
  .record({ req: anyRequest, abuses: fc.array(abuse, { minLength: 1, maxLength: 3 }) })
  .map(({ req, abuses }) => {
    const c = abuses.reduce((acc, a) => a.apply(acc), req);
    return {
      ...c,
      family: "headers",
      label: `${req.label} + ${abuses.map((a) => a.label).join(" + ")}`,
    };
  });

// ---- Delivery: slow, cut, hung up ---------------------------------------------------------

export const slowFamily: fc.Arbitrary<FuzzCase> = fc
  .record({
    req: anyRequest,
    pieces: fc.integer({ min: 2, max: 8 }),
    delayMs: fc.integer({ min: 1, max: 40 }),
    abort: fc.option(fc.nat(), { freq: 3 }),
    reset: fc.boolean(),
  })
  .map(({ req, pieces, delayMs, abort, reset }) => ({
    ...(abort === null ? req : loose(req)),
    family: "slow",
    label: `${req.label} in ${pieces} pieces every ${delayMs} ms${abort === null ? "" : `, abort after ${(abort % pieces) + 1}`}`,
    delivery: {
      kind: "slow" as const,
      pieces,
      delayMs,
      abortAfter: abort === null ? null : (abort % pieces) + 1,
      reset,
    },
  }));

export const abortFamily: fc.Arbitrary<FuzzCase> = fc
  .record({
    req: anyRequest,
    how: fc.constantFrom("cut", "cut", "hangup"),
    fraction: fc.double({ min: 0, max: 1, noNaN: true }),
    reset: fc.boolean(),
  })
  .map(({ req, how, fraction, reset }) => ({
    ...loose(req),
    family: "abort",
    label: `${req.label}, ${how === "hangup" ? "hang up after sending" : `cut at ${fraction.toFixed(2)}`}${reset ? " (RST)" : ""}`,
    delivery:
      how === "hangup"
        ? { kind: "hangup" as const, reset }
        : { kind: "cut" as const, keepFraction: fraction, reset },
  }));

// ---- Garbage and pipelining ---------------------------------------------------------------

const GARBAGE: readonly string[] = [
  "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
  "\u0016\u0003\u0001\u0002\u0000\u0001\u0000\u0001\u00fc\u0003\u0003",
  "\r\n\r\n",
  "GET\r\n\r\n",
  "GET / HTTP/1.1\r\n",
  "GET /v1/health HTTP/1.1\r\nhost: x\r\n",
  " GET /v1/health HTTP/1.1\r\n\r\n",
  "GET  /v1/health  HTTP/1.1\r\n\r\n",
  "GET /v1/health\r\n\r\n",
  "\u0000\u0000\u0000\u0000",
  "POST /v1/assert HTTP/1.1\r\ncontent-length: 5\r\n\r\n",
  "GET /v1/health HTTP/1.1\r\n\r\nGARBAGE AFTER\r\n\r\n",
];

export const garbageFamily: fc.Arbitrary<FuzzCase> = fc
  .oneof(
    fc.constantFrom(...GARBAGE).map((s) => ({
      label: `garbage ${JSON.stringify(s.slice(0, 30))}`,
      bytes: Buffer.from(s, "latin1"),
    })),
    fc
      .uint8Array({ minLength: 1, maxLength: 2048 })
      .map((u) => ({ label: `random ${u.length} bytes`, bytes: Buffer.from(u) })),
    fc
      .string({ unit: "binary-ascii", maxLength: 300 })
      .map((s) => ({ label: "random ascii", bytes: Buffer.from(`${s}\r\n\r\n`) })),
  )
  .map(({ label, bytes }) => ({
    ...baseCase("garbage", label, "GET", "/", "none", null),
    raw: () => bytes,
    protocolLevel: true,
    delivery: { kind: "linger" as const, lingerMs: 300 },
  }));

export const pipelineFamily: fc.Arbitrary<FuzzCase> = fc
  .array(
    fc.oneof(
      wellFormed,
      damagedBody(assertionBody).map((b) =>
        baseCase("x", b.label, "POST", "/v1/assert", "agent", b),
      ),
    ),
    { minLength: 2, maxLength: 5 },
  )
  .map((reqs) => ({
    ...baseCase(
      "pipeline",
      `${reqs.length} pipelined: ${reqs
        .map((r) => r.label)
        .join(" | ")
        .slice(0, 150)}`,
      "GET",
      "/",
      "none",
      null,
    ),
    pipeline: reqs,
  }));
