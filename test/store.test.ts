import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import * as flatbuffers from "flatbuffers";
import { open } from "lmdb";
import { afterEach, describe, expect, it } from "vitest";
import { renderAssertion } from "../src/shard/render.js";
import {
  type AssertionRecord,
  assertionView,
  createString,
  decodeAssertion,
  encodeAssertion,
  recordFromView,
  scratchAssertionView,
  setRecordLsn,
  setRecordStatus,
} from "../src/store/assertion_codec.js";
import { RECORD_CACHE_ENTRIES, rememberRecord } from "../src/store/record_cache.js";
import {
  type ApplyEntry,
  InvalidCursorError,
  ShardStore,
  WalRecordKind,
} from "../src/store/shard_store.js";

const SHARD = 3;
const tempDirs: string[] = [];
const openStores: ShardStore[] = [];

function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "stemedb-"));
  tempDirs.push(dir);
  return dir;
}

function openStore(dir: string, shardId = SHARD): ShardStore {
  const s = ShardStore.open({ dir, shardId, mapSizeBytes: 64 * 1024 * 1024 });
  openStores.push(s);
  return s;
}

afterEach(async () => {
  for (const s of openStores.splice(0)) await s.close();
  for (const d of tempDirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

function hexId(n: number): string {
  return n.toString(16).padStart(32, "0");
}

function rec(n: number, over: Partial<AssertionRecord> = {}): AssertionRecord {
  return {
    id: hexId(n),
    concept: "a/b",
    agent: "agent-1",
    valueJson: `{"n":${n}}`,
    confidence: 0.5,
    sources: [],
    validFromMs: null,
    validToMs: null,
    nonce: null,
    recordedAtMs: 1_700_000_000_000 + n,
    epoch: 0,
    shard: SHARD,
    lsn: n,
    status: "active",
    supersedes: null,
    supersededBy: null,
    authorTrust: 0.5,
    quarantineReason: null,
    ...over,
  };
}

function entry(r: AssertionRecord): ApplyEntry {
  return { lsn: r.lsn, kind: WalRecordKind.AssertionInsert, payload: encodeAssertion(r) };
}

describe("assertion codec", () => {
  it("round-trips every field, including unicode and non-null optionals", () => {
    const r = rec(42, {
      concept: "geo/zürich/population",
      agent: "agent-ünïcødé-🚀",
      valueJson: '{"name":"Zürich 🏔","v":[1,2.5,null]}',
      confidence: 0.123456789,
      sources: ["src-1", "源-2", ""],
      validFromMs: 0, // 0 is a value, not "absent"
      validToMs: 1_800_000_000_000,
      nonce: "n-ø",
      recordedAtMs: 1_712_345_678_901,
      epoch: 0xffff_ffff,
      lsn: Number.MAX_SAFE_INTEGER,
      status: "quarantined",
      supersedes: hexId(1),
      supersededBy: hexId(2),
    });
    expect(decodeAssertion(encodeAssertion(r))).toEqual(r);
  });

  it("writes strings byte for byte as flatbuffers' own createString does", () => {
    for (const s of ["", "a", "hosts/web-1/os", "x".repeat(300), "zürich", "🚀", "a\u0000b"]) {
      const ours = new flatbuffers.Builder(16);
      ours.finish(createString(ours, s));
      const theirs = new flatbuffers.Builder(16);
      theirs.finish(theirs.createString(s));
      expect(Buffer.from(ours.asUint8Array()).equals(Buffer.from(theirs.asUint8Array()))).toBe(
        true,
      );
    }
  });

  it("round-trips null optionals and empty strings distinctly", () => {
    const r = rec(7);
    expect(decodeAssertion(encodeAssertion(r))).toEqual(r);
    const withEmpty = rec(8, { nonce: "", supersedes: "" });
    expect(decodeAssertion(encodeAssertion(withEmpty))).toEqual(withEmpty);
  });

  it("returns independent copies from the shared builder", () => {
    const a = encodeAssertion(rec(1));
    const b = encodeAssertion(rec(2, { concept: "x/y" }));
    expect(decodeAssertion(a).id).toBe(hexId(1));
    expect(decodeAssertion(b).concept).toBe("x/y");
  });

  it("patches lsn and status in place", () => {
    const bytes = encodeAssertion(rec(5, { lsn: 0 }));
    const len = bytes.length;
    setRecordLsn(bytes, 987_654_321_012);
    setRecordStatus(bytes, "superseded");
    expect(bytes.length).toBe(len);
    const back = decodeAssertion(bytes);
    expect(back.lsn).toBe(987_654_321_012);
    expect(back.status).toBe("superseded");
    expect(assertionView(bytes).lsn()).toBe(987_654_321_012n);
    expect(back.valueJson).toBe('{"n":5}');
  });

  it("reads the same through the reused view, which follows the last bytes given", () => {
    const a = encodeAssertion(rec(1, { concept: "größe/日本", agent: "agent-ü", lsn: 0 }));
    const b = encodeAssertion(rec(2, { concept: "x/y" }));
    setRecordLsn(a, Number.MAX_SAFE_INTEGER);
    const expected = recordFromView(assertionView(a));
    expect(expected.lsn).toBe(Number.MAX_SAFE_INTEGER);
    expect(recordFromView(scratchAssertionView(a))).toEqual(expected);
    const view = scratchAssertionView(b);
    expect(view.concept()).toBe("x/y");
    expect(scratchAssertionView(a)).toBe(view); // one object: valid until the next call
    expect(view.concept()).toBe("größe/日本");
  });

  it("rejects unsafe integers", () => {
    expect(() => encodeAssertion(rec(1, { lsn: 2 ** 60 }))).toThrow(RangeError);
    expect(() => setRecordLsn(encodeAssertion(rec(1)), -1)).toThrow(RangeError);
  });
});

describe("ShardStore", () => {
  it("applies a batch and serves point reads", () => {
    const s = openStore(tempDir());
    const r1 = rec(1);
    const r2 = rec(2, { valueJson: '{"n":"two"}', sources: ["s1"] });
    s.applyBatch([entry(r1), entry(r2)]);
    expect(s.appliedLsn).toBe(2);
    expect(s.has(r1.id)).toBe(true);
    expect(s.has(hexId(99))).toBe(false);
    expect(s.getAssertion(r2.id)).toEqual(r2);
    expect(s.getAssertion(hexId(99))).toBeUndefined();
    expect(s.withAssertion(r2.id, (v) => [v.valueJson(), v.sources(0)])).toEqual([
      '{"n":"two"}',
      "s1",
    ]);
    expect(s.withAssertion(hexId(99), () => 1)).toBeUndefined();
    expect(s.latest("a/b")).toEqual(r2);
    expect(s.latest("nope")).toBeUndefined();
    expect(s.stats()).toMatchObject({ records: 2, concepts: 1, appliedLsn: 2 });
    expect(s.stats().mapSizeBytes).toBeGreaterThanOrEqual(64 * 1024 * 1024);
  });

  it("shares one frozen decoded copy per record, renders it once, and bounds the copies kept", () => {
    const s = openStore(tempDir());
    const r2 = rec(2, { sources: ["s1", "s2"] });
    s.applyBatch([entry(rec(1)), entry(r2)]);
    const first = s.getAssertion(r2.id);
    expect(first).toEqual(r2);
    expect(s.getAssertion(r2.id)).toBe(first);
    expect(Object.isFrozen(first)).toBe(true);
    expect(Object.isFrozen(first?.sources)).toBe(true);
    const json = renderAssertion(first as AssertionRecord);
    // The same text as an unshared copy's, and the identical string on the next render.
    expect(json).toBe(renderAssertion({ ...r2, sources: [...r2.sources] }));
    expect(renderAssertion(first as AssertionRecord)).toBe(json);
    expect(JSON.parse(json)).toMatchObject({ id: r2.id, sources: ["s1", "s2"], lsn: 2 });

    const cache = new Map<number, AssertionRecord>();
    for (let lsn = 1; lsn <= RECORD_CACHE_ENTRIES + 2; lsn++) rememberRecord(cache, lsn, rec(lsn));
    expect(cache.size).toBe(RECORD_CACHE_ENTRIES);
    expect(cache.has(1) || cache.has(2)).toBe(false); // the oldest go first
    expect(cache.get(RECORD_CACHE_ENTRIES + 2)?.lsn).toBe(RECORD_CACHE_ENTRIES + 2);
  });

  it("stores payload bytes as-is and serves large records", () => {
    const s = openStore(tempDir());
    const big = rec(1, { valueJson: JSON.stringify({ blob: "x".repeat(200_000) }) });
    const e = entry(big);
    const stored = e.payload.slice();
    s.applyBatch([e, entry(rec(2))]);
    e.payload.fill(0); // the store must have copied the bytes inside the transaction
    expect(s.getAssertion(big.id)).toEqual(big);
    expect(s.withAssertion(big.id, (v) => v.valueJson()?.length)).toBe(big.valueJson.length);
    const same = s.withAssertion(big.id, (v) => {
      const bytes = v.bb?.bytes().subarray(0, stored.length);
      return bytes !== undefined && Buffer.from(stored).equals(bytes);
    });
    expect(same).toBe(true);
  });

  it("latest tracks the newest active assertion only", () => {
    const s = openStore(tempDir());
    s.applyBatch([entry(rec(1)), entry(rec(2, { status: "quarantined" }))]);
    expect(s.latest("a/b")?.id).toBe(hexId(1));
    s.applyBatch([entry(rec(3))]);
    expect(s.latest("a/b")?.id).toBe(hexId(3));
  });

  it("pages history and byAgent newest first with cursors", () => {
    const s = openStore(tempDir());
    const batch: ApplyEntry[] = [];
    for (let n = 1; n <= 25; n++) {
      batch.push(entry(rec(n, { agent: n % 2 === 0 ? "even" : "odd", concept: "c/x" })));
    }
    batch.push(entry(rec(26, { concept: "c/xy", agent: "odd" })));
    s.applyBatch(batch);

    const seen: number[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const page = s.history("c/x", { limit: 10, cursor });
      seen.push(...page.items.map((r) => r.lsn));
      cursor = page.nextCursor;
      pages++;
    } while (cursor !== null && pages < 10);
    expect(pages).toBe(3);
    expect(seen).toEqual(Array.from({ length: 25 }, (_, i) => 25 - i));

    const exact = s.history("c/x", { limit: 25 });
    expect(exact.items).toHaveLength(25);
    expect(exact.nextCursor).toBeNull();

    const p1 = s.byAgent("odd", { limit: 5 });
    expect(p1.items.map((r) => r.lsn)).toEqual([26, 25, 23, 21, 19]);
    const p2 = s.byAgent("odd", { limit: 100, cursor: p1.nextCursor });
    expect(p2.items.map((r) => r.lsn)).toEqual([17, 15, 13, 11, 9, 7, 5, 3, 1]);
    expect(p2.nextCursor).toBeNull();
    expect(s.byAgent("nobody", { limit: 5 })).toEqual({ items: [], nextCursor: null });
  });

  it("latestUnder covers the concept and its subtree, not sibling prefixes", () => {
    const s = openStore(tempDir());
    const concepts = ["a/b", "a/b/c", "a/b/c/d", "a/b/z", "a/bc", "a/b-x", "a/b.y", "a", "b/a"];
    s.applyBatch(concepts.map((concept, i) => entry(rec(i + 1, { concept }))));
    // a newer non-active assertion must not hide the active one
    s.applyBatch([entry(rec(20, { concept: "a/b/c", status: "retracted" }))]);

    const all = s.latestUnder("a/b", { limit: 100 });
    expect(all.items.map((r) => r.concept)).toEqual(["a/b", "a/b/c", "a/b/c/d", "a/b/z"]);
    expect(all.items[1]?.lsn).toBe(2);
    expect(all.nextCursor).toBeNull();

    const got: string[] = [];
    let cursor: string | null = null;
    for (let i = 0; i < 10; i++) {
      const page = s.latestUnder("a/b", { limit: 1, cursor });
      got.push(...page.items.map((r) => r.concept));
      cursor = page.nextCursor;
      if (cursor === null) break;
    }
    expect(got).toEqual(["a/b", "a/b/c", "a/b/c/d", "a/b/z"]);

    expect(s.latestUnder("a/b/c", { limit: 10 }).items.map((r) => r.concept)).toEqual([
      "a/b/c",
      "a/b/c/d",
    ]);
    expect(s.latestUnder("a/bc", { limit: 10 }).items.map((r) => r.concept)).toEqual(["a/bc"]);
    expect(s.latestUnder("", { limit: 100 }).items).toHaveLength(concepts.length);
    expect(s.latestUnder("zzz", { limit: 10 }).items).toEqual([]);
  });

  it("keeps state and appliedLsn across close and reopen", async () => {
    const dir = tempDir();
    const s = openStore(dir);
    s.applyBatch([entry(rec(1)), entry(rec(2, { concept: "q/r" }))]);
    await s.close();
    await s.close(); // idempotent
    expect(() => s.has(hexId(1))).toThrow(/closed/);

    const again = openStore(dir);
    expect(again.appliedLsn).toBe(2);
    expect(again.getAssertion(hexId(2))).toEqual(rec(2, { concept: "q/r" }));
    expect(again.latest("a/b")?.id).toBe(hexId(1));
    expect(again.stats()).toMatchObject({ records: 2, concepts: 2, appliedLsn: 2 });
    again.applyBatch([entry(rec(3))]);
    expect(again.appliedLsn).toBe(3);
  });

  it("refuses to open another shard's environment", async () => {
    const dir = tempDir();
    await openStore(dir).close();
    expect(() => ShardStore.open({ dir, shardId: SHARD + 1 })).toThrow(/shard/);
  });

  it("skips ids already present (idempotent replay) but advances appliedLsn", () => {
    const s = openStore(tempDir());
    const batch = [1, 2, 3].map((n) => entry(rec(n)));
    s.applyBatch(batch);
    const before = s.history("a/b", { limit: 100 });
    // The same assertions arriving again under new LSNs (e.g. a retried write that raced
    // its first copy into the WAL): payload bytes equal except for the patched lsn.
    const replay = batch.map((e, i) => {
      const payload = e.payload.slice();
      setRecordLsn(payload, 10 + i);
      return { lsn: 10 + i, kind: e.kind, payload };
    });
    s.applyBatch(replay);
    expect(s.appliedLsn).toBe(12);
    expect(s.stats().records).toBe(3);
    expect(s.history("a/b", { limit: 100 })).toEqual(before);
    expect(s.getAssertion(hexId(2))?.lsn).toBe(2);
    // A duplicate inside one batch is skipped too.
    const dup = rec(30);
    const dupAgain = encodeAssertion(dup);
    setRecordLsn(dupAgain, 31);
    s.applyBatch([entry(dup), { lsn: 31, kind: WalRecordKind.AssertionInsert, payload: dupAgain }]);
    expect(s.stats().records).toBe(4);
  });

  it("rejects non-increasing lsns, unknown kinds and mismatched payloads atomically", () => {
    const s = openStore(tempDir());
    const batch = [entry(rec(1)), entry(rec(2))];
    s.applyBatch(batch);
    expect(() => s.applyBatch(batch)).toThrow(RangeError); // same batch again: lsn <= applied
    expect(() => s.applyBatch([entry(rec(5)), entry(rec(4))])).toThrow(RangeError);
    expect(() => s.applyBatch([entry(rec(6)), entry(rec(6))])).toThrow(RangeError);
    expect(() => s.applyBatch([{ lsn: 7, kind: 99, payload: encodeAssertion(rec(7)) }])).toThrow(
      /unknown WAL record kind/,
    );
    // payload lsn disagrees with the entry: the whole batch is rolled back
    expect(() => s.applyBatch([entry(rec(8)), { ...entry(rec(9)), lsn: 10 }])).toThrow(/says lsn/);
    expect(() => s.applyBatch([entry(rec(11, { shard: SHARD + 1 }))])).toThrow(/shard/);
    expect(s.appliedLsn).toBe(2);
    expect(s.has(hexId(8))).toBe(false);
    expect(s.stats().records).toBe(2);
  });

  it("lands an async apply only on top of the one before it (apply chain)", async () => {
    const dir = tempDir();
    const s = openStore(dir);
    await s.applyBatchAsync([entry(rec(1)), entry(rec(2))]);
    expect(s.appliedLsn).toBe(2);
    // Move the chain as a commit the store does not know about would (for instance a
    // predecessor whose commit failed leaves it behind): the next apply must not land.
    const env = open({ path: dir, maxDbs: 32 });
    const chain = env.openDB<number, string>({
      name: "apply_chain",
      encoding: "ordered-binary",
      useVersions: true,
    });
    expect(chain.getEntry("chain")?.version).toBe(2);
    env.transactionSync(() => {
      chain.put("chain", 0, 99);
    });
    await expect(s.applyBatchAsync([entry(rec(3)), entry(rec(4))])).rejects.toThrow(
      /after LSN 2 skipped/,
    );
    expect(s.has(hexId(3))).toBe(false);
    // Once one apply failed, the store refuses more, and checkpoints (WAL stays whole).
    expect(() => s.applyBatchAsync([entry(rec(5))])).toThrow(/skipped/);
    await expect(s.checkpoint()).rejects.toThrow(/skipped/);
    await s.close();
    // Reopened, LMDB says what it holds (2) and the chain follows it: replay can go on.
    const again = openStore(dir);
    expect(again.appliedLsn).toBe(2);
    await again.applyBatchAsync([entry(rec(3)), entry(rec(4))]);
    expect(again.getAssertion(hexId(4))?.lsn).toBe(4);
  });

  it("keys records by LSN with an id index, and refuses an env of store format 1", async () => {
    const dir = tempDir();
    const s = openStore(dir);
    s.applyBatch([entry(rec(7)), entry(rec(0xab))]);
    // Ids are looked up through `ids`; anything but 32 lowercase hex digits names nothing.
    expect(s.assertionLsn(hexId(0xab))).toBe(0xab);
    expect(s.getAssertion(hexId(0xab))?.id).toBe(hexId(0xab));
    expect(s.getAssertion(hexId(0xab).toUpperCase())).toBeUndefined();
    expect(s.has("not-an-id")).toBe(false);
    expect(s.idsAfter(null, 10)).toEqual([hexId(7), hexId(0xab)]);
    expect(s.idsAfter(hexId(7), 10)).toEqual([hexId(0xab)]);
    await s.close();
    openStores.length = 0;
    const env = open({ path: dir, maxDbs: 32 });
    const records = env.openDB<Buffer, number>({ name: "records", encoding: "binary" });
    expect(decodeAssertion(records.get(0xab) as Buffer).id).toBe(hexId(0xab));
    const meta = env.openDB<number, string>({ name: "meta", encoding: "ordered-binary" });
    env.transactionSync(() => {
      meta.put("format_version", 1);
    });
    await env.close();
    expect(() => openStore(dir)).toThrow(
      /store format 1 unsupported \(want 3\).*new data directory/,
    );
  });

  it("checkpoint resolves with appliedLsn", async () => {
    const s = openStore(tempDir());
    expect(await s.checkpoint()).toBe(0);
    s.applyBatch([entry(rec(1)), entry(rec(2))]);
    expect(await s.checkpoint()).toBe(2);
  });

  it("validates limits and cursors", () => {
    const s = openStore(tempDir());
    s.applyBatch([1, 2, 3].map((n) => entry(rec(n))));
    expect(() => s.history("a/b", { limit: 0 })).toThrow(RangeError);
    expect(() => s.history("a/b", { limit: 1001 })).toThrow(RangeError);
    expect(() => s.history("a/b", { limit: 1.5 })).toThrow(RangeError);
    const good = s.history("a/b", { limit: 1 }).nextCursor;
    expect(good).not.toBeNull();
    const bad = [
      "!!!",
      "bm90IGpzb24",
      Buffer.from("[1,2]").toString("base64url"),
      "x".repeat(5000),
    ];
    for (const cursor of bad) {
      expect(() => s.history("a/b", { limit: 1, cursor })).toThrow(InvalidCursorError);
    }
    // a cursor is bound to its query kind and scope
    expect(() => s.history("a/c", { limit: 1, cursor: good })).toThrow(InvalidCursorError);
    expect(() => s.byAgent("a/b", { limit: 1, cursor: good })).toThrow(InvalidCursorError);
    expect(() => s.latestUnder("a/b", { limit: 1, cursor: good })).toThrow(InvalidCursorError);
    let caught: unknown;
    try {
      s.history("a/b", { limit: 1, cursor: "%%" });
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(InvalidCursorError);
    expect((caught as InvalidCursorError).code).toBe("invalid_cursor");
  });

  it("applies 50k records in batches of 1000", () => {
    const s = openStore(tempDir());
    const total = 50_000;
    const batchSize = 1000;
    for (let start = 1; start <= total; start += batchSize) {
      const batch: ApplyEntry[] = [];
      for (let n = start; n < start + batchSize; n++) {
        batch.push(entry(rec(n, { concept: `bulk/c${n % 500}`, agent: `agent-${n % 7}` })));
      }
      s.applyBatch(batch);
    }
    expect(s.stats()).toMatchObject({ records: total, concepts: 500, appliedLsn: total });
    expect(s.latest("bulk/c0")?.lsn).toBe(total);
    expect(s.history("bulk/c1", { limit: 1000 }).items).toHaveLength(total / 500);
    expect(s.latestUnder("bulk", { limit: 1000 }).items).toHaveLength(500);
  });
});
