// A server whose LMDB runs out of disk while the WAL still has room (a real 2 MiB tmpfs; needs
// root). The shard thread survives; every acknowledged write stays readable by id and as
// `latest` (from the shard's memory); writes and range reads, which would miss acknowledged
// records, get a storage error in the documented format; and after a restart on a larger
// disk the WAL replay puts everything back.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  api,
  createKey,
  newDataDir,
  readAdminKeyFile,
  type ServerProcess,
  startServerProcess,
} from "./helpers/server_process.js";
import { tempDir } from "./helpers/wal_fixtures.js";

type Json = Record<string, unknown>;
let mountDir = "";
let dataDir = "";
let server: ServerProcess | undefined;
let skipReason: string | null = null;

beforeAll(() => {
  mountDir = tempDir("stemedb-lmdb-full-");
  dataDir = newDataDir();
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=2m", "tmpfs", mountDir], { stdio: "pipe" });
  } catch (err) {
    skipReason = `cannot mount a size-limited tmpfs here: ${(err as Error).message.split("\n")[0]}`;
    console.warn(`SKIPPED LMDB disk-full test: ${skipReason}`);
  }
});

afterAll(async () => {
  await server?.kill9();
  if (skipReason === null) execFileSync("umount", ["-l", mountDir]);
  fs.rmSync(mountDir, { recursive: true, force: true });
  fs.rmSync(dataDir, { recursive: true, force: true });
});

const CONCEPT = "full/x";
const start = () =>
  startServerProcess({
    dataDir,
    shards: 1,
    env: { STEMEDB_DB_DIR: path.join(mountDir, "db"), STEMEDB_APPLY_DELAY_MS: "0" },
  });

describe("a server whose LMDB disk is full", () => {
  it("keeps acknowledged writes readable, refuses what would miss them, and recovers after a restart", async (ctx) => {
    if (skipReason !== null) ctx.skip();
    server = await start();
    const adminKey = readAdminKeyFile(dataDir);
    const agent = api(server.baseUrl, await createKey(server.baseUrl, adminKey, "agent", "filler"));
    const reader = api(server.baseUrl, adminKey);
    const acked: string[] = [];
    let refused: { status: number; body: Json } | null = null;
    for (let i = 0; i < 400 && refused === null; i++) {
      const res = await agent.request("POST", "/v1/assert", {
        concept: CONCEPT,
        value: `${i} ${"x".repeat(15_000)}`,
        confidence: 0.5,
      });
      if (res.status === 201) acked.push((res.json as { id: string }).id);
      else refused = { status: res.status, body: res.json as Json };
    }
    if (refused === null) throw new Error("LMDB never filled the 2 MiB tmpfs");
    // tmpfs answers LMDB with ENOSPC or, through lmdb-js, EIO: 507 disk_full or 503.
    expect([503, 507]).toContain(refused.status);
    expect(["disk_full", "shard_unavailable"]).toContain(
      (refused.body.error as { code: string }).code,
    );
    // The shard thread is alive and says why it refuses writes.
    const health = (await reader.request("GET", "/v1/health")).json as { shards: Json[] };
    expect(health.shards[0]).toMatchObject({ status: "read_only" });
    expect(String(health.shards[0]?.write_blocker)).toMatch(/LMDB commit failed/);
    // Every acknowledged write is still served by id, and the newest as latest.
    for (const id of acked) {
      const res = await reader.request("GET", `/v1/assertions/${id}`);
      expect(res.status, res.text).toBe(200);
    }
    const latest = await reader.request("GET", `/v1/query?concept=${CONCEPT}&lens=latest`);
    expect((latest.json as { items: Json[] }).items[0]?.id).toBe(acked[acked.length - 1]);
    // A history page reads LMDB alone and would miss some: refused instead.
    const history = await reader.request("GET", `/v1/query?concept=${CONCEPT}&lens=history`);
    expect([503, 507]).toContain(history.status);
    // More room, a restart: the WAL replay puts every acknowledged write into LMDB.
    await server.kill9();
    execFileSync("mount", ["-o", "remount,size=64m", mountDir]);
    server = await start();
    const again = api(server.baseUrl, adminKey);
    const ids: string[] = [];
    let cursor: string | null = null;
    do {
      const q = `/v1/query?concept=${CONCEPT}&lens=history&limit=100${cursor === null ? "" : `&cursor=${cursor}`}`;
      const page = await again.request("GET", q);
      expect(page.status, page.text).toBe(200);
      const body = page.json as { items: Json[]; next_cursor: string | null };
      ids.push(...body.items.map((it) => it.id as string));
      cursor = body.next_cursor;
    } while (cursor !== null);
    expect(new Set(ids)).toEqual(new Set(acked));
  });
});
