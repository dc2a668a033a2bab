import { Type } from "@sinclair/typebox";
import { describe, expect, it } from "vitest";
import { MAX_BATCH_ITEMS, MAX_BODY_BYTES, MAX_JSON_DEPTH } from "../src/domain/limits.js";
import {
  ApiError,
  badRequest,
  conflict,
  errorBody,
  forbidden,
  insufficientStorage,
  internalError,
  notFound,
  payloadTooLarge,
  tooManyRequests,
  unauthorized,
  unavailable,
  unprocessable,
  unsupportedMediaType,
} from "../src/server/errors.js";
import {
  CreateApiKeyRequest,
  CreateApiKeyRequestCheck,
  parseCreateApiKeyRequest,
} from "../src/server/key_schemas.js";
import { queryParams } from "../src/server/query_params.js";
import {
  AssertionInputCheck,
  AssertRequest,
  AssertRequestCheck,
  parseAssertRequest,
  parseJsonBody,
  parseStreamMessage,
  StreamMessageError,
  validate,
  validateAssertRequest,
} from "../src/server/schemas.js";

const enc = (v: unknown) => new TextEncoder().encode(typeof v === "string" ? v : JSON.stringify(v));

function apiError(fn: () => unknown): ApiError {
  try {
    fn();
  } catch (e) {
    if (e instanceof ApiError) return e;
    throw e;
  }
  throw new Error("expected an ApiError");
}

const good = { concept: "Hosts/Web-1/OS", value: { name: "debian" }, confidence: 0.5 };

describe("errors", () => {
  it("renders the exact body shape", () => {
    expect(errorBody("bad_thing", 'a "quoted" message', "req-1")).toBe(
      '{"error":{"code":"bad_thing","message":"a \\"quoted\\" message","request_id":"req-1"}}',
    );
  });

  it("helpers carry the right status, code and headers", () => {
    const cases: Array<[ApiError, number, string]> = [
      [badRequest("m"), 400, "bad_request"],
      [unauthorized(), 401, "unauthorized"],
      [forbidden("m"), 403, "forbidden"],
      [notFound("m"), 404, "not_found"],
      [conflict("m"), 409, "conflict"],
      [payloadTooLarge("m"), 413, "payload_too_large"],
      [unsupportedMediaType(), 415, "unsupported_media_type"],
      [unprocessable("m"), 422, "invalid_request"],
      [tooManyRequests(2.2), 429, "rate_limited"],
      [unavailable(0), 503, "overloaded"],
      [insufficientStorage(), 507, "insufficient_storage"],
      [internalError(), 500, "internal_error"],
    ];
    for (const [e, status, code] of cases) {
      expect(e).toBeInstanceOf(Error);
      expect(e.status).toBe(status);
      expect(e.code).toBe(code);
    }
    expect(tooManyRequests(2.2).headers).toEqual({ "retry-after": "3" });
    expect(unavailable(0).headers).toEqual({ "retry-after": "1" });
    expect(unauthorized().headers?.["www-authenticate"]).toContain("Bearer");
    expect(badRequest("m", "malformed_json").code).toBe("malformed_json");
    expect(() => new ApiError(200, "x", "m")).toThrow(RangeError);
    expect(() => new ApiError(400, "Not-Snake", "m")).toThrow(RangeError);
  });
});

describe("schemas", () => {
  it("accept a valid assertion and batch, and export JSON Schema", () => {
    expect(validate(AssertionInputCheck, good)).toEqual({ ok: true, value: good });
    expect(validate(AssertRequestCheck, { assertions: [good, good] }).ok).toBe(true);
    expect(AssertRequest.anyOf).toHaveLength(2);
    expect(CreateApiKeyRequest.additionalProperties).toBe(false);
    expect(JSON.parse(JSON.stringify(CreateApiKeyRequest)).properties.role.anyOf).toHaveLength(3);
  });

  it("report the first error as a sentence with a JSON pointer", () => {
    const cases: Array<[unknown, string, RegExp]> = [
      [
        { ...good, confidence: 1.5 },
        "/confidence",
        /^Field \/confidence: expected number to be less or equal to 1\.$/,
      ],
      [{ concept: "a", confidence: 0.5 }, "/value", /^Missing required field \/value\.$/],
      [{ ...good, extra: 1 }, "/extra", /^Field \/extra is not an allowed property\.$/],
      [{ ...good, sources: ["x".repeat(129)] }, "/sources/0", /less or equal to 128/],
      [{ ...good, sources: Array(33).fill("s") }, "/sources", /less or equal to 32/],
      [{ ...good, valid_from: 1.5 }, "/valid_from", /expected integer/],
      [{ ...good, nonce: "n".repeat(129) }, "/nonce", /128/],
      [[1], "", /^Request body: expected object\.$/],
    ];
    for (const [value, path, message] of cases) {
      const r = validate(AssertionInputCheck, value);
      expect(r.ok).toBe(false);
      if (!r.ok) {
        expect(r.path).toBe(path);
        expect(r.message).toMatch(message);
      }
    }
  });

  it("dispatch AssertRequest to the batch or single shape", () => {
    const r = validateAssertRequest({ assertions: [good, { ...good, confidence: -1 }] });
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.path).toBe("/assertions/1/confidence");
    const empty = validateAssertRequest({ assertions: [] });
    expect(!empty.ok && empty.message).toMatch(/\/assertions.*greater or equal to 1/);
    // Generic validate on the union picks the deepest variant error.
    const u = validate(AssertRequestCheck, { assertions: [{ ...good, confidence: "x" }] });
    expect(!u.ok && u.path).toBe("/assertions/0/confidence");
  });

  it("validate CreateApiKeyRequest", () => {
    expect(
      validate(CreateApiKeyRequestCheck, { role: "agent", principal: "agent:alpha-1" }).ok,
    ).toBe(true);
    const role = validate(CreateApiKeyRequestCheck, { role: "root" });
    expect(!role.ok && role.message).toBe('Field /role must be one of "agent", "reader", "admin".');
    const principal = validate(CreateApiKeyRequestCheck, { role: "agent", principal: "a b" });
    expect(!principal.ok && principal.message).toMatch(/^Field \/principal must match the pattern/);
    const label = validate(CreateApiKeyRequestCheck, { role: "agent", labels: { "bad key": "x" } });
    expect(!label.ok && label.path).toBe("/labels/bad key");
    const many = Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, "v"]));
    expect(validate(CreateApiKeyRequestCheck, { role: "agent", labels: many }).ok).toBe(false);
  });
});

describe("parseJsonBody", () => {
  it("parses JSON and rejects malformed bytes with 400 malformed_json", () => {
    expect(parseJsonBody(enc({ a: 1 }))).toEqual({ a: 1 });
    for (const bytes of [
      enc(""),
      enc("{"),
      enc("{'a':1}"),
      new Uint8Array([0x7b, 0xff, 0x7d]),
      new Uint8Array([0xc3]),
    ]) {
      const e = apiError(() => parseJsonBody(bytes));
      expect(e.status).toBe(400);
      expect(e.code).toBe("malformed_json");
    }
    expect(
      apiError(() => parseJsonBody(new Uint8Array([0x22, 0xed, 0xa0, 0x80, 0x22]))).message,
    ).toMatch(/UTF-8/);
  });

  it("rejects nesting past MAX_JSON_DEPTH with 422 too_deep", () => {
    const ok = `${"[".repeat(MAX_JSON_DEPTH)}${"]".repeat(MAX_JSON_DEPTH)}`;
    expect(() => parseJsonBody(enc(ok))).not.toThrow();
    const deep = `${"[".repeat(MAX_JSON_DEPTH + 1)}${"]".repeat(MAX_JSON_DEPTH + 1)}`;
    const e = apiError(() => parseJsonBody(enc(deep)));
    expect([e.status, e.code]).toEqual([422, "too_deep"]);
    expect(apiError(() => parseJsonBody(enc("[".repeat(1_000_000)))).code).toBe("too_deep");
    // Brackets inside strings do not count.
    expect(() => parseJsonBody(enc({ s: "[".repeat(100) }))).not.toThrow();
  });

  it("rejects bodies over MAX_BODY_BYTES with 413", () => {
    expect(apiError(() => parseJsonBody(new Uint8Array(MAX_BODY_BYTES + 1))).status).toBe(413);
  });
});

describe("parseAssertRequest", () => {
  it("normalizes a single assertion", () => {
    const r = parseAssertRequest(
      enc({ ...good, value: { b: 2, a: 1 }, sources: ["s1"], valid_from: 5, nonce: "n" }),
    );
    expect(r.batch).toBe(false);
    expect(r.items).toEqual([
      {
        concept: "hosts/web-1/os",
        value: { b: 2, a: 1 },
        valueJson: '{"a":1,"b":2}',
        confidence: 0.5,
        sources: ["s1"],
        validFromMs: 5,
        validToMs: null,
        nonce: "n",
      },
    ]);
  });

  it("normalizes a batch and points errors at the item", () => {
    expect(parseAssertRequest(enc({ assertions: [good, good] })).items).toHaveLength(2);
    const e = apiError(() =>
      parseAssertRequest(enc({ assertions: [good, { ...good, concept: "a//b" }] })),
    );
    expect([e.status, e.code]).toEqual([422, "invalid_concept_path"]);
    expect(e.message).toMatch(/^Field \/assertions\/1\/concept: concept path segment 2 is empty/);
  });

  it("rejects oversized values, inverted windows and huge batches", () => {
    const big = apiError(() => parseAssertRequest(enc({ ...good, value: "x".repeat(16 * 1024) })));
    expect([big.status, big.code]).toEqual([422, "value_too_large"]);
    const justFits = "x".repeat(16 * 1024 - 2); // plus two quotes = 16 KiB exactly
    expect(() => parseAssertRequest(enc({ ...good, value: justFits }))).not.toThrow();
    const win = apiError(() => parseAssertRequest(enc({ ...good, valid_from: 10, valid_to: 9 })));
    expect([win.status, win.code]).toEqual([422, "invalid_validity_window"]);
    expect(() => parseAssertRequest(enc({ ...good, valid_from: 10, valid_to: 10 }))).not.toThrow();
    const many = apiError(() =>
      parseAssertRequest(
        enc({
          assertions: Array(MAX_BATCH_ITEMS + 1).fill({ concept: "a", value: 1, confidence: 1 }),
        }),
      ),
    );
    expect([many.status, many.code]).toEqual([413, "batch_too_large"]);
    const schema = apiError(() => parseAssertRequest(enc({ ...good, confidence: 2 })));
    expect([schema.status, schema.code]).toEqual([422, "invalid_request"]);
  });
});

describe("parseCreateApiKeyRequest", () => {
  it("returns defaults and refuses past expiry", () => {
    expect(parseCreateApiKeyRequest(enc({ role: "reader" }), 1000)).toEqual({
      role: "reader",
      principal: null,
      labels: {},
      expiresAtMs: null,
    });
    const e = apiError(() =>
      parseCreateApiKeyRequest(enc({ role: "agent", expires_at: 1000 }), 1000),
    );
    expect([e.status, e.code]).toEqual([422, "invalid_expiry"]);
    expect(
      parseCreateApiKeyRequest(
        enc({ role: "agent", expires_at: 1001, labels: { team: "x" } }),
        1000,
      ),
    ).toMatchObject({
      expiresAtMs: 1001,
      labels: { team: "x" },
    });
  });
});

describe("parseStreamMessage (WS /v1/stream frames)", () => {
  const enc = (v: unknown) =>
    new TextEncoder().encode(typeof v === "string" ? v : JSON.stringify(v));
  const nested = (depth: number): unknown => (depth === 0 ? 1 : [nested(depth - 1)]);
  const failure = (v: unknown): StreamMessageError => {
    try {
      parseStreamMessage(enc(v));
    } catch (e) {
      if (e instanceof StreamMessageError) return e;
      throw e;
    }
    throw new Error("expected a StreamMessageError");
  };

  it("normalizes the assertion exactly like POST /v1/assert", () => {
    const assertion = { concept: "Cities/Paris", value: { b: 1, a: 2 }, confidence: 0.5 };
    const { seq, item } = parseStreamMessage(enc({ seq: 3, assertion }));
    expect(seq).toBe(3);
    expect(item).toEqual(parseAssertRequest(enc(assertion)).items[0]);
  });

  it("allows the assertion the same depth as an HTTP body (the envelope adds one level)", () => {
    // An HTTP body {"value": [[…]]} at exactly MAX_JSON_DEPTH is accepted; so is its frame.
    const assertion = { concept: "a", value: nested(MAX_JSON_DEPTH - 1), confidence: 0.5 };
    expect(() => parseAssertRequest(enc(assertion))).not.toThrow();
    expect(() => parseStreamMessage(enc({ seq: 0, assertion }))).not.toThrow();
    const deeper = { ...assertion, value: nested(MAX_JSON_DEPTH) };
    expect(failure({ seq: 0, assertion: deeper }).error.code).toBe("too_deep");
  });

  it("reports the seq when it is readable, with the code HTTP would answer", () => {
    expect(failure("{").seq).toBeNull();
    expect(failure({ seq: 2 ** 53, assertion: {} }).seq).toBeNull();
    const bad = failure({ seq: 4, assertion: { concept: "a", value: 1, confidence: 7 } });
    expect([bad.seq, bad.error.code, bad.error.message]).toEqual([
      4,
      "invalid_request",
      expect.stringContaining("/assertion/confidence"),
    ]);
    expect(
      failure({ seq: 5, assertion: { concept: "A B", value: 1, confidence: 1 } }).error.code,
    ).toBe("invalid_concept_path");
  });
});

describe("query parameters from one schema (src/server/query_params.ts)", () => {
  const spec = queryParams(
    Type.Object({
      q: Type.String({ minLength: 1, maxLength: 8, description: "what" }),
      mode: Type.Union([Type.Literal("a"), Type.Literal("b")], { default: "a" }),
      limit: Type.Integer({ minimum: 1, maximum: 50, default: 10 }),
      ratio: Type.Optional(Type.Number({ minimum: 0, maximum: 1 })),
    }),
    {
      q: { code: "bad_q", missingCode: "missing_q" },
      mode: { code: "bad_mode" },
      limit: { code: "bad_limit" },
      ratio: { code: "bad_ratio", status: 400 },
    },
  );
  const parse = (query: string) => spec.parse(new URLSearchParams(query));
  const failure = (query: string) => {
    try {
      parse(query);
    } catch (err) {
      const e = err as { status: number; code: string; message: string };
      return { status: e.status, code: e.code, message: e.message };
    }
    throw new Error(`${query} was accepted`);
  };

  it("reads typed values and fills defaults (also for empty values); ignores unknown ones", () => {
    expect(parse("q=x&other=1")).toEqual({ q: "x", mode: "a", limit: 10 });
    expect(parse("q=x&mode=b&limit=50&ratio=0.25")).toEqual({
      q: "x",
      mode: "b",
      limit: 50,
      ratio: 0.25,
    });
    expect(parse("q=x&limit=&mode=")).toEqual({ q: "x", mode: "a", limit: 10 });
  });

  it("answers the first bad parameter with its code, status and what was expected", () => {
    expect(failure("")).toMatchObject({ status: 400, code: "missing_q" });
    expect(failure("q=")).toMatchObject({ status: 400, code: "missing_q" });
    // Empty without a default is a value like any other: not silently "absent".
    expect(failure("q=x&ratio=")).toMatchObject({ status: 400, code: "bad_ratio" });
    expect(failure("q=123456789")).toMatchObject({ status: 422, code: "bad_q" });
    expect(failure("q=x&mode=c")).toEqual({
      status: 422,
      code: "bad_mode",
      message: 'mode must be one of a, b (got "c").',
    });
    for (const limit of ["0", "51", "1.5", "abc", "1e3", " 5", "99999999999999999"])
      expect(failure(`q=x&limit=${encodeURIComponent(limit)}`), limit).toMatchObject({
        status: 422,
        code: "bad_limit",
        message: expect.stringContaining("limit must be an integer from 1 to 50"),
      });
    for (const ratio of ["-0.1", "1.01", "NaN", "Infinity", "0x1"])
      expect(failure(`q=x&ratio=${ratio}`), ratio).toMatchObject({
        status: 400,
        code: "bad_ratio",
      });
  });

  it("documents each parameter from the same schema", () => {
    expect(spec.docs).toEqual([
      {
        name: "q",
        required: true,
        description: "what",
        schema: expect.objectContaining({ type: "string", maxLength: 8 }),
      },
      {
        name: "mode",
        required: false,
        description: "",
        allowEmptyValue: true,
        schema: expect.objectContaining({
          default: "a",
          anyOf: [expect.objectContaining({ const: "a" }), expect.objectContaining({ const: "b" })],
        }),
      },
      {
        name: "limit",
        required: false,
        description: "",
        allowEmptyValue: true,
        schema: expect.objectContaining({ type: "integer", minimum: 1, maximum: 50, default: 10 }),
      },
      {
        name: "ratio",
        required: false,
        description: "",
        schema: expect.objectContaining({ type: "number" }),
      },
    ]);
  });

  it("an empty cursor is left out when its rule says so; a rule's message replaces the default", () => {
    const paged = queryParams(
      Type.Object({
        cursor: Type.Optional(Type.String({ pattern: "^[1-9][0-9]*$" })),
        id: Type.Optional(Type.String({ pattern: "^[0-9a-f]{4}$" })),
      }),
      {
        cursor: { code: "bad_cursor", status: 400, emptyIsAbsent: true, message: "Not ours." },
        id: { code: "bad_id", status: 400 },
      },
    );
    const read = (query: string) => paged.parse(new URLSearchParams(query));
    expect(read("cursor=")).toEqual({});
    expect(read("cursor=12")).toEqual({ cursor: "12" });
    expect(() => read("cursor=0")).toThrow(expect.objectContaining({ message: "Not ours." }));
    expect(() => read("id=")).toThrow(
      expect.objectContaining({
        code: "bad_id",
        message: 'id must be text matching ^[0-9a-f]{4}$ (got "").',
      }),
    );
  });
});
