// The main thread's side of the shard owners with real worker threads, WALs and LMDB: writes
// and queries issued in one turn travel coalesced (one message per shard each way), and
// every answer, including errors, still reaches its own caller.
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ShardPool, ShardRequestError } from "../src/server/shard_pool.js";
import type { RenderedPage } from "../src/shard/protocol.js";
import { shardDirs } from "../src/shard/shard_open.js";
import { sampleAssertion } from "./helpers/records.js";
import { tempDir } from "./helpers/wal_fixtures.js";

const SHARDS = 2;
const RECORDS = 64;
let dir: string;
let pool: ShardPool;

beforeAll(async () => {
  dir = tempDir("stemedb-pool-");
  pool = await ShardPool.start(
    {
      shardCount: SHARDS,
      segmentSizeBytes: 1024 * 1024,
      syncMode: "dsync",
      direct: true,
      repair: false,
      walArchiveRoot: null,
      queueMaxItems: 10_000,
      applyDelayMs: 20,
      youngGenMb: 96,
      walFlushMode: "inline",
      requestTimeoutMs: 10_000,
      stageTrace: null,
    },
    (id) => shardDirs(path.join(dir, "wal"), path.join(dir, "db"), id),
  );
});

afterAll(async () => {
  await pool?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

function idOf(i: number): string {
  return i.toString(16).padStart(32, "0");
}

describe("shard pool", () => {
  it("answers every caller of a same-turn burst of writes and queries with its own result", async () => {
    // Records i go to shard i % SHARDS; all writes are issued in this one turn.
    const writes = Array.from({ length: RECORDS }, (_, i) =>
      pool.write(i % SHARDS, [sampleAssertion(i, RECORDS, "pool")]),
    );
    const acks = await Promise.all(writes);
    const lsnsPerShard = Array.from({ length: SHARDS }, (_, s) =>
      acks.filter((_a, i) => i % SHARDS === s).map((a) => a.lsns[0]),
    );
    for (const lsns of lsnsPerShard)
      expect(lsns).toEqual(Array.from({ length: RECORDS / SHARDS }, (_, k) => k + 1));

    // One turn of queries per shard: point reads, a miss, a lens, and a bad cursor (an error).
    const gets = Array.from({ length: RECORDS }, (_, i) =>
      pool.get(i % SHARDS, idOf(i)).then((json) => JSON.parse(json ?? "null") as { id: string }),
    );
    const miss = pool.get(0, idOf(10_000));
    const lens = pool.request<RenderedPage>(1, {
      t: "lens_history",
      concept: "pool/c3",
      asOfLsn: null,
      limit: 10,
      cursor: null,
    });
    const bad = pool
      .request<RenderedPage>(0, {
        t: "lens_history",
        concept: "pool/c2",
        asOfLsn: null,
        limit: 10,
        cursor: "not-a-cursor",
      })
      .then(
        () => null,
        (err: unknown) => err,
      );
    const got = await Promise.all(gets);
    expect(got.map((r) => r.id)).toEqual(Array.from({ length: RECORDS }, (_, i) => idOf(i)));
    expect(await miss).toBeNull();
    const page = await lens;
    expect(page.items.map((j) => (JSON.parse(j) as { id: string }).id)).toEqual([idOf(3)]);
    const err = await bad;
    expect(err).toBeInstanceOf(ShardRequestError);
    expect((err as ShardRequestError).reason).toBe("invalid_cursor");
    // A message object is queued by reference: sending one twice is refused, not misrouted.
    const once = { t: "get" as const, id: idOf(1) };
    expect(await pool.request<string | null>(1, once)).not.toBeNull();
    await expect(pool.request(1, once)).rejects.toThrow("sent twice");
  });
});

describe("shard pool request timeouts", () => {
  it("fails a request that waits too long, but frees its queue capacity only when the shard answers", async () => {
    const timeoutDir = tempDir("stemedb-pool-timeout-");
    const slow = await ShardPool.start(
      {
        shardCount: 1,
        segmentSizeBytes: 16 * 1024 * 1024,
        syncMode: "dsync",
        direct: true,
        repair: false,
        walArchiveRoot: null,
        queueMaxItems: 200_000,
        applyDelayMs: 20,
        youngGenMb: 96,
        walFlushMode: "inline",
        requestTimeoutMs: 1, // every request still unanswered at a sweep (each 50 ms) times out
        stageTrace: null,
      },
      (id) => shardDirs(path.join(timeoutDir, "wal"), path.join(timeoutDir, "db"), id),
    );
    try {
      // 150 writes of 1,000 records, one per turn: two messages in flight, the rest queued
      // behind them, far more than the shard can write before the first sweep (50 ms).
      const depthsAtTimeout: number[] = [];
      // Each write settles to its error (or null) at once: no rejection waits unhandled.
      const writes: Array<Promise<unknown>> = [];
      for (let w = 0; w < 150; w++) {
        const records = Array.from({ length: 1_000 }, (_, k) =>
          sampleAssertion(w * 1_000 + k, 1_000, "slow"),
        );
        writes.push(
          slow.write(0, records).then(
            () => null,
            (err: unknown) => {
              // Runs right after the sweep failed it, before any later answer is handled.
              depthsAtTimeout.push(slow.queueDepth(0));
              return err;
            },
          ),
        );
        await new Promise((resolve) => setImmediate(resolve));
      }
      const timedOut = (await Promise.all(writes)).filter((err) => err !== null);
      expect(timedOut.length).toBeGreaterThan(0);
      for (const err of timedOut) expect(err).toMatchObject({ reason: "timeout" });
      // The shard still held every timed-out write's records when its caller was failed.
      for (const depth of depthsAtTimeout) expect(depth).toBeGreaterThanOrEqual(1_000);
      // Every late answer gives its capacity back, and no more.
      for (let i = 0; i < 400 && slow.queueDepth(0) !== 0; i++)
        await new Promise((resolve) => setTimeout(resolve, 25));
      expect(slow.queueDepth(0)).toBe(0);
    } finally {
      await slow.close();
      fs.rmSync(timeoutDir, { recursive: true, force: true });
    }
  });
});

describe("shard pool write messages", () => {
  it("splits a burst too big for one WAL batch into messages that fit, and writes all of it", async () => {
    const burstDir = tempDir("stemedb-pool-burst-");
    const burst = await ShardPool.start(
      {
        shardCount: 1,
        segmentSizeBytes: 1024 * 1024, // a WAL batch of ≈ 1 MiB
        syncMode: "dsync",
        direct: true,
        repair: false,
        walArchiveRoot: null,
        queueMaxItems: 100_000,
        applyDelayMs: 20,
        youngGenMb: 96,
        walFlushMode: "inline",
        requestTimeoutMs: 60_000,
        stageTrace: null,
      },
      (id) => shardDirs(path.join(burstDir, "wal"), path.join(burstDir, "db"), id),
    );
    try {
      // 40 writes of 1,000 records (≈ 9 MiB framed) in one turn: as one message the WAL
      // would refuse them all as backpressure.
      const acks = await Promise.all(
        Array.from({ length: 40 }, (_, w) =>
          burst.write(
            0,
            Array.from({ length: 1_000 }, (_, k) => sampleAssertion(w * 1_000 + k, 1_000, "burst")),
          ),
        ),
      );
      const lsns = acks.flatMap((a) => [...a.lsns]);
      expect(lsns).toHaveLength(40_000);
      expect(new Set(lsns).size).toBe(40_000);
    } finally {
      await burst.close();
      fs.rmSync(burstDir, { recursive: true, force: true });
    }
  });
});
