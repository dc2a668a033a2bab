// A server whose LMDB runs out of disk while the WAL still has room (a real 2 MiB tmpfs; needs
// root). The shard thread survives; every acknowledged write stays readable by id and as
// `latest` (from the shard's memory); writes and range reads, which would miss acknowledged
// records, get a storage error in the documented format; and after a restart on a larger
// disk the WAL replay puts everything back. And one shard, driven directly, whose retractions
// are acknowledged but never reach LMDB: its `latest` refuses rather than show one of them.
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ShardCore } from "../src/shard/shard_core.js";
import { runStateWrite } from "../src/shard/state_ops.js";
import { WalUnavailableError } from "../src/wal/errors.js";
import { bigAssertion, sampleAssertion } from "./helpers/records.js";
import {
  api,
  createKey,
  newDataDir,
  readAdminKeyFile,
  type ServerProcess,
  startServerProcess,
} from "./helpers/server_process.js";
import { mountSmallDisk, type SmallDisk } from "./helpers/small_disk.js";
import { tempDir } from "./helpers/wal_fixtures.js";

type Json = Record<string, unknown>;
let disk: SmallDisk;
/** The shard-level case's own 2 MiB tmpfs for LMDB, and a normal directory for its WAL. */
let coreDisk: SmallDisk;
let coreWalDir = "";
let dataDir = "";
let server: ServerProcess | undefined;

beforeAll(() => {
  disk = mountSmallDisk("stemedb-lmdb-full-", "2m");
  coreDisk = mountSmallDisk("stemedb-lmdb-full-core-", "2m");
  coreWalDir = tempDir("stemedb-lmdb-full-wal-");
  dataDir = newDataDir();
});

afterAll(async () => {
  await server?.kill9();
  disk.remove();
  coreDisk.remove();
  fs.rmSync(coreWalDir, { recursive: true, force: true });
  fs.rmSync(dataDir, { recursive: true, force: true });
});

const CONCEPT = "full/x";
const start = () =>
  startServerProcess({
    dataDir,
    shards: 1,
    env: { STEMEDB_DB_DIR: path.join(disk.dir, "db"), STEMEDB_APPLY_DELAY_MS: "0" },
  });

describe("a server whose LMDB disk is full", () => {
  it("keeps acknowledged writes readable, refuses what would miss them, and recovers after a restart", async (ctx) => {
    if (disk.skipReason !== null) ctx.skip();
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
    // LMDB reports the short page write as EIO, on a filesystem with no space left: 507.
    expect(refused.status, JSON.stringify(refused.body)).toBe(507);
    expect(refused.body.error).toMatchObject({ code: "disk_full" });
    expect((refused.body.error as { message: string }).message).toMatch(/LMDB disk is full/);
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
    expect(history.status, history.text).toBe(507);
    // More room, a restart: the WAL replay puts every acknowledged write into LMDB.
    await server.kill9();
    disk.grow("64m");
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

/** Concepts with one small assertion each, retracted one by one while LMDB fills up. */
const RETRACT_TARGETS = 400;
const FILLER_FIRST_ID = 1_000_000;

function retract(core: ShardCore, target: string): Promise<Error | null> {
  return new Promise((resolve) =>
    runStateWrite(
      core,
      {
        t: "status_event",
        req: 0,
        kind: "retract",
        target,
        actor: "admin",
        privileged: true,
        reason: null,
        atMs: Date.now(),
      },
      (err) => resolve(err),
    ),
  );
}

function writeOne(core: ShardCore, record: Uint8Array): Promise<Error | null> {
  return new Promise((resolve) => core.write([record], (err) => resolve(err)));
}

describe("a shard whose LMDB commits fail after retractions were acknowledged", () => {
  it("refuses `latest` for their concepts instead of answering the retracted assertion", async (ctx) => {
    if (coreDisk.skipReason !== null) ctx.skip();
    const core = await ShardCore.open({
      shardId: 0,
      walDir: coreWalDir,
      dbDir: path.join(coreDisk.dir, "db"),
      segmentSizeBytes: 4 * 1024 * 1024,
      applyDelayMs: 0,
      checkpointEveryRecords: 1_000_000_000,
      checkpointIntervalMs: 3_600_000,
    });
    try {
      // One small assertion per concept, committed while there is room.
      const targets = Array.from({ length: RETRACT_TARGETS }, (_, i) =>
        sampleAssertion(i + 1, Number.MAX_SAFE_INTEGER, "stale"),
      );
      await new Promise<void>((resolve, reject) =>
        core.write(targets, (err) => (err === null ? resolve() : reject(err))),
      );
      await core.settled();
      const idOf = (i: number) => (i + 1).toString(16).padStart(32, "0");
      const conceptOf = (i: number) => `stale/c${i + 1}`;
      // Each round: a 15 KB filler, then a retraction, appended together. The commit that
      // fails (a filler's) holds the retraction of its round or precedes it, so at least one
      // acknowledged retraction never reaches LMDB, while its target is there, active.
      const retracted: number[] = [];
      for (let i = 0; i < RETRACT_TARGETS && core.writeBlocker === null; i++) {
        const [filled, gone] = await Promise.all([
          writeOne(core, bigAssertion(FILLER_FIRST_ID + i, "fill", 15_000)),
          retract(core, idOf(i)),
        ]);
        if (gone === null) retracted.push(i);
        if (filled !== null || gone !== null) break;
        await core.settled();
      }
      if (core.writeBlocker === null) throw new Error("LMDB never filled the 2 MiB tmpfs");
      expect(core.writeBlocker).toMatchObject({ reason: "store_full" });
      await core.stateBarrier();
      let refused = 0;
      for (const i of retracted) {
        let answer: string | undefined;
        try {
          answer = core.latest(conceptOf(i))?.id;
        } catch (err) {
          expect(err).toBeInstanceOf(WalUnavailableError);
          refused++;
          continue;
        }
        expect(answer, `latest of ${conceptOf(i)} shows a retracted assertion`).toBeUndefined();
      }
      expect(refused).toBeGreaterThan(0);
      // A concept untouched by the failed commits still answers from LMDB.
      expect(core.latest(conceptOf(RETRACT_TARGETS - 1))?.id).toBe(idOf(RETRACT_TARGETS - 1));
    } finally {
      await core.close().catch(() => {});
    }
  });
});
