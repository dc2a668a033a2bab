import fs from "node:fs";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  api,
  createKey,
  newDataDir,
  readAdminKeyFile,
  ServerExitError,
  type ServerProcess,
  startServerProcess,
} from "./helpers/server_process.js";

const dataDir = newDataDir();
let server: ServerProcess | null = null;
const servers: ServerProcess[] = [];

afterAll(async () => {
  await server?.kill9();
  for (const s of servers) await s.kill9();
  fs.rmSync(dataDir, { recursive: true, force: true });
});

interface Acked {
  id: string;
  concept: string;
}

/** Concurrent single and batch ingest until the server dies; returns every acknowledged item. */
async function ingestUntilDead(
  baseUrl: string,
  key: string,
  tag: string,
  clients: number,
): Promise<Acked[]> {
  const acked: Acked[] = [];
  const agent = api(baseUrl, key);
  let counter = 0;
  const loop = async (client: number) => {
    for (;;) {
      const batch = counter % 5 === 0;
      const items = Array.from({ length: batch ? 20 : 1 }, () => ({
        concept: `crash/${tag}/c${client}-${counter++}`,
        value: counter,
        confidence: 0.7,
      }));
      let res: Awaited<ReturnType<typeof agent.request>>;
      try {
        res = await agent.request("POST", "/v1/assert", batch ? { assertions: items } : items[0]);
      } catch {
        return; // connection refused or reset: the server is gone
      }
      if (res.status !== 201) continue;
      const results = batch
        ? (res.json as { results: Array<{ id: string }> }).results
        : [res.json as { id: string }];
      for (const [i, r] of results.entries()) {
        acked.push({ id: r.id, concept: (items[i] as { concept: string }).concept });
      }
    }
  };
  await Promise.all(Array.from({ length: clients }, (_, c) => loop(c)));
  return acked;
}

describe("server crash", () => {
  it("SIGKILL (and a final SIGTERM) during concurrent HTTP ingest loses no acknowledged write and duplicates none", async () => {
    server = await startServerProcess({ dataDir });
    const adminKey = readAdminKeyFile(dataDir);
    const agentKey = await createKey(server.baseUrl, adminKey, "agent");
    const all: Acked[] = [];
    for (let iteration = 0; iteration < 4; iteration++) {
      const running = server as ServerProcess;
      const ingest = ingestUntilDead(running.baseUrl, agentKey, `i${iteration}`, 16);
      await new Promise((r) => setTimeout(r, 300 + Math.random() * 500));
      if (iteration < 3) {
        await running.kill9();
      } else {
        // SIGTERM: stop accepting, drain in-flight writes, checkpoint, exit 0.
        expect(await running.stop()).toBe(0);
      }
      all.push(...(await ingest));
      server = await startServerProcess({ dataDir });
    }
    expect(all.length).toBeGreaterThan(100);
    // One paged subtree walk per iteration (1,000 per page) instead of two requests per
    // acknowledged item: tens of thousands of sequential GETs took minutes on a loaded runner.
    const reader = api((server as ServerProcess).baseUrl, agentKey);
    const stored = new Map<string, string>(); // id → concept
    const perConcept = new Map<string, number>();
    for (let iteration = 0; iteration < 4; iteration++) {
      let cursor: string | null = null;
      do {
        const query: string =
          `/v1/query?concept=crash/i${iteration}/*&lens=history&limit=1000` +
          (cursor === null ? "" : `&cursor=${encodeURIComponent(cursor)}`);
        const page = await reader.request("GET", query);
        expect(page.status).toBe(200);
        const body = page.json as {
          items: Array<{ id: string; concept: string }>;
          next_cursor: string | null;
        };
        for (const item of body.items) {
          stored.set(item.id, item.concept);
          perConcept.set(item.concept, (perConcept.get(item.concept) ?? 0) + 1);
        }
        cursor = body.next_cursor;
      } while (cursor !== null);
    }
    let missing = 0;
    let duplicated = 0;
    for (const item of all) {
      if (stored.get(item.id) !== item.concept) missing++;
      if (perConcept.get(item.concept) !== 1) duplicated++;
    }
    // The point lookup path too, on an evenly spread sample.
    const step = Math.max(1, Math.floor(all.length / 200));
    for (let i = 0; i < all.length; i += step) {
      const got = await reader.request("GET", `/v1/assertions/${(all[i] as Acked).id}`);
      if (got.status !== 200) missing++;
    }
    expect({ missing, duplicated }).toEqual({ missing: 0, duplicated: 0 });
  });
});

describe("server start on a damaged WAL", () => {
  it("refuses with exit code 2 naming shard, segment and offset; starts with STEMEDB_WAL_REPAIR=true", async () => {
    const dir = newDataDir();
    try {
      const first = await startServerProcess({ dataDir: dir, shards: 1 });
      const key = await createKey(first.baseUrl, readAdminKeyFile(dir), "agent");
      for (let i = 0; i < 6; i++) {
        const res = await api(first.baseUrl, key).request("POST", "/v1/assert", {
          concept: `dmg/c${i}`,
          value: i,
          confidence: 1,
        });
        expect(res.status).toBe(201);
      }
      await first.kill9(); // a clean stop would checkpoint and recycle the segment
      const walDir = path.join(dir, "wal", "shard-000");
      const segment = path.join(
        walDir,
        fs.readdirSync(walDir).find((n) => n.startsWith("wal-")) as string,
      );
      const bytes = fs.readFileSync(segment);
      bytes[4096 + 40] = (bytes[4096 + 40] as number) ^ 0x01; // inside the first record's payload
      fs.writeFileSync(segment, bytes);

      const refused = await startServerProcess({ dataDir: dir, shards: 1 }).then(
        () => null,
        (err: unknown) => err,
      );
      expect(refused).toBeInstanceOf(ServerExitError);
      expect((refused as ServerExitError).exitCode).toBe(2);
      expect((refused as ServerExitError).output).toContain("WAL corruption in shard 0");
      expect((refused as ServerExitError).output).toContain("byte offset 4096");

      const repaired = await startServerProcess({
        dataDir: dir,
        shards: 1,
        env: { STEMEDB_WAL_REPAIR: "true" },
      });
      servers.push(repaired);
      const health = (await api(repaired.baseUrl, null).request("GET", "/v1/health")).json as {
        shards: Array<{ recovery: { dropped_records: number } }>;
      };
      expect(health.shards[0]?.recovery.dropped_records).toBeGreaterThan(0);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
