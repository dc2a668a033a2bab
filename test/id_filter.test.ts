// The duplicate-check filter: it may say "maybe" for a new id, never "no" for a known one —
// while warming up, after it, and across rebuilds — and on a real shard a retried write is a
// duplicate whatever state the filter is in.
import fs from "node:fs";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { WriteOutcome } from "../src/shard/core_options.js";
import { ShardCore } from "../src/shard/shard_core.js";
import { IdFilter, WARMUP_CHUNK_IDS } from "../src/store/id_filter.js";
import { sampleAssertion } from "./helpers/records.js";
import { tempDir } from "./helpers/wal_fixtures.js";

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

function hexId(i: number): string {
  return i.toString(16).padStart(32, "0");
}

/** A deterministic pseudo-random 32-hex id (what content-derived ids look like). */
function randomId(i: number): string {
  let x = (i + 1) * 0x9e3779b1;
  let out = "";
  for (let k = 0; k < 4; k++) {
    x = Math.imul(x ^ (x >>> 15), 0x2c1b3c6d) >>> 0;
    out += x.toString(16).padStart(8, "0");
  }
  return out;
}

/** An in-memory id set in key order standing in for LMDB's records (the filter's input). */
function sortedSource(ids: string[]): {
  read: (after: string | null, limit: number) => string[];
  commit: (more: Iterable<string>) => void;
} {
  let sorted = [...ids].sort();
  return {
    read: (after, limit) => {
      let from = 0;
      if (after !== null) while (from < sorted.length && (sorted[from] as string) <= after) from++;
      return sorted.slice(from, from + limit);
    },
    commit: (more) => {
      sorted = [...sorted, ...more].sort();
    },
  };
}

async function untilReady(filter: IdFilter): Promise<void> {
  for (let i = 0; i < 10_000 && !filter.isReady; i++) await new Promise((r) => setImmediate(r));
  expect(filter.isReady).toBe(true);
}

describe("id filter", () => {
  it("says maybe while warming up, then never no for a stored or added id and no for most others", async () => {
    const stored = Array.from({ length: 3 * WARMUP_CHUNK_IDS + 7 }, (_, i) => randomId(i));
    const filter = new IdFilter(sortedSource(stored).read, () => [], stored.length);
    expect(filter.isReady).toBe(false);
    expect(filter.mightContain(randomId(10_000_000))).toBe(true); // not warm: maybe
    const added = Array.from({ length: 1000 }, (_, i) => randomId(5_000_000 + i));
    for (const id of added) filter.add(id); // writes arriving during the warm-up
    await untilReady(filter);
    for (const id of stored) expect(filter.mightContain(id)).toBe(true);
    for (const id of added) expect(filter.mightContain(id)).toBe(true);
    let maybes = 0;
    const probes = 100_000;
    for (let i = 0; i < probes; i++) if (filter.mightContain(randomId(20_000_000 + i))) maybes++;
    expect(maybes / probes).toBeLessThan(0.02); // sized for about 0.6 %
    filter.close();
  });

  it("rebuilds larger when more ids arrive than it was sized for, keeping every one", async () => {
    const stored = Array.from({ length: 500 }, (_, i) => hexId(i));
    const inFlight = new Set<string>();
    const source = sortedSource(stored);
    const filter = new IdFilter(source.read, () => inFlight, stored.length, 1024);
    await untilReady(filter);
    const sizeBefore = filter.sizeBytes;
    const added: string[] = [];
    let readyChecks = 0;
    for (let i = 0; i < 20_000; i++) {
      const id = randomId(i);
      inFlight.add(id); // the shard's uncommitted ids, as PendingState holds them
      filter.add(id);
      added.push(id);
      if (inFlight.size > 64) {
        source.commit(inFlight); // LMDB commits them: from now on only the store has them
        inFlight.clear();
        await new Promise((r) => setImmediate(r)); // a warm-up step runs in between
      }
      if (i % 997 === 0) for (const a of added) expect(filter.mightContain(a)).toBe(true);
      if (filter.isReady) readyChecks++;
    }
    expect(readyChecks).toBeGreaterThan(10_000); // most of the checks above ran warm
    expect(filter.sizeBytes).toBeGreaterThan(sizeBefore);
    filter.close();
  });
});

function write(core: ShardCore, records: Uint8Array[]): Promise<WriteOutcome> {
  return new Promise((resolve, reject) =>
    core.write(records, (err, outcome) =>
      err === null && outcome !== null ? resolve(outcome) : reject(err),
    ),
  );
}

describe("id filter on a shard", () => {
  it("finds an in-flight or not yet committed original through a warm filter", async () => {
    const dir = tempDir("stemedb-idfilter-");
    dirs.push(dir);
    const core = await ShardCore.open({
      shardId: 0,
      walDir: path.join(dir, "wal"),
      dbDir: path.join(dir, "db"),
      segmentSizeBytes: 4 * 1024 * 1024,
      applyDelayMs: 1000, // acknowledged records stay uncommitted (overlay) for a while
    });
    await untilReady(core.idFilter);
    const original = write(core, [sampleAssertion(1, 5, "warm")]);
    // Same turn: the original is appended, not durable yet.
    const inFlightRetry = write(core, [sampleAssertion(1, 5, "warm")]);
    const [a, b] = await Promise.all([original, inFlightRetry]);
    expect([b.flags[0], b.lsns[0]]).toEqual([1, a.lsns[0]]);
    // Durable, acknowledged, not in LMDB yet.
    expect(core.store.has((1).toString(16).padStart(32, "0"))).toBe(false);
    const overlayRetry = await write(core, [sampleAssertion(1, 5, "warm")]);
    expect([overlayRetry.flags[0], overlayRetry.lsns[0]]).toEqual([1, a.lsns[0]]);
    await core.close();
  });

  it("reports every retried write as a duplicate before, during and after its warm-up", async () => {
    const dir = tempDir("stemedb-idfilter-");
    dirs.push(dir);
    const open = () =>
      ShardCore.open({
        shardId: 0,
        walDir: path.join(dir, "wal"),
        dbDir: path.join(dir, "db"),
        segmentSizeBytes: 4 * 1024 * 1024,
        idFilterMinIds: 1024, // small: the writes below force rebuilds
      });
    const first = await open();
    const firstLsns: number[] = [];
    for (let from = 0; from < 30_000; from += 1000) {
      const out = await write(
        first,
        Array.from({ length: 1000 }, (_, i) => sampleAssertion(from + i, 50, "flt")),
      );
      firstLsns.push(...out.lsns);
    }
    await first.close();

    const core = await open();
    expect(core.idFilter.isReady).toBe(false); // 30,000 stored ids: warm-up runs in steps
    for (let from = 0; from < 30_000; from += 1000) {
      const retry = await write(
        core,
        Array.from({ length: 1000 }, (_, i) => sampleAssertion(from + i, 50, "flt")),
      );
      expect([...retry.flags].every((f) => f === 1)).toBe(true);
      expect([...retry.lsns]).toEqual(firstLsns.slice(from, from + 1000));
      // New writes in between grow the filter past its size (rebuild while warming).
      await write(
        core,
        Array.from({ length: 200 }, (_, i) =>
          sampleAssertion(100_000 + (from / 1000) * 200 + i, 50, "flt"),
        ),
      );
    }
    await untilReady(core.idFilter);
    await core.settled();
    const again = await write(
      core,
      Array.from({ length: 5000 }, (_, i) => sampleAssertion(i * 6, 50, "flt")),
    );
    expect([...again.flags].every((f) => f === 1)).toBe(true);
    const news = await write(
      core,
      Array.from({ length: 6000 }, (_, i) => sampleAssertion(100_000 + i, 50, "flt")),
    );
    expect(news.flags.filter((f) => f === 1).length).toBe(6000); // written in the loop above
    const fresh = await write(
      core,
      Array.from({ length: 1000 }, (_, i) => sampleAssertion(200_000 + i, 50, "flt")),
    );
    expect(fresh.flags.filter((f) => f === 0).length).toBe(1000);
    await core.settled();
    expect(core.store.stats().records).toBe(37_000);
    await core.close();
  });
});
