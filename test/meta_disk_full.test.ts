// A server whose meta environment (keys, agents, audit: `<data>/meta`) runs out of disk while
// the WAL and the shards' LMDB still have room (the data directory on a real 2 MiB tmpfs;
// needs root). The main process survives the failed commits; the admin action that hit one
// gets a storage error in the documented format, not a 500; assertions keep flowing; and
// once there is room again meta writes work without a restart; and every key whose creation
// was acknowledged still works after a SIGKILL and a restart.
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  api,
  readAdminKeyFile,
  type ServerProcess,
  startServerProcess,
} from "./helpers/server_process.js";
import { mountSmallDisk, type SmallDisk } from "./helpers/small_disk.js";
import { tempDir } from "./helpers/wal_fixtures.js";

type Json = Record<string, unknown>;
let disk: SmallDisk;
let diskDir = "";
let server: ServerProcess | undefined;

beforeAll(() => {
  disk = mountSmallDisk("stemedb-meta-full-", "2m");
  diskDir = tempDir("stemedb-meta-full-disk-");
});

afterAll(async () => {
  await server?.kill9();
  disk.remove();
  fs.rmSync(diskDir, { recursive: true, force: true });
});

const start = () =>
  startServerProcess({
    dataDir: disk.dir,
    shards: 1,
    env: {
      STEMEDB_WAL_DIR: path.join(diskDir, "wal"),
      STEMEDB_DB_DIR: path.join(diskDir, "db"),
    },
  });

/** 16 labels of 256 characters: ≈ 4 KiB of meta per key, so 2 MiB fills in a few hundred. */
function bulkyLabels(n: number): Record<string, string> {
  const labels: Record<string, string> = {};
  for (let i = 0; i < 16; i++) labels[`l${i}`] = `${n}-${i}-`.padEnd(256, "x");
  return labels;
}

describe("a server whose meta disk is full", () => {
  it("answers 507, keeps serving, and keeps every acknowledged key across a restart", async (ctx) => {
    if (disk.skipReason !== null) ctx.skip();
    server = await start();
    const adminKey = readAdminKeyFile(disk.dir);
    const admin = api(server.baseUrl, adminKey);
    const created: string[] = [];
    let refused: { status: number; body: Json; requestId: string | null } | null = null;
    for (let i = 0; i < 2_000 && refused === null; i++) {
      const res = await admin.request("POST", "/v1/admin/api_keys", {
        role: "reader",
        labels: bulkyLabels(i),
      });
      if (res.status === 201) created.push((res.json as { key: string }).key);
      else
        refused = {
          status: res.status,
          body: res.json as Json,
          requestId: res.headers.get("x-request-id"),
        };
    }
    if (refused === null) throw new Error("the meta env never filled the 2 MiB tmpfs");
    expect(created.length).toBeGreaterThan(10);
    expect(refused.status, JSON.stringify(refused.body)).toBe(507);
    expect(refused.body.error).toMatchObject({ code: "disk_full" });
    expect(refused.requestId).not.toBeNull();
    // The process is alive and assertions (WAL and shard LMDB on the other disk) still land.
    expect((await admin.request("GET", "/v1/health")).status).toBe(200);
    const write = await admin.request("POST", "/v1/assert", {
      concept: "meta/full",
      value: "still writable",
      confidence: 0.5,
    });
    expect(write.status, write.text).toBe(201);
    // Every acknowledged key authenticates, before and after a SIGKILL and a restart.
    const readsOk = async (base: string) => {
      for (const key of created) {
        const res = await api(base, key).request("GET", "/v1/query?concept=meta/full&lens=latest");
        expect(res.status, res.text).toBe(200);
      }
    };
    await readsOk(server.baseUrl);
    // With room again, meta writes work without a restart.
    disk.grow("64m");
    const again = await admin.request("POST", "/v1/admin/api_keys", { role: "reader" });
    expect(again.status, again.text).toBe(201);
    created.push((again.json as { key: string }).key);
    await server.kill9();
    server = await start();
    await readsOk(server.baseUrl);
  });
});
