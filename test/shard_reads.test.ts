// Point reads the main thread answers from its own LMDB snapshot (src/server/shard_reads.ts)
// must give the shard's answer: never miss an acknowledged write or status change, never go
// back in time, and survive a restart. Real server process, real HTTP.
import fs from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bucketOfConcept, bucketOfId } from "../src/shard/read_visibility.js";
import {
  api,
  readAdminKeyFile,
  type ServerProcess,
  startServerProcess,
  startServerWithKeys,
} from "./helpers/server_process.js";

interface ShardHealth {
  shard: number;
  last_lsn: number;
  applied_lsn: number;
  snapshot_reads: number;
}
interface Page {
  items: Array<Record<string, unknown>>;
}

let dataDir: string;
let server: ServerProcess;
let agentKey: string;
let readerKey: string;

beforeAll(async () => {
  // The longest apply delay: a read right after a write finds LMDB behind the shard.
  ({ dataDir, server, agentKey, readerKey } = await startServerWithKeys("agent-snap", {
    STEMEDB_APPLY_DELAY_MS: "1000",
  }));
});

afterAll(async () => {
  await server?.kill9();
  fs.rmSync(dataDir, { recursive: true, force: true });
});

async function shards(): Promise<ShardHealth[]> {
  const res = await api(server.baseUrl, null).request("GET", "/v1/health");
  return (res.json as { shards: ShardHealth[] }).shards;
}

/** Waits until every shard's LMDB has committed everything durable. */
async function settled(): Promise<ShardHealth[]> {
  for (let i = 0; i < 200; i++) {
    const list = await shards();
    if (list.every((s) => s.applied_lsn === s.last_lsn)) return list;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error("shards did not settle within 5 s");
}

async function write(concept: string, value: unknown): Promise<{ id: string; shard: number }> {
  const res = await api(server.baseUrl, agentKey).request("POST", "/v1/assert", {
    concept,
    value,
    confidence: 0.9,
  });
  expect(res.status, res.text).toBe(201);
  return res.json as { id: string; shard: number };
}

async function latest(concept: string): Promise<string> {
  const res = await api(server.baseUrl, readerKey).request(
    "GET",
    `/v1/query?concept=${concept}&lens=latest`,
  );
  expect(res.status, res.text).toBe(200);
  return res.text;
}

function latestValue(pageText: string): unknown {
  return (JSON.parse(pageText) as Page).items[0]?.value;
}

describe("snapshot reads on the main thread", () => {
  it("answers as the shard did once LMDB has committed, and only then", async () => {
    const w = await write("snap/a", "one");
    // The shard marks a write by its id, a read looks up its concept: the same bucket.
    expect(bucketOfId(w.id)).toBe(bucketOfConcept("snap/a"));
    const viaShard = await latest("snap/a");
    const getViaShard = await api(server.baseUrl, readerKey).request(
      "GET",
      `/v1/assertions/${w.id}`,
    );
    expect(latestValue(viaShard)).toBe("one");

    const before = (await settled())[w.shard] as ShardHealth;
    const viaSnapshot = await latest("snap/a");
    const getViaSnapshot = await api(server.baseUrl, readerKey).request(
      "GET",
      `/v1/assertions/${w.id}`,
    );
    const after = (await shards())[w.shard] as ShardHealth;
    expect(after.snapshot_reads - before.snapshot_reads).toBe(2);
    expect(JSON.parse(viaSnapshot)).toEqual(JSON.parse(viaShard));
    expect(getViaSnapshot.json).toEqual(getViaShard.json);
  });

  it("reads a concept from the snapshot while another concept's write waits for LMDB", async () => {
    const quiet = "snap/quiet";
    const busy = "snap/busy";
    expect(bucketOfConcept(quiet)).not.toBe(bucketOfConcept(busy));
    await write(quiet, "settled");
    await write(busy, "first");
    const total = (list: ShardHealth[]) => list.reduce((n, s) => n + s.snapshot_reads, 0);
    const before = total(await settled());
    // LMDB commits this one up to a second later (STEMEDB_APPLY_DELAY_MS=1000): the busy
    // concept's read goes to the shard (and sees it), the quiet one's is served here.
    await write(busy, "second");
    expect(latestValue(await latest(busy))).toBe("second");
    expect(latestValue(await latest(quiet))).toBe("settled");
    expect(total(await shards())).toBe(before + 1);
  });

  it("never shows a read older than an acknowledged write or retraction", async () => {
    const first = await write("snap/b", "first");
    const second = await write("snap/b", "second");
    await settled();
    expect(latestValue(await latest("snap/b"))).toBe("second");

    // The retraction is durable but not in LMDB for up to a second: the read must see it.
    const retract = await api(server.baseUrl, agentKey).request("POST", "/v1/retract", {
      assertion_id: second.id,
    });
    expect(retract.status, retract.text).toBe(200);
    expect(latestValue(await latest("snap/b"))).toBe("first");
    const got = await api(server.baseUrl, readerKey).request("GET", `/v1/assertions/${second.id}`);
    expect(got.json).toMatchObject({ status: "retracted" });

    await settled();
    expect(latestValue(await latest("snap/b"))).toBe("first");
    expect((await latest("snap/b")).includes(first.id)).toBe(true);
  });

  it("answers a live latest past retracted ones here, and hands an epoch read past its bound to the shard", async () => {
    const kept = await write("snap/deep", "the one still active");
    const agent = api(server.baseUrl, agentKey);
    // More retracted assertions on top than the main thread looks at (MAX_SNAPSHOT_LATEST_SCAN).
    for (let i = 0; i < 70; i++) {
      const w = await write("snap/deep", `retracted ${i}`);
      const r = await agent.request("POST", "/v1/retract", { assertion_id: w.id });
      expect(r.status, r.text).toBe(200);
    }
    // Live reads walk the index of active assertions: one step, on the main thread.
    const before = (await settled())[kept.shard] as ShardHealth;
    const page = JSON.parse(await latest("snap/deep")) as Page;
    expect(page.items.map((i) => i.id)).toEqual([kept.id]);
    const after = (await shards())[kept.shard] as ShardHealth;
    expect(after.snapshot_reads).toBe(before.snapshot_reads + 1);
    // An epoch read walks every assertion up to the epoch: past the main thread's bound the
    // shard answers it (same answer, no snapshot read counted).
    const admin = api(server.baseUrl, readAdminKeyFile(dataDir));
    const epoch = await admin.request("POST", "/v1/epoch", { label: "deep" });
    expect(epoch.status, epoch.text).toBe(201);
    const n = (epoch.json as { epoch: number }).epoch;
    await settled();
    const asOf = await api(server.baseUrl, readerKey).request(
      "GET",
      `/v1/query?concept=snap/deep&lens=latest&as_of_epoch=${n}`,
    );
    expect(asOf.status, asOf.text).toBe(200);
    expect((asOf.json as Page).items.map((i) => i.id)).toEqual([kept.id]);
    expect(((await shards())[kept.shard] as ShardHealth).snapshot_reads).toBe(after.snapshot_reads);
  });

  it("reads its own writes while commits land between the reads", async () => {
    const served = (await shards()).reduce((n, s) => n + s.snapshot_reads, 0);
    for (let i = 0; i < 24; i++) {
      await write("snap/c", i);
      // Every third read waits for the commit, so both paths and the switch between them run.
      if (i % 3 === 2) await settled();
      expect(latestValue(await latest("snap/c"))).toBe(i);
    }
    const servedAfter = (await shards()).reduce((n, s) => n + s.snapshot_reads, 0);
    expect(servedAfter - served).toBeGreaterThanOrEqual(8);
  });

  it("gives byte-identical answers to every lens with snapshot reads on and off", async () => {
    const admin = api(server.baseUrl, readAdminKeyFile(dataDir));
    const ids: string[] = [];
    for (let i = 0; i < 12; i++) ids.push((await write(`lens/k${i % 4}`, { n: i, s: `v${i}` })).id);
    const epoch = await admin.request("POST", "/v1/epoch", { label: "mid" });
    expect(epoch.status, epoch.text).toBe(201);
    const n = (epoch.json as { epoch: number }).epoch;
    await write("lens/k0", "after the epoch");
    await api(server.baseUrl, agentKey).request("POST", "/v1/retract", { assertion_id: ids[5] });
    await api(server.baseUrl, agentKey).request("POST", "/v1/vote", {
      assertion_id: ids[6],
      vote: "up",
    });
    const queries = [
      ...["latest", "history", "consensus", "trusted", "gold"].flatMap((lens) => [
        `/v1/query?concept=lens/k0&lens=${lens}`,
        `/v1/query?concept=lens/k2&lens=${lens}&limit=2`,
        `/v1/query?concept=lens/k1&lens=${lens}&as_of_epoch=${n}`,
        `/v1/query?concept=lens/*&lens=${lens}&limit=3`,
      ]),
      `/v1/query?concept=lens/k2&lens=history&limit=1&cursor=bm90LWEtY3Vyc29y`,
      ...ids.map((id) => `/v1/assertions/${id}`),
    ];
    const answers = async (): Promise<string[]> => {
      const out: string[] = [];
      const reader = api(server.baseUrl, readerKey);
      // Error bodies carry their request's id; everything else must match byte for byte.
      const text = (r: { status: number; text: string }) =>
        `${r.status} ${r.text.replace(/"request_id":"[^"]*"/, '"request_id":"-"')}`;
      for (const q of queries) {
        let res = await reader.request("GET", q);
        out.push(text(res));
        const next = (res.json as { next_cursor?: string | null }).next_cursor;
        if (typeof next !== "string") continue;
        res = await reader.request("GET", `${q}&cursor=${encodeURIComponent(next)}`);
        out.push(text(res));
      }
      return out;
    };

    expect(await server.stop()).toBe(0);
    server = await startServerProcess({ dataDir, env: { STEMEDB_SNAPSHOT_READS: "false" } });
    const viaShards = await answers();
    expect((await shards()).every((s) => s.snapshot_reads === 0)).toBe(true);
    expect(await server.stop()).toBe(0);
    server = await startServerProcess({ dataDir });
    const viaSnapshot = await answers();
    // Exact-concept latest and history pages, and reads by id, were served on the main
    // thread (consensus and subtrees stay on the shards: shard_reads.ts).
    const small = queries.filter(
      (q) => q.startsWith("/v1/assertions/") || /concept=lens\/k\d&lens=(latest|history)/.test(q),
    );
    expect((await shards()).reduce((sum, s) => sum + s.snapshot_reads, 0)).toBeGreaterThanOrEqual(
      small.length,
    );
    expect(viaSnapshot).toEqual(viaShards);
    expect(viaShards.filter((a) => a.startsWith("200 ")).length).toBeGreaterThan(queries.length);
    expect(viaShards.some((a) => a.startsWith("400 ") && a.includes("invalid_cursor"))).toBe(true);
  });

  it("serves from the snapshot right after a restart", async () => {
    const before = await latest("snap/c");
    expect(await server.stop()).toBe(0);
    server = await startServerProcess({ dataDir });
    const list = await shards();
    expect(list.every((s) => s.snapshot_reads === 0)).toBe(true);
    expect(await latest("snap/c")).toBe(before);
    const served = (await shards()).filter((s) => s.snapshot_reads > 0);
    expect(served.map((s) => s.snapshot_reads)).toEqual([1]);
    // Counted in the shard's own series: the merge adds the main thread's into it.
    const metrics = (await api(server.baseUrl, null).request("GET", "/metrics")).text;
    const series = metrics
      .split("\n")
      .filter((l) =>
        l.startsWith(
          `stemedb_query_latency_seconds_count{shard="${(served[0] as ShardHealth).shard}",lens="latest"}`,
        ),
      );
    expect(series).toHaveLength(1);
    expect(series[0]?.endsWith(" 1")).toBe(true);
  });
});
