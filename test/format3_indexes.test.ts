// Store format 3's indexes on a real LMDB env: `active` (live lenses read it, so any number
// of newer held, retracted or superseded assertions cannot hide an active one), checked
// through the hot-path apply, the replay apply, the format 2 -> 3 upgrade and a real server
// with a flood bigger than the lenses' scan bound; and `vote_now` (each voter's newest vote,
// so vote changes cannot push other votes out of the live tally).
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { open } from "lmdb";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { MAX_LENS_SCAN_ASSERTIONS, MAX_VOTES_PER_ASSERTION } from "../src/domain/limits.js";
import { encodeJsonRecord, type StatusEvent } from "../src/domain/state_events.js";
import { ShardCore } from "../src/shard/shard_core.js";
import { type AssertionRecord, encodeAssertion } from "../src/store/assertion_codec.js";
import { type ApplyEntry, ShardStore, WalRecordKind } from "../src/store/shard_store.js";
import { activeAsOf, LIVE_LSN, tallyVotes, votesAsOf } from "../src/store/state_reads.js";
import { Wal } from "../src/wal/wal.js";
import {
  api,
  createKey,
  newDataDir,
  readAdminKeyFile,
  type ServerProcess,
  startServerProcess,
} from "./helpers/server_process.js";

const SHARD = 0;
const dirs: string[] = [];
const stores: ShardStore[] = [];

function openStore(dir: string): ShardStore {
  const s = ShardStore.open({ dir, shardId: SHARD, mapSizeBytes: 256 * 1024 * 1024 });
  stores.push(s);
  return s;
}

function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "stemedb-active-"));
  dirs.push(dir);
  return dir;
}

afterEach(async () => {
  for (const s of stores.splice(0)) await s.close();
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

const idOf = (n: number) => n.toString(16).padStart(32, "0");

function insert(lsn: number, over: Partial<AssertionRecord> = {}): ApplyEntry {
  const rec: AssertionRecord = {
    id: idOf(lsn),
    concept: "c/x",
    agent: "a",
    valueJson: String(lsn),
    confidence: 0.5,
    sources: [],
    validFromMs: null,
    validToMs: null,
    nonce: null,
    recordedAtMs: 1_700_000_000_000 + lsn,
    epoch: 0,
    shard: SHARD,
    lsn,
    status: "active",
    supersedes: null,
    supersededBy: null,
    authorTrust: 0.5,
    quarantineReason: null,
    ...over,
  };
  return { lsn, kind: WalRecordKind.AssertionInsert, payload: encodeAssertion(rec) };
}

/** A status event as replay sees it (no writer-supplied concept) or as the writer sends it. */
function statusEvent(
  lsn: number,
  k: StatusEvent["k"],
  targetLsn: number,
  targetConcept?: string,
): ApplyEntry {
  const ev: StatusEvent = {
    k,
    target: idOf(targetLsn),
    target_lsn: targetLsn,
    actor: "admin",
    reason: null,
    at: 0,
  };
  const e: ApplyEntry = { lsn, kind: WalRecordKind.StateEvent, payload: encodeJsonRecord(ev) };
  if (targetConcept !== undefined) {
    e.event = ev;
    e.targetConcept = targetConcept;
  }
  return e;
}

function vote(lsn: number, targetLsn: number, voter: string, dir: 1 | -1): ApplyEntry {
  const ev = {
    k: "vote",
    target: idOf(targetLsn),
    actor: voter,
    dir,
    weight: 0.5,
    at: lsn,
  } as const;
  return { lsn, kind: WalRecordKind.StateEvent, payload: encodeJsonRecord(ev) };
}

/**
 * [lsn] of the active index's raw entries for `concept`, newest first (not through
 * activeAsOf, whose status check would hide a stale entry), after checking that the live
 * lens agrees.
 */
function activeLsns(s: ShardStore, concept = "c/x"): number[] {
  const raw: number[] = [];
  for (const key of s.dbs.active.getKeys({
    start: [concept, Number.MAX_SAFE_INTEGER],
    end: [concept, -1],
    reverse: true,
  }))
    raw.push(key[1]);
  const lens = activeAsOf(s.dbs, concept, LIVE_LSN, 1000, 1000).items.map((r) => r.lsn);
  expect(lens).toEqual(raw);
  return raw;
}

/** Entries 1..: one active, then `held` quarantined ones, then status changes. */
function history(held: number): ApplyEntry[] {
  const out = [insert(1)];
  for (let lsn = 2; lsn < 2 + held; lsn++) out.push(insert(lsn, { status: "quarantined" }));
  const next = 2 + held;
  out.push(
    insert(next), // active, then retracted
    statusEvent(next + 1, "retract", next),
    insert(next + 2, { status: "quarantined" }), // approved: active
    statusEvent(next + 3, "approve", next + 2),
    insert(next + 4), // superseded by the next insert
    insert(next + 5, { supersedes: idOf(next + 4) }),
    insert(next + 6, { concept: "c/y" }), // another concept
  );
  return out;
}

describe("active index (store)", () => {
  it("keeps latest past a flood of held records larger than the scan bound (replay apply)", () => {
    const held = MAX_LENS_SCAN_ASSERTIONS + 5;
    const s = openStore(tempDir());
    const entries = history(held);
    for (let i = 0; i < entries.length; i += 5000) s.applyBatch(entries.slice(i, i + 5000));
    const next = 2 + held;
    expect(activeLsns(s)).toEqual([next + 5, next + 2, 1]);
    expect(activeLsns(s, "c/y")).toEqual([next + 6]);
    expect(s.latest("c/x")?.lsn).toBe(next + 5);
    // Retract the two newest: latest falls back over > MAX held records to the first.
    s.applyBatch([
      statusEvent(next + 7, "retract", next + 5),
      statusEvent(next + 8, "retract", next + 2),
    ]);
    expect(s.latest("c/x")?.lsn).toBe(1);
    // An epoch read still folds by_concept and says when its bound stopped it.
    const asOf = activeAsOf(s.dbs, "c/x", next + 6, 1, MAX_LENS_SCAN_ASSERTIONS);
    expect(asOf.items.map((r) => r.lsn)).toEqual([next + 5]);
    const old = activeAsOf(s.dbs, "c/x", next - 1, 1, MAX_LENS_SCAN_ASSERTIONS);
    expect(old).toEqual({ items: [], truncated: true });
  });

  it("follows status changes the writer describes in the same async batch (hot path)", async () => {
    const s = openStore(tempDir());
    const sup = insert(4, { supersedes: idOf(3) });
    // What ShardCore passes along: the superseded record's LSN and the target's concept.
    sup.decoded = {
      id: idOf(4),
      concept: "c/x",
      agent: "a",
      active: true,
      supersedes: idOf(3),
      supersedesLsn: 3,
    };
    await s.applyBatchAsync([
      insert(1),
      insert(2, { status: "quarantined" }),
      insert(3),
      sup,
      statusEvent(5, "approve", 2, "c/x"),
      statusEvent(6, "reject", 1, "c/x"),
    ]);
    expect(activeLsns(s)).toEqual([4, 2]);
  });

  it("finds the targets of replayed status changes and supersessions (WAL replay, async apply)", async () => {
    const dir = tempDir();
    const walDir = path.join(dir, "wal");
    const wal = await Wal.open({
      dir: walDir,
      shardId: SHARD,
      segmentSizeBytes: 1024 * 1024,
      checkpointLsn: 0,
      onRecord: () => {},
    });
    // The history above, 40 held records deep, written only to the WAL: LMDB starts empty, so
    // every target is one replayed (and maybe not committed) in the same open.
    for (const e of history(40)) {
      expect(wal.append(e.kind, e.payload)).toBe(e.lsn);
    }
    await wal.durable(wal.nextLsn - 1);
    await wal.close();
    const core = await ShardCore.open({
      shardId: SHARD,
      walDir,
      dbDir: path.join(dir, "db"),
      segmentSizeBytes: 1024 * 1024,
    });
    try {
      expect(core.recovery.replayedRecords).toBe(48);
      expect(activeLsns(core.store)).toEqual([47, 44, 1]);
      expect(activeLsns(core.store, "c/y")).toEqual([48]);
    } finally {
      await core.close();
    }
  });

  it("tallies each voter's newest vote live however often one voter changed its vote", () => {
    const s = openStore(tempDir());
    const entries: ApplyEntry[] = [insert(1), vote(2, 1, "early", 1)];
    // One voter flips more often than the vote log is read at an epoch.
    const flips = MAX_VOTES_PER_ASSERTION + 10;
    for (let i = 0; i < flips; i++) entries.push(vote(3 + i, 1, "flipper", i % 2 === 0 ? 1 : -1));
    for (let i = 0; i < entries.length; i += 5000) s.applyBatch(entries.slice(i, i + 5000));
    const last = 2 + flips;
    const live = votesAsOf(s.dbs, idOf(1), LIVE_LSN, MAX_VOTES_PER_ASSERTION);
    expect(live.truncated).toBe(false);
    expect([...live.byVoter.values()]).toEqual([
      { voter: "early", vote: "up", weight: 0.5, lsn: 2, at: 2 },
      {
        voter: "flipper",
        vote: (flips - 1) % 2 === 0 ? "up" : "down",
        weight: 0.5,
        lsn: last,
        at: last,
      },
    ]);
    expect(tallyVotes(s.dbs, idOf(1), LIVE_LSN, MAX_VOTES_PER_ASSERTION)).toMatchObject({
      up: 1,
      down: 1,
    });
    // The "voted before" check of a new vote (state_ops.ts) reads the same index.
    expect(s.dbs.voteNow.doesExist([idOf(1), "early"])).toBe(true);
    expect(s.dbs.voteNow.doesExist([idOf(1), "newcomer"])).toBe(false);
    // At an epoch the log is read newest first and says when its bound cut older votes off.
    const asOf = votesAsOf(s.dbs, idOf(1), last, MAX_VOTES_PER_ASSERTION);
    expect(asOf.truncated).toBe(true);
    expect(asOf.byVoter.has("early")).toBe(false);
  });

  it("upgrades a format 2 env by building the indexes, once", async () => {
    const dir = tempDir();
    const first = openStore(dir);
    const entries = history(30_000);
    const next = entries.length + 1;
    entries.push(vote(next, 1, "v1", 1), vote(next + 1, 1, "v2", -1), vote(next + 2, 1, "v1", -1));
    for (let i = 0; i < entries.length; i += 5000) first.applyBatch(entries.slice(i, i + 5000));
    const want = activeLsns(first);
    const wantVotes = votesAsOf(first.dbs, idOf(1), LIVE_LSN, 10);
    await first.close();
    stores.length = 0;
    // Make it a format 2 env: no `active` entries, version 2.
    const env = open({ path: dir, maxDbs: 32 });
    const active = env.openDB({ name: "active", encoding: "binary" });
    const voteNow = env.openDB({ name: "vote_now", encoding: "msgpack" });
    const meta = env.openDB<number, string>({ name: "meta", encoding: "ordered-binary" });
    await env.transaction(() => {
      active.clearSync();
      voteNow.clearSync();
      meta.put("format_version", 2);
    });
    await env.close();
    const upgraded = openStore(dir);
    expect(upgraded.formatUpgrade).toEqual({ from: 2, to: 3, indexed: 4 });
    expect(activeLsns(upgraded)).toEqual(want);
    const votes = votesAsOf(upgraded.dbs, idOf(1), LIVE_LSN, 10);
    expect(votes).toEqual(wantVotes);
    expect([...votes.byVoter.values()].map((v) => [v.voter, v.vote, v.lsn])).toEqual([
      ["v1", "down", next + 2],
      ["v2", "down", next + 1],
    ]);
    expect(upgraded.latest("c/x")?.lsn).toBe(30_007);
    await upgraded.close();
    stores.length = 0;
    expect(openStore(dir).formatUpgrade).toBeNull();
  });
});

describe("active index (server)", () => {
  let dataDir: string | undefined;
  let server: ServerProcess | undefined;

  afterAll(async () => {
    await server?.kill9();
    if (dataDir !== undefined) fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it("answers latest and consensus past more held assertions than the scan bound", async () => {
    dataDir = newDataDir();
    server = await startServerProcess({ dataDir, shards: 2 });
    const adminKey = readAdminKeyFile(dataDir);
    const admin = api(server.baseUrl, adminKey);
    const good = api(server.baseUrl, await createKey(server.baseUrl, adminKey, "agent", "good"));
    const concept = "flood/x";
    expect((await admin.request("POST", "/v1/gold_standard", { concept, value: 0 })).status).toBe(
      201,
    );
    const kept = await good.request("POST", "/v1/assert", { concept, value: 0, confidence: 0.9 });
    expect(kept.json).toMatchObject({ status: "active" });
    // Gold contradictions are held; two batches make more than MAX_LENS_SCAN_ASSERTIONS (from
    // two agents: the first batch trips its author's breaker).
    for (let b = 0; b < 2; b++) {
      const bad = api(
        server.baseUrl,
        await createKey(server.baseUrl, adminKey, "agent", `bad${b}`),
      );
      const assertions = Array.from({ length: MAX_LENS_SCAN_ASSERTIONS / 2 + 1 }, (_, i) => ({
        concept,
        value: b * 100_000 + i + 1,
        confidence: 0.5,
      }));
      const res = await bad.request("POST", "/v1/assert", { assertions });
      expect(res.status, res.text).toBe(201);
      const results = (res.json as { results: { status: string }[] }).results;
      expect(results.every((r) => r.status === "quarantined")).toBe(true);
    }
    // Until LMDB commits, latest is served from the shard's in-memory overlay: wait for it.
    for (let i = 0; ; i++) {
      const health = (await admin.request("GET", "/v1/health")).json as {
        shards: { last_lsn: number; applied_lsn: number }[];
      };
      if (health.shards.every((sh) => sh.applied_lsn === sh.last_lsn)) break;
      if (i === 400) throw new Error(`LMDB did not catch up: ${JSON.stringify(health.shards)}`);
      await new Promise((r) => setTimeout(r, 25));
    }
    const id = (kept.json as { id: string }).id;
    const latest = await admin.request("GET", `/v1/query?concept=${concept}&lens=latest`);
    expect(latest.status, latest.text).toBe(200);
    expect((latest.json as { items: { id: string }[] }).items.map((i) => i.id)).toEqual([id]);
    const consensus = await admin.request("GET", `/v1/query?concept=${concept}&lens=consensus`);
    expect(consensus.status, consensus.text).toBe(200);
    expect(consensus.text).toContain(id);
    expect(consensus.json).toMatchObject({ truncated: false });
  });
});
