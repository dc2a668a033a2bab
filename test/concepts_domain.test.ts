// Pure parts of concepts: suggest scoring and ranking, and the alias store on a real meta LMDB.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import fc from "fast-check";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  compareScored,
  editSimilarity,
  MIN_SUGGEST_SCORE,
  normalizeSuggestQuery,
  osaDistance,
  osaDistanceBits,
  patternMasks,
  roundScore,
  type ScoredPath,
  SuggestScorer,
  TOKEN_WEIGHT,
  TopK,
  tokenize,
  tokenSimilarity,
} from "../src/domain/concept_suggest.js";
import { MAX_SUGGEST_QUERY_CHARS } from "../src/domain/limits.js";
import { suggestOnShard } from "../src/shard/concept_scan.js";
import { AliasRuleError, AliasStore } from "../src/store/alias_store.js";
import { MetaStore } from "../src/store/meta_store.js";
import { ShardStore, WalRecordKind } from "../src/store/shard_store.js";
import { sampleAssertion } from "./helpers/records.js";

describe("suggest scoring", () => {
  it("counts an adjacent transposition as one edit", () => {
    expect(osaDistance("paris", "pairs", 10)).toBe(1);
    expect(osaDistance("paris", "paris", 10)).toBe(0);
    expect(osaDistance("kitten", "sitting", 10)).toBe(3);
    expect(osaDistance("ca", "abc", 10)).toBe(3); // OSA, not unrestricted Damerau (2)
    expect(osaDistance("", "abc", 10)).toBe(3);
    // Beyond the cutoff it only promises "more than maxDistance".
    expect(osaDistance("aaaaaaaa", "bbbbbbbb", 3)).toBe(4);
  });

  it("bit-parallel distance equals the table for any query of at most 32 characters", () => {
    const text = fc.string({ unit: fc.constantFrom("a", "b", "c", "/", "_", "é"), maxLength: 40 });
    fc.assert(
      fc.property(text, text, (a, b) => {
        const q = a.slice(0, 32);
        expect(osaDistanceBits(patternMasks(q), b)).toBe(osaDistance(q, b, 1000));
      }),
      { numRuns: 2000 },
    );
  });

  it("tokenizes on / _ - . and whitespace, and matches reordered words fully", () => {
    expect(tokenize("Cities/paris_area-km2.v1 x")).toEqual([
      "Cities",
      "paris",
      "area",
      "km2",
      "v1",
      "x",
    ]);
    expect(tokenSimilarity(tokenize("a/b/c"), tokenize("c/a/b"))).toBe(1);
    expect(tokenSimilarity(tokenize("a/b"), tokenize("x/y"))).toBe(0);
  });

  it("ranks a hand-built example: typo > extra letter > reordered > other words > far", () => {
    const scorer = new SuggestScorer("cities/pairs/population");
    const scores = Object.fromEntries(
      [
        "cities/pairs/population",
        "cities/paris/population",
        "cities/paris/populations",
        "population/paris/cities",
        "city/paris/population",
        "cities/london/population",
        "cities/paris/area",
        "hosts/web-1/cpu",
      ].map((c) => [c, scorer.score(c)]),
    );
    expect(scores).toEqual({
      "cities/pairs/population": 1,
      "cities/paris/population": 0.9565, // 1 − 1/23 (one transposition)
      "cities/paris/populations": 0.9167, // 1 − 2/24
      "population/paris/cities": 0.84, // 0.9 × (1 + 0.8 + 1 + 1 + 0.8 + 1) / 6
      "city/paris/population": 0.8261, // 1 − 4/23
      "cities/london/population": 0.75, // 1 − 6/24
      "cities/paris/area": 0.5652, // 1 − 10/23
      "hosts/web-1/cpu": 0, // below the 0.5 floor
    });
  });

  it("scores exactly as the unoptimized definition (no histogram shortcut, no memo)", () => {
    const path = fc.string({
      unit: fc.constantFrom("a", "b", "c", "ab", "/", "_", "-"),
      maxLength: 20,
    });
    fc.assert(
      fc.property(path, fc.array(path, { maxLength: 20 }), (q, candidates) => {
        const norm = normalizeSuggestQuery(q);
        if (!norm.ok) return;
        const scorer = new SuggestScorer(norm.q);
        for (const c of candidates) {
          const edit = editSimilarity(norm.q, c, MIN_SUGGEST_SCORE);
          const best = Math.max(
            edit,
            TOKEN_WEIGHT * tokenSimilarity(tokenize(norm.q), tokenize(c)),
          );
          const expected = best < MIN_SUGGEST_SCORE ? 0 : roundScore(best);
          expect(scorer.score(c), `${norm.q} vs ${c}`).toBe(expected);
        }
      }),
      { numRuns: 500 },
    );
  });

  it("keeps the best k in score-then-path order", () => {
    const top = new TopK<ScoredPath>(3);
    for (const [path, score] of [
      ["d", 0.5],
      ["b", 0.9],
      ["a", 0.9],
      ["c", 0.7],
      ["e", 0.95],
      ["f", 0.1],
    ] as const)
      top.offer({ path, score });
    expect(top.items.map((i) => i.path)).toEqual(["e", "a", "b"]);
    expect(compareScored({ path: "a", score: 1 }, { path: "b", score: 1 })).toBeLessThan(0);
  });

  it("normalizes the query and bounds its length", () => {
    expect(normalizeSuggestQuery(" /Cities/Paris/ ")).toEqual({ ok: true, q: "cities/paris" });
    expect(normalizeSuggestQuery(null)).toMatchObject({ ok: false, code: "missing_query" });
    expect(normalizeSuggestQuery("//")).toMatchObject({ ok: false, code: "missing_query" });
    expect(normalizeSuggestQuery("a".repeat(MAX_SUGGEST_QUERY_CHARS))).toMatchObject({ ok: true });
    expect(normalizeSuggestQuery("a".repeat(MAX_SUGGEST_QUERY_CHARS + 1))).toMatchObject({
      ok: false,
      code: "query_too_long",
    });
  });
});

describe("AliasStore", () => {
  let dir: string;
  let meta: MetaStore;
  let aliases: AliasStore;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "stemedb-"));
    meta = MetaStore.open(dir);
    aliases = AliasStore.open(meta.root);
  });
  afterEach(async () => {
    await meta.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const rule = (p: Promise<unknown>) =>
    p.then(
      () => null,
      (e: unknown) => (e instanceof AliasRuleError ? e.code : e),
    );

  it("creates, resolves, refuses chains and conflicts, and is idempotent", async () => {
    const first = await aliases.create("nyc", "cities/new_york", "admin", 1000);
    expect(first).toEqual({
      created: true,
      record: { alias: "nyc", canonical: "cities/new_york", createdAtMs: 1000, createdBy: "admin" },
    });
    expect(aliases.resolve("nyc")).toBe("cities/new_york");
    expect(aliases.resolve("cities/new_york")).toBe("cities/new_york");
    expect((await aliases.create("nyc", "cities/new_york", "other", 2000)).created).toBe(false);
    expect(await rule(aliases.create("nyc", "cities/boston", "admin"))).toBe("alias_exists");
    expect(await rule(aliases.create("x", "x", "admin"))).toBe("alias_is_canonical");
    expect(await rule(aliases.create("big_apple", "nyc", "admin"))).toBe("alias_chain");
    expect(await rule(aliases.create("cities/new_york", "ny", "admin"))).toBe("alias_chain");
    expect(aliases.size).toBe(1);
  });

  it("resolves a batch without copying when nothing is an alias", async () => {
    const items = [{ concept: "a" }, { concept: "b" }];
    expect(aliases.resolveConcepts(items)).toBe(items);
    await aliases.create("b", "c", "admin");
    expect(aliases.resolveConcepts(items)).toEqual([{ concept: "a" }, { concept: "c" }]);
    expect(items[1]).toEqual({ concept: "b" });
  });

  it("serializes concurrent creates of one alias: exactly one target wins", async () => {
    const outcomes = await Promise.all([
      rule(aliases.create("a", "t1", "admin")),
      rule(aliases.create("a", "t2", "admin")),
    ]);
    expect(outcomes).toEqual([null, "alias_exists"]);
    expect(aliases.resolve("a")).toBe("t1");
  });

  it("pages in path order, deletes, and reloads what was committed", async () => {
    for (const a of ["c", "a", "b"]) await aliases.create(a, `t/${a}`, "admin");
    const p1 = aliases.page(null, 2);
    expect(p1.items.map((r) => r.alias)).toEqual(["a", "b"]);
    expect(p1.more).toBe(true);
    const p2 = aliases.page("b", 2);
    expect(p2).toMatchObject({ more: false });
    expect(p2.items.map((r) => r.alias)).toEqual(["c"]);
    expect((await aliases.remove("b"))?.canonical).toBe("t/b");
    expect(await aliases.remove("b")).toBeNull();
    expect(aliases.isTarget("t/b")).toBe(false);
    await meta.close();
    meta = MetaStore.open(dir);
    aliases = AliasStore.open(meta.root);
    expect([...aliases.aliases()].map((r) => r.alias).sort()).toEqual(["a", "c"]);
    expect(aliases.resolve("c")).toBe("t/c");
    expect(aliases.isTarget("t/a")).toBe(true);
  });
});

describe("suggest scan of one shard", () => {
  it("scores every concept key in chunks and reports a scan cut by its bound", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "stemedb-"));
    const store = ShardStore.open({ dir, shardId: 0 });
    try {
      const concepts = 2_500;
      store.applyBatch(
        Array.from({ length: concepts }, (_, i) => ({
          lsn: i + 1,
          kind: WalRecordKind.AssertionInsert,
          payload: sampleAssertion(i, concepts),
          decoded: {
            id: i.toString(16).padStart(32, "0"),
            concept: `bench/c${i}`,
            agent: "bench-agent",
            active: true,
            supersedes: null,
          },
        })),
      );
      // The chunked scan with a bounded top-k agrees with scoring and sorting everything.
      const scorer = new SuggestScorer("bench/c1243");
      const brute = Array.from({ length: concepts }, (_, i) => `bench/c${i}`)
        .map((p) => ({ path: p, score: scorer.score(p) }))
        .filter((x) => x.score > 0)
        .sort(compareScored);
      const full = await suggestOnShard(store, "bench/c1243", 20, 10_000);
      expect(full).toMatchObject({ scanned: concepts, complete: true });
      expect(full.items).toEqual(brute.slice(0, 20));
      expect(full.items.slice(0, 3)).toEqual([
        { path: "bench/c1243", score: 1 },
        { path: "bench/c1043", score: 0.9091 }, // one substitution in 11 characters
        { path: "bench/c1143", score: 0.9091 },
      ]);
      // Cut by the bound: only the first 1,000 keys (in key order) were scored.
      const cut = await suggestOnShard(store, "bench/c1243", 20, 1_000);
      expect(cut).toMatchObject({ scanned: 1_000, complete: false });
      // A bound equal to the key count scans everything and says so.
      expect(await suggestOnShard(store, "bench/c1243", 1, concepts)).toMatchObject({
        scanned: concepts,
        complete: true,
      });
    } finally {
      await store.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
