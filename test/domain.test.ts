import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  API_KEY_LENGTH,
  defaultPrincipal,
  formatApiKey,
  generateApiKey,
  hashSecretHex,
  isValidPrincipal,
  parseApiKey,
  safeEqual,
} from "../src/domain/api_keys.js";
import { assertionId, isAssertionId } from "../src/domain/assertion_id.js";
import {
  CanonicalJsonError,
  canonicalJson,
  jsonDepth,
  jsonTextDepth,
} from "../src/domain/canonical_json.js";
import {
  canonicalAsIs,
  isInSubtree,
  normalizeConceptPath,
  normalizeConceptPathFully,
  parseConceptQuery,
} from "../src/domain/concept_path.js";
import { MAX_CONCEPT_PATH_BYTES, MAX_CONCEPT_SEGMENTS } from "../src/domain/limits.js";
import {
  conceptHash64,
  jumpConsistentHash,
  SHARD_HASH_NAME,
  shardForConcept,
} from "../src/domain/shard_hash.js";

function norm(raw: string): string {
  const r = normalizeConceptPath(raw);
  if (!r.ok) throw new Error(`expected ok for ${JSON.stringify(raw)}: ${r.message}`);
  return r.path;
}

function normError(raw: string): string {
  const r = normalizeConceptPath(raw);
  if (r.ok) throw new Error(`expected an error for ${JSON.stringify(raw)}, got ${r.path}`);
  expect(r.code).toBe("invalid_concept_path");
  return r.message;
}

describe("normalizeConceptPath", () => {
  it("lowercases and strips one leading and trailing slash", () => {
    expect(norm("Hosts/Web-1/OS")).toBe("hosts/web-1/os");
    expect(norm("/a/b/")).toBe("a/b");
    expect(norm("a_b.c-d/0")).toBe("a_b.c-d/0");
  });

  it("treats NFC and NFD the same (and rejects the non-ASCII letter with its code point)", () => {
    const nfc = "caf\u00e9/menu";
    const nfd = "cafe\u0301/menu";
    expect(nfc).not.toBe(nfd);
    const a = normError(nfc);
    const b = normError(nfd);
    expect(a).toBe(b);
    expect(a).toContain("U+00E9");
    expect(a).toContain("segment 1");
  });

  it("maps compatibility characters that NFC+lowercase turn into ASCII", () => {
    // U+212A KELVIN SIGN is canonically equivalent to "K"; documented in docs/sharding.md.
    expect(norm("\u212Aelvin")).toBe("kelvin");
  });

  it("rejects empty paths and empty segments", () => {
    expect(normError("")).toContain("empty");
    expect(normError("/")).toContain("empty");
    expect(normError("a//b")).toContain("segment 2 is empty");
    expect(normError("//a")).toContain("segment 1 is empty");
    expect(normError("a//")).toContain("segment 2 is empty");
  });

  it("rejects bad characters, naming them", () => {
    expect(normError("a/b c")).toContain("U+0020");
    expect(normError("a/b*")).toContain('"*"');
    expect(normError("a\\b")).toContain('"\\\\"');
    expect(normError("a\u0000b")).toContain("U+0000");
    expect(normError("a/../b")).toContain('".."');
    expect(normError("./b")).toContain('"."');
  });

  it("enforces the segment count", () => {
    const sixteen = Array.from({ length: MAX_CONCEPT_SEGMENTS }, (_, i) => `s${i}`).join("/");
    expect(norm(sixteen)).toBe(sixteen);
    const msg = normError(`${sixteen}/x`);
    expect(msg).toBe("concept path has 17 segments; at most 16 are allowed");
  });

  it("enforces the byte length", () => {
    const ok = `${"a".repeat(255)}/${"b".repeat(256)}`;
    expect(ok.length).toBe(MAX_CONCEPT_PATH_BYTES);
    expect(norm(ok)).toBe(ok);
    expect(normError(`${ok}c`)).toBe("concept path is 513 bytes long; at most 512 are allowed");
    expect(normError("a".repeat(100_000))).toContain("100000 characters");
  });
});

describe("parseConceptQuery", () => {
  it("accepts a trailing /* as a subtree query", () => {
    expect(parseConceptQuery("Hosts/*")).toEqual({ ok: true, path: "hosts", subtree: true });
    expect(parseConceptQuery("hosts/web")).toEqual({ ok: true, path: "hosts/web", subtree: false });
    expect(parseConceptQuery("/hosts/web/*")).toEqual({
      ok: true,
      path: "hosts/web",
      subtree: true,
    });
  });

  it("rejects a bare * and * elsewhere", () => {
    for (const bad of ["*", "/*", "a/*/b", "a*", "a//*", "a/*/"]) {
      expect(parseConceptQuery(bad).ok, bad).toBe(false);
    }
  });

  it("isInSubtree is segment-aware", () => {
    expect(isInSubtree("a/b", "a/b")).toBe(true);
    expect(isInSubtree("a/b/c", "a/b")).toBe(true);
    expect(isInSubtree("a/bc", "a/b")).toBe(false);
  });
});

// BigInt reference implementations, straight from the definitions.
const MASK64 = (1n << 64n) - 1n;
function fnvRef(s: string): bigint {
  let h = 0xcbf29ce484222325n;
  for (const b of new TextEncoder().encode(s)) {
    h ^= BigInt(b);
    h = (h * 0x100000001b3n) & MASK64;
  }
  return h;
}
function jumpRef(key0: bigint, n: number): number {
  let key = key0;
  let b = -1n;
  let j = 0n;
  while (j < BigInt(n)) {
    b = j;
    key = (key * 2862933555777941757n + 1n) & MASK64;
    j = BigInt(Math.floor(Number(b + 1n) * (2 ** 31 / Number((key >> 33n) + 1n))));
  }
  return Number(b);
}
function jumpBig(key: bigint, n: number): number {
  return jumpConsistentHash(Number(key >> 32n), Number(key & 0xffffffffn), n);
}

describe("shard hash", () => {
  it("has a stable name", () => {
    expect(SHARD_HASH_NAME).toBe("fnv1a64-jump-v1");
  });

  it("matches published FNV-1a 64 vectors", () => {
    expect(conceptHash64("")).toBe(0xcbf29ce484222325n);
    expect(conceptHash64("a")).toBe(0xaf63dc4c8601ec8cn);
    expect(conceptHash64("foobar")).toBe(0x85944171f73967e8n);
  });

  it("matches published Jump Consistent Hash vectors (ClickHouse, jump-consistent-hash)", () => {
    expect(jumpBig(1n, 1)).toBe(0);
    expect(jumpBig(42n, 57)).toBe(43);
    expect(jumpBig(256n, 1024)).toBe(520);
    expect(jumpBig(3735883980n, 1)).toBe(0);
    expect(jumpBig(3735883980n, 666)).toBe(361);
    expect(jumpBig(16045690984833335023n, 255)).toBe(237);
    expect(jumpBig(1n, 60)).toBe(55);
    expect(jumpBig(2n, 60)).toBe(46);
  });

  it("pins concept → shard placements (a change here moves data: bump SHARD_HASH_NAME)", () => {
    const pinned: Array<[string, bigint, number[]]> = [
      ["hosts/web-1/os", 0xc92c8f4c4418b41en, [0, 1, 1, 1, 1, 72]],
      ["a/b/c", 0x9ef3e9bc4337feebn, [0, 0, 0, 4, 10, 236]],
      ["agents/alpha.v2/trust", 0x588d97456db1da67n, [0, 0, 0, 4, 4, 4]],
    ];
    for (const [path, hash, shards] of pinned) {
      expect(conceptHash64(path)).toBe(hash);
      expect([1, 2, 4, 8, 16, 256].map((n) => shardForConcept(path, n))).toEqual(shards);
    }
  });

  it("agrees with the BigInt reference on many inputs, ASCII and not", () => {
    let seed = 12345;
    const rnd = () => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed;
    };
    for (let i = 0; i < 2000; i++) {
      const s = `${rnd().toString(36)}/x${i}${i % 7 === 0 ? "/é" : ""}`;
      const h = fnvRef(s);
      expect(conceptHash64(s)).toBe(h);
      for (const n of [1, 3, 4, 16, 256]) expect(shardForConcept(s, n)).toBe(jumpRef(h, n));
      const k = (BigInt(rnd()) << 32n) | BigInt(rnd());
      expect(jumpBig(k, 1000)).toBe(jumpRef(k, 1000));
    }
  });

  it("spreads concepts evenly over 4 shards", () => {
    const counts = [0, 0, 0, 0];
    const n = 20_000;
    for (let i = 0; i < n; i++) {
      const s = shardForConcept(`hosts/host-${i}/metric`, 4);
      counts[s] = (counts[s] ?? 0) + 1;
    }
    for (const c of counts) {
      expect(c).toBeGreaterThan(n / 4 - n * 0.02);
      expect(c).toBeLessThan(n / 4 + n * 0.02);
    }
  });

  it("moves only ~1/(n+1) of keys when a shard is added", () => {
    let moved = 0;
    const n = 10_000;
    for (let i = 0; i < n; i++) {
      const p = `c/${i}`;
      const a = shardForConcept(p, 4);
      const b = shardForConcept(p, 5);
      if (a !== b) {
        moved++;
        expect(b).toBe(4);
      }
    }
    expect(moved / n).toBeGreaterThan(0.15);
    expect(moved / n).toBeLessThan(0.25);
  });

  it("rejects bad shard counts", () => {
    expect(() => shardForConcept("a", 0)).toThrow(RangeError);
    expect(() => shardForConcept("a", 1.5)).toThrow(RangeError);
    expect(() => shardForConcept("a", 257)).toThrow(RangeError);
  });
});

describe("canonicalJson", () => {
  it("sorts keys recursively and drops whitespace", () => {
    expect(canonicalJson({ b: 1, a: [true, null, { d: "x", c: -0 }] })).toBe(
      '{"a":[true,null,{"c":0,"d":"x"}],"b":1}',
    );
    expect(canonicalJson(JSON.parse('{"z":1.50,"y":1e3}'))).toBe('{"y":1000,"z":1.5}');
    expect(canonicalJson("é\u2028")).toBe(JSON.stringify("é\u2028"));
  });

  it("rejects non-JSON values with their location", () => {
    const bad: unknown[] = [
      undefined,
      () => 1,
      Symbol("x"),
      1n,
      Number.NaN,
      Infinity,
      new Date(0),
      new Map(),
    ];
    for (const v of bad) expect(() => canonicalJson(v)).toThrow(CanonicalJsonError);
    try {
      canonicalJson({ a: [1, { b: undefined }] });
      throw new Error("unreachable");
    } catch (e) {
      expect((e as CanonicalJsonError).path).toBe("/a/1/b");
    }
    // biome-ignore lint/suspicious/noSparseArray: testing holes on purpose
    expect(() => canonicalJson([1, , 3])).toThrow(/sparse/);
  });

  it("bounds depth and survives cycles", () => {
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(() => canonicalJson(cyclic)).toThrow(/deeper/);
    let deep: unknown = 1;
    for (let i = 0; i < 32; i++) deep = [deep];
    expect(() => canonicalJson(deep)).not.toThrow();
    expect(() => canonicalJson([deep])).toThrow(/deeper than 32/);
  });

  it("jsonDepth and jsonTextDepth agree", () => {
    for (const v of [1, [], {}, [[1]], { a: [{ b: {} }] }, "[[["]) {
      expect(jsonTextDepth(JSON.stringify(v), 100)).toBe(jsonDepth(v));
    }
    expect(jsonDepth([[1]])).toBe(2);
    expect(jsonTextDepth("[".repeat(1_000_000), 32)).toBe(33);
    expect(jsonTextDepth('["[[[\\"[["]', 32)).toBe(1);
    const cyclic: unknown[] = [];
    cyclic.push(cyclic);
    expect(jsonDepth(cyclic, 10)).toBe(11);
  });
});

describe("canonicalAsIs (the fast path)", () => {
  it("accepts only what the full rules leave unchanged", () => {
    const alphabet = ["a", "z", "Z", "0", "9", "_", ".", "-", "/", "*", " ", "é", "\u212a", "ß"];
    fc.assert(
      fc.property(fc.array(fc.constantFrom(...alphabet), { maxLength: 24 }), (chars) => {
        const raw = chars.join("");
        const full = normalizeConceptPathFully(raw);
        const fast = canonicalAsIs(raw);
        if (fast !== null) expect(full).toEqual({ ok: true, path: raw });
        expect(normalizeConceptPath(raw)).toEqual(full);
      }),
      { numRuns: 5000, seed: 42 },
    );
    expect(canonicalAsIs("hosts/web-1/os")).toBe("hosts/web-1/os");
    for (const notAsIs of ["/a", "a/", "a//b", "A", "a/./b", "a/..", "", "a b"])
      expect(canonicalAsIs(notAsIs)).toBeNull();
  });
});

describe("assertionId", () => {
  const base = {
    agent: "agent-1",
    concept: "hosts/web-1/os",
    valueJson: canonicalJson({ name: "debian", version: 12 }),
    confidence: 0.9,
    sources: ["src-1"],
    validFromMs: 1_700_000_000_000,
    validToMs: null,
    nonce: null,
  };

  it("matches the v1 serialization computed independently (Python hashlib)", () => {
    // Pinned: a change here changes every future id and breaks retry de-duplication.
    expect(assertionId(base)).toBe("26c78405c9ab224cca6ea7a72b3bc14c");
  });

  it("is 32 lowercase hex and deterministic", () => {
    const id = assertionId(base);
    expect(id).toMatch(/^[0-9a-f]{32}$/);
    expect(isAssertionId(id)).toBe(true);
    expect(assertionId({ ...base })).toBe(id);
    expect(assertionId({ ...base, validToMs: undefined, nonce: undefined })).toBe(id);
    // Pinned: a change here breaks retry de-duplication across an upgrade.
    expect(id).toBe("26c78405c9ab224cca6ea7a72b3bc14c");
  });

  it("changes with every field, and nonce makes a distinct id", () => {
    const id = assertionId(base);
    const variants = [
      { agent: "agent-2" },
      { concept: "hosts/web-1" },
      { valueJson: '{"name":"debian","version":13}' },
      { confidence: 0.8 },
      { sources: [] },
      { sources: ["src-1", "src-2"] },
      { validFromMs: null },
      { validToMs: 1_800_000_000_000 },
      { nonce: "n1" },
      { nonce: "" },
    ];
    const seen = new Set([id]);
    for (const v of variants) {
      const other = assertionId({ ...base, ...v });
      expect(seen.has(other), JSON.stringify(v)).toBe(false);
      seen.add(other);
    }
    expect(assertionId({ ...base, nonce: "n1" })).toBe(assertionId({ ...base, nonce: "n1" }));
  });

  it("is unambiguous across field boundaries", () => {
    const a = assertionId({ ...base, agent: "ab", concept: "c" });
    const b = assertionId({ ...base, agent: "a", concept: "bc" });
    expect(a).not.toBe(b);
    const c = assertionId({ ...base, sources: ["a", "b"] });
    const d = assertionId({ ...base, sources: ["ab"] });
    expect(c).not.toBe(d);
    expect(assertionId({ ...base, confidence: -0 })).toBe(assertionId({ ...base, confidence: 0 }));
  });

  it("rejects non-finite numbers", () => {
    expect(() => assertionId({ ...base, confidence: Number.NaN })).toThrow(TypeError);
    expect(() => assertionId({ ...base, validToMs: Infinity })).toThrow(TypeError);
  });
});

describe("api key format", () => {
  it("generates keys that parse back", () => {
    for (let i = 0; i < 200; i++) {
      const { key, keyId, secret } = generateApiKey();
      expect(key.length).toBe(API_KEY_LENGTH);
      expect(key).toMatch(/^stm_[a-z2-7]{12}_[A-Za-z0-9_-]{43}$/);
      expect(parseApiKey(key)).toEqual({ keyId, secret });
    }
  });

  it("rejects malformed keys without throwing", () => {
    const { key } = generateApiKey();
    const bad = [
      "",
      "stm_",
      key.slice(0, -1),
      `${key}x`,
      key.replace("stm_", "stx_"),
      key.toUpperCase(),
      `stm_${"A".repeat(12)}_${"a".repeat(43)}`,
    ];
    for (const b of bad) expect(parseApiKey(b), b).toBeNull();
    expect(parseApiKey(formatApiKey("abcdefghijkl", "_".repeat(43)))).toEqual({
      keyId: "abcdefghijkl",
      secret: "_".repeat(43),
    });
  });

  it("safeEqual compares in constant time and tolerates different lengths", () => {
    const a = Buffer.from("abc");
    expect(safeEqual(a, Buffer.from("abc"))).toBe(true);
    expect(safeEqual(a, Buffer.from("abd"))).toBe(false);
    expect(() => safeEqual(a, Buffer.from("abcd"))).not.toThrow();
    expect(safeEqual(a, Buffer.from("abcd"))).toBe(false);
    expect(safeEqual(Buffer.alloc(0), Buffer.from("x"))).toBe(false);
    expect(safeEqual(Buffer.alloc(0), Buffer.alloc(0))).toBe(true);
  });

  it("hashes secrets with SHA-256 and validates principals", () => {
    expect(hashSecretHex("abc")).toBe(
      "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    );
    expect(defaultPrincipal("agent", "abcdefghijkl")).toBe("agent-abcdefghijkl");
    expect(isValidPrincipal("agent:alpha.v2_x-1")).toBe(true);
    expect(isValidPrincipal("")).toBe(false);
    expect(isValidPrincipal("a b")).toBe(false);
    expect(isValidPrincipal("a".repeat(129))).toBe(false);
  });
});
