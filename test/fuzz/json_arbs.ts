// fast-check arbitraries for JSON request bodies: valid bodies, bodies with wrong types,
// missing and extra fields, unicode edge cases, deep nesting and big strings and arrays, and
// byte-level damage (truncation, invalid UTF-8, stray bytes). Sizes are bounded so one case
// stays fast: strings up to ~1 MiB, arrays up to 100k numbers, one rare body past the 4 MiB
// limit. Every arbitrary yields a *recipe* (small data + a lazy builder), never the big bytes.
import fc from "fast-check";

/** Built lazily: (value or text) → bytes at send time. */
export interface BodyRecipe {
  label: string;
  build: () => Buffer;
  /** Status the server must answer when the recipe knows (e.g. valid → 201). */
  expect?: readonly number[];
}

// ---- Strings ----------------------------------------------------------------------------

/** Hand-picked troublemakers: surrogates, NUL, bidi controls, NFD/NFC, case mapping quirks. */
export const UNICODE_EDGES: readonly string[] = [
  "\uD800", // lone high surrogate
  "\uDFFF", // lone low surrogate
  "\uDC00\uD800", // reversed pair
  "\u0000", // NUL
  "a\u0000b",
  "\u200F", // RIGHT-TO-LEFT MARK
  "\u202Eevil", // RIGHT-TO-LEFT OVERRIDE
  "\u2066x\u2069", // isolates
  "\uFEFF", // BOM / ZWNBSP
  "\u200D", // ZERO WIDTH JOINER
  "cafe\u0301", // NFD é
  "caf\u00E9", // NFC é
  "\u212A", // KELVIN SIGN (NFC+lower → "k")
  "\u0130", // İ: lowercases to two code points
  "\u00DF", // ß
  "\uFB03", // ﬃ ligature
  "\uFF41", // fullwidth a
  "\u2028\u2029", // line/paragraph separators
  "\u0085", // NEL (C1)
  "\u007F", // DEL
  "\uFFFE\uFFFF", // noncharacters
  "\u{10FFFF}",
  "\u{1F600}", // emoji
  "\u{1F468}\u200D\u{1F469}\u200D\u{1F467}", // ZWJ sequence
  "a/../b",
  "%2e%2e",
  "a\\b",
  "a\tb\nc\r",
  '"quoted"',
  "[[[[{{{{",
];

const loneSurrogate = fc.integer({ min: 0xd800, max: 0xdfff }).map((cp) => String.fromCharCode(cp));
const anyUnit = fc.oneof(
  { weight: 4, arbitrary: fc.string({ unit: "binary", maxLength: 4 }) },
  { weight: 1, arbitrary: loneSurrogate },
  { weight: 1, arbitrary: fc.constantFrom(...UNICODE_EDGES) },
);

/** Short strings mixing plain ASCII with unicode edge cases. */
export const weirdString: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom(...UNICODE_EDGES),
  fc.string({ unit: anyUnit, maxLength: 12 }).map((parts) => parts),
  fc.string({ maxLength: 20 }),
);

/** A lazily built long string (length is what gets sampled). */
export interface LongString {
  length: number;
  char: string;
}
export const longString: fc.Arbitrary<LongString> = fc.record({
  length: fc.oneof(
    fc.constantFrom(129, 513, 2049, 16_385, 70_000),
    fc.integer({ min: 0, max: 20_000 }),
    fc.integer({ min: 100_000, max: 1_000_000 }),
  ),
  char: fc.constantFrom("x", "é", "\u{1F600}", "/", "\\", '"'),
});
export function materialize(s: LongString): string {
  return s.char.repeat(s.length);
}

// ---- Concept paths ----------------------------------------------------------------------

const segment = fc.stringMatching(/^[a-z0-9_.-]{1,12}$/).filter((s) => s !== "." && s !== "..");
export const validConcept: fc.Arbitrary<string> = fc
  .array(segment, { minLength: 1, maxLength: 4 })
  .map((segs) => `fuzz/${segs.join("/")}`);

export const weirdConcept: fc.Arbitrary<string> = fc.oneof(
  validConcept,
  validConcept.map((c) => c.toUpperCase()),
  validConcept.map((c) => `/${c}/`),
  fc.constantFrom(
    "",
    "/",
    "//",
    "a//b",
    ".",
    "..",
    "a/./b",
    "a/../b",
    "*",
    "a/*",
    "a b",
    "a\u0000b",
  ),
  fc.constantFrom("\u212Aelvin", "CAF\u0045\u0301", "caf\u00e9", "\uFF41bc", "\u0130stanbul"),
  weirdString,
  fc.integer({ min: 15, max: 40 }).map((n) => Array.from({ length: n }, () => "s").join("/")),
  fc.integer({ min: 500, max: 5000 }).map((n) => "a".repeat(n)),
);

// ---- Values -------------------------------------------------------------------------------

/** Arbitrary JSON values, small. */
const smallJson: fc.Arbitrary<unknown> = fc.oneof(
  fc.jsonValue({ maxDepth: 3 }),
  weirdString,
  fc.constantFrom(0, -0, 1e308, -1e308, 5e-324, 2 ** 53, -(2 ** 53) - 2, 0.1),
);

/** Values of the wrong type for any given field. */
export const wrongTypeValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom(null, true, false, 0, -1, 1.5, 2, 1e21, "", "x", [], {}, [1], { a: 1 }),
  weirdString,
  fc.array(weirdString, { maxLength: 3 }),
  fc.dictionary(weirdString, fc.constantFrom(1, "x", null), { maxKeys: 3 }),
);

export interface Nest {
  depth: number;
  kind: "array" | "object" | "mixed";
}
export const nesting: fc.Arbitrary<Nest> = fc.record({
  depth: fc.oneof(
    fc.integer({ min: 1, max: 40 }),
    fc.constantFrom(30, 31, 32, 33, 34),
    fc.integer({ min: 40, max: 5000 }),
    fc.constant(100_000),
  ),
  kind: fc.constantFrom("array", "object", "mixed"),
});
/** Nested JSON text (built as text so depth beyond the JS stack is possible). */
export function nestText(n: Nest, inner = "1"): string {
  const open: string[] = [];
  const close: string[] = [];
  for (let i = 0; i < n.depth; i++) {
    const obj = n.kind === "object" || (n.kind === "mixed" && i % 2 === 1);
    open.push(obj ? '{"k":' : "[");
    close.push(obj ? "}" : "]");
  }
  return open.join("") + inner + close.reverse().join("");
}

// ---- Assertion bodies -------------------------------------------------------------------

export interface AssertionDraft {
  [field: string]: unknown;
}

/** A schema-valid assertion (unique enough that most are new writes). */
export const validAssertion: fc.Arbitrary<AssertionDraft> = fc
  .record(
    {
      concept: validConcept,
      value: smallJson.filter((v) => JSON.stringify(v).length < 2000),
      confidence: fc.double({ min: 0, max: 1, noNaN: true }),
      sources: fc.array(fc.stringMatching(/^[a-z0-9-]{1,20}$/), { maxLength: 4 }),
      valid_from: fc.integer({ min: 0, max: 2_000_000_000_000 }),
      nonce: fc.stringMatching(/^[A-Za-z0-9]{1,16}$/),
    },
    { requiredKeys: ["concept", "value", "confidence"] },
  )
  .map((a) => ({ ...a }));

const FIELDS = ["concept", "value", "confidence", "sources", "valid_from", "valid_to", "nonce"];
const EXTRA_FIELDS = [
  "agent",
  "id",
  "lsn",
  "status",
  "shard",
  "__proto__",
  "constructor",
  "prototype",
  "",
  "assertions",
  "Concept",
];

type Mutation = (a: AssertionDraft) => AssertionDraft;

/** One structural change that (usually) makes the assertion invalid. */
export const assertionMutation: fc.Arbitrary<{ label: string; apply: Mutation }> = fc.oneof(
  fc.record({ field: fc.constantFrom(...FIELDS), v: wrongTypeValue }).map(({ field, v }) => ({
    label: `${field}=${JSON.stringify(v)?.slice(0, 40)}`,
    apply: (a: AssertionDraft) => ({ ...a, [field]: v }),
  })),
  fc.constantFrom(...FIELDS).map((field) => ({
    label: `drop ${field}`,
    apply: (a: AssertionDraft) => {
      const copy = { ...a };
      delete copy[field];
      return copy;
    },
  })),
  fc.record({ field: fc.constantFrom(...EXTRA_FIELDS), v: smallJson }).map(({ field, v }) => ({
    label: `extra ${field}`,
    // defineProperty so "__proto__" becomes an own key that JSON.stringify writes out.
    apply: (a: AssertionDraft) => {
      const copy = { ...a };
      Object.defineProperty(copy, field, { value: v, enumerable: true, writable: true });
      return copy;
    },
  })),
  fc
    .record({ field: fc.constantFrom("concept", "nonce", "value"), s: weirdString })
    .map(({ field, s }) => ({
      label: `${field} unicode ${JSON.stringify(s).slice(0, 30)}`,
      apply: (a: AssertionDraft) => ({ ...a, [field]: s }),
    })),
  weirdConcept.map((c) => ({
    label: `concept ${JSON.stringify(c).slice(0, 40)}`,
    apply: (a: AssertionDraft) => ({ ...a, concept: c }),
  })),
  fc.constantFrom(-1, 1.0000001, -0, 1e-320, 0.5, Number.MAX_VALUE, -Number.MIN_VALUE).map((c) => ({
    label: `confidence ${c}`,
    apply: (a: AssertionDraft) => ({ ...a, confidence: c }),
  })),
  fc
    .record({
      field: fc.constantFrom("valid_from", "valid_to"),
      t: fc.constantFrom(-1, 0.5, 8_640_000_000_000_001, 2 ** 53, 1e300, 1),
    })
    .map(({ field, t }) => ({
      label: `${field}=${t}`,
      apply: (a: AssertionDraft) => ({ ...a, [field]: t }),
    })),
  fc.integer({ min: 0, max: 100 }).map((n) => ({
    label: `${n} sources`,
    apply: (a: AssertionDraft) => ({ ...a, sources: Array.from({ length: n }, (_, i) => `s${i}`) }),
  })),
);

/** An assertion whose text embeds a big string or array somewhere. */
export const bigAssertionText: fc.Arbitrary<BodyRecipe> = fc
  .record({
    base: validAssertion,
    where: fc.constantFrom("value", "concept", "nonce", "source", "array", "extra"),
    big: longString,
    arrayLength: fc.integer({ min: 0, max: 100_000 }),
  })
  .map(({ base, where, big, arrayLength }) => ({
    label: `big ${where} (${where === "array" ? arrayLength : big.length})`,
    build: () => {
      const a: AssertionDraft = { ...base };
      const s = materialize(big);
      if (where === "value") a.value = s;
      else if (where === "concept") a.concept = s;
      else if (where === "nonce") a.nonce = s;
      else if (where === "source") a.sources = [s];
      else if (where === "array") a.value = new Array(arrayLength).fill(7);
      else a.padding = s;
      return Buffer.from(JSON.stringify(a));
    },
  }));

/** Deep nesting in value (the usual place) or in another field. */
export const deepAssertionText: fc.Arbitrary<BodyRecipe> = fc
  .record({
    base: validAssertion,
    nest: nesting,
    field: fc.constantFrom("value", "value", "sources", "concept", "extra"),
  })
  .map(({ base, nest, field }) => ({
    label: `depth ${nest.depth} ${nest.kind} in ${field}`,
    build: () => {
      const { [field]: _dropped, ...rest } = base;
      const name = field === "extra" ? "zz" : field;
      const text = JSON.stringify(rest);
      return Buffer.from(`${text.slice(0, -1)},${JSON.stringify(name)}:${nestText(nest)}}`);
    },
  }));

/** Batches: valid, mixed, empty, oversize, wrong container types. */
export const batchBody: fc.Arbitrary<BodyRecipe> = fc.oneof(
  fc.array(validAssertion, { minLength: 1, maxLength: 30 }).map((items) => ({
    label: `valid batch of ${items.length}`,
    build: () => Buffer.from(JSON.stringify({ assertions: items })),
    expect: [201],
  })),
  fc
    .record({
      items: fc.array(validAssertion, { minLength: 1, maxLength: 10 }),
      bad: assertionMutation,
      at: fc.nat(),
    })
    .map(({ items, bad, at }) => ({
      label: `batch with one ${bad.label}`,
      build: () => {
        const list: unknown[] = [...items];
        const i = at % list.length;
        list[i] = bad.apply(list[i] as AssertionDraft);
        return Buffer.from(JSON.stringify({ assertions: list }));
      },
    })),
  fc.constantFrom(0, 10_000, 10_001, 25_000).map((n) => ({
    label: `batch of ${n} copies`,
    build: () => {
      const one = JSON.stringify({ concept: "fuzz/batch/same", value: n, confidence: 0.5 });
      return Buffer.from(`{"assertions":[${new Array(n).fill(one).join(",")}]}`);
    },
    expect: n === 0 ? [422] : n > 10_000 ? [413] : [201],
  })),
  wrongTypeValue.map((v) => ({
    label: `assertions=${JSON.stringify(v).slice(0, 40)}`,
    build: () => Buffer.from(JSON.stringify({ assertions: v })),
  })),
  fc.record({ a: validAssertion, extra: smallJson }).map(({ a, extra }) => ({
    label: "batch plus single fields",
    build: () => Buffer.from(JSON.stringify({ ...a, assertions: [a], extra })),
  })),
);

/** Top-level bodies that are JSON but not an object. */
export const nonObjectBody: fc.Arbitrary<BodyRecipe> = fc
  .oneof(
    fc.constantFrom("null", "true", "0", '"str"', "[]", "[{}]", "{}", "1e999", "-0"),
    fc.jsonValue({ maxDepth: 2 }).map((v) => JSON.stringify(v)),
  )
  .map((text) => ({ label: `top-level ${text.slice(0, 30)}`, build: () => Buffer.from(text) }));

/** Valid assertions whose contents look dangerous but are legal: must be accepted. */
export const trickyValidBody: fc.Arbitrary<BodyRecipe> = fc
  .record({
    base: validAssertion,
    value: fc.oneof(
      fc.constantFrom('[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["', '\\"}]]]', "{".repeat(200)),
      fc.constantFrom(...UNICODE_EDGES),
      fc.integer({ min: 1, max: 20 }).map((d) => JSON.parse(nestText({ depth: d, kind: "mixed" }))),
    ),
    concept: fc.constantFrom("fuzz/\u212Aelvin", "FUZZ/Upper/Case", "/fuzz/slashes/"),
  })
  .map(({ base, value, concept }) => ({
    label: `tricky valid ${JSON.stringify(value).slice(0, 30)} at ${concept}`,
    build: () => Buffer.from(JSON.stringify({ ...base, value, concept })),
    expect: [201],
  }));

export const assertionBody: fc.Arbitrary<BodyRecipe> = fc.oneof(
  {
    weight: 2,
    arbitrary: validAssertion.map((a) => ({
      label: "valid",
      build: () => Buffer.from(JSON.stringify(a)),
      expect: [201],
    })),
  },
  {
    weight: 6,
    arbitrary: fc
      .record({
        a: validAssertion,
        ms: fc.array(assertionMutation, { minLength: 1, maxLength: 3 }),
      })
      .map(({ a, ms }) => ({
        label: ms.map((m) => m.label).join("; "),
        build: () => Buffer.from(JSON.stringify(ms.reduce((acc, m) => m.apply(acc), a))),
      })),
  },
  { weight: 2, arbitrary: bigAssertionText },
  { weight: 2, arbitrary: deepAssertionText },
  { weight: 2, arbitrary: batchBody },
  { weight: 1, arbitrary: nonObjectBody },
  { weight: 1, arbitrary: trickyValidBody },
);

// ---- API key bodies ---------------------------------------------------------------------

export const apiKeyBody: fc.Arbitrary<BodyRecipe> = fc
  .record(
    {
      role: fc.oneof(fc.constantFrom("agent", "reader", "admin"), wrongTypeValue, weirdString),
      principal: fc.oneof(
        fc.stringMatching(/^[a-zA-Z0-9_.:-]{1,20}$/),
        weirdString,
        fc.integer({ min: 100, max: 5000 }).map((n) => "p".repeat(n)),
        wrongTypeValue,
      ),
      labels: fc.oneof(
        fc.dictionary(fc.stringMatching(/^[a-z]{1,8}$/), fc.string({ maxLength: 10 }), {
          maxKeys: 4,
        }),
        fc.dictionary(weirdString, fc.oneof(weirdString, wrongTypeValue), { maxKeys: 20 }),
        fc
          .integer({ min: 17, max: 40 })
          .map((n) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, "v"]))),
        wrongTypeValue,
      ),
      expires_at: fc.oneof(
        fc.constantFrom(0, 1, -1, 1.5, 8_640_000_000_000_001, 1e300),
        fc.constant(4_102_444_800_000), // 2100-01-01
        wrongTypeValue,
      ),
      extra: smallJson,
    },
    { requiredKeys: [] },
  )
  .map((body) => ({
    label: `api key ${JSON.stringify(body).slice(0, 60)}`,
    build: () => Buffer.from(JSON.stringify(body)),
  }));

// ---- Byte-level damage -----------------------------------------------------------------

export const INVALID_UTF8: readonly number[][] = [
  [0xff],
  [0xfe, 0xff],
  [0x80], // stray continuation
  [0xc0, 0xaf], // overlong "/"
  [0xc0, 0x80], // overlong NUL
  [0xe0, 0x80, 0xaf], // overlong
  [0xed, 0xa0, 0x80], // UTF-16 surrogate encoded (CESU-8)
  [0xf4, 0x90, 0x80, 0x80], // above U+10FFFF
  [0xf8, 0x88, 0x80, 0x80, 0x80], // 5-byte form
  [0xe2, 0x82], // truncated sequence
  [0xc3], // truncated at end
];

type Damage = { label: string; apply: (b: Buffer) => Buffer };
export const damage: fc.Arbitrary<Damage> = fc.oneof(
  fc.nat().map((at) => ({
    label: `truncate@${at}`,
    apply: (b: Buffer) => b.subarray(0, at % Math.max(1, b.length)),
  })),
  fc.record({ at: fc.nat(), bytes: fc.constantFrom(...INVALID_UTF8) }).map(({ at, bytes }) => ({
    label: `invalid utf8 ${bytes.map((x) => x.toString(16)).join(" ")}@${at}`,
    apply: (b: Buffer) => {
      const i = at % (b.length + 1);
      return Buffer.concat([b.subarray(0, i), Buffer.from(bytes), b.subarray(i)]);
    },
  })),
  fc.record({ at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }).map(({ at, byte }) => ({
    label: `set byte ${byte}@${at}`,
    apply: (b: Buffer) => {
      const copy = Buffer.from(b);
      if (copy.length > 0) copy[at % copy.length] = byte;
      return copy;
    },
  })),
  fc.record({ at: fc.nat(), len: fc.integer({ min: 1, max: 8 }) }).map(({ at, len }) => ({
    label: `delete ${len}@${at}`,
    apply: (b: Buffer) => {
      const i = at % (b.length + 1);
      return Buffer.concat([b.subarray(0, i), b.subarray(i + len)]);
    },
  })),
  fc
    .constantFrom(
      "\uFEFF", // BOM before the JSON
      "/* c */",
      ",",
      "garbage",
      "{}",
      "\u0000",
      " \t\r\n",
      "NaN",
    )
    .chain((s) =>
      fc.constantFrom("prefix", "suffix").map((where) => ({
        label: `${where} ${JSON.stringify(s)}`,
        apply: (b: Buffer) =>
          where === "prefix"
            ? Buffer.concat([Buffer.from(s), b])
            : Buffer.concat([b, Buffer.from(s)]),
      })),
    ),
  fc.constantFrom(
    {
      label: "single quotes",
      apply: (b: Buffer) => Buffer.from(b.toString("latin1").replace(/"/g, "'"), "latin1"),
    },
    {
      label: "trailing comma",
      apply: (b: Buffer) => Buffer.from(b.toString("latin1").replace(/}$/, ",}"), "latin1"),
    },
    {
      label: "confidence NaN",
      apply: (b: Buffer) =>
        Buffer.from(
          b.toString("latin1").replace(/"confidence":[^,}]+/, '"confidence":NaN'),
          "latin1",
        ),
    },
    {
      label: "confidence 1e999",
      apply: (b: Buffer) =>
        Buffer.from(
          b.toString("latin1").replace(/"confidence":[^,}]+/, '"confidence":1e999'),
          "latin1",
        ),
    },
    {
      label: "duplicate key",
      apply: (b: Buffer) =>
        Buffer.from(b.toString("latin1").replace(/^\{/, '{"concept":"dup/first",'), "latin1"),
    },
    {
      label: "raw control char in string",
      apply: (b: Buffer) =>
        Buffer.from(b.toString("latin1").replace(/"concept":"/, '"concept":"\u0001'), "latin1"),
    },
    {
      label: "huge integer",
      apply: (b: Buffer) =>
        Buffer.from(
          b.toString("latin1").replace(/"confidence":[^,}]+/, `"confidence":${"9".repeat(400)}`),
          "latin1",
        ),
    },
  ),
);

/** A valid body damaged one to three times: mostly malformed, sometimes still valid. */
export const damagedBody = (base: fc.Arbitrary<BodyRecipe>): fc.Arbitrary<BodyRecipe> =>
  fc
    .record({ base, ds: fc.array(damage, { minLength: 1, maxLength: 3 }) })
    .map(({ base: b, ds }) => ({
      label: `${b.label} | ${ds.map((d) => d.label).join(", ")}`,
      build: () => ds.reduce((acc, d) => d.apply(acc), b.build()),
    }));
