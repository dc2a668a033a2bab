// Knowledge semantics against a real 4-shard server: votes, consensus numbers computed by
// hand, supersession permissions, retraction, epochs across every shard, sources and
// provenance (including a cycle).
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { canonicalJson } from "../src/domain/canonical_json.js";
import { routableAssertionId } from "../src/domain/routable_id.js";
import { sourceRecord } from "../src/server/state_schemas.js";
import {
  api,
  createKey,
  newDataDir,
  readAdminKeyFile,
  type ServerProcess,
  startServerProcess,
} from "./helpers/server_process.js";

type Json = Record<string, unknown>;
let dataDir: string;
let server: ServerProcess;
const keys: Record<string, string> = {};
const SHARDS = 4;
const CLI = path.join(path.dirname(fileURLToPath(import.meta.url)), "../src/cli/main.js");

function as(who: string) {
  const key = keys[who];
  if (key === undefined) throw new Error(`no key for ${who}`);
  return api(server.baseUrl, key);
}

async function assert(who: string, body: Json): Promise<Json> {
  const res = await as(who).request("POST", "/v1/assert", body);
  expect(res.status, res.text).toBe(201);
  return res.json as Json;
}

async function query(params: string): Promise<Json> {
  const res = await as("reader").request("GET", `/v1/query?${params}`);
  expect(res.status, res.text).toBe(200);
  return res.json as Json;
}

async function getAssertion(id: string): Promise<Json> {
  const res = await as("reader").request("GET", `/v1/assertions/${id}`);
  expect(res.status, res.text).toBe(200);
  return res.json as Json;
}

beforeAll(async () => {
  dataDir = newDataDir();
  server = await startServerProcess({ dataDir, shards: SHARDS });
  keys.admin = readAdminKeyFile(dataDir);
  for (const agent of ["a1", "a2", "a3", "v1", "v2"]) {
    keys[agent] = await createKey(server.baseUrl, keys.admin, "agent", agent);
  }
  keys.reader = await createKey(server.baseUrl, keys.admin, "reader");
});

afterAll(async () => {
  await server?.kill9();
  if (dataDir !== undefined) fs.rmSync(dataDir, { recursive: true, force: true });
});

describe("votes and consensus", () => {
  it("scores groups by Σ author trust × confidence + Σ voter trust × vote (hand-computed)", async () => {
    // Every agent starts at the prior trust 0.5 (Beta 1/1).
    const a1 = await assert("a1", { concept: "cons/x", value: "A", confidence: 0.8 });
    const a2 = await assert("a2", { concept: "cons/x", value: "A", confidence: 0.6 });
    const a3 = await assert("a3", { concept: "cons/x", value: "B", confidence: 1 });
    const vote = (who: string, id: unknown, v: string) =>
      as(who).request("POST", "/v1/vote", { assertion_id: id, vote: v });
    expect((await vote("v1", a3.id, "up")).json).toMatchObject({ replaced: false, weight: 0.5 });
    expect((await vote("v2", a1.id, "down")).status).toBe(201);
    expect((await vote("v1", a2.id, "up")).status).toBe(201);
    // A new vote by the same agent replaces the old one (and adds no trust evidence).
    const replaced = await vote("v1", a2.id, "down");
    expect(replaced.status).toBe(201);
    expect(replaced.json).toMatchObject({ replaced: true, weight: 0.5 });
    // First votes are evidence for the author, weighted by the voter's trust (0.5):
    // a3 α=1.5 → 0.6; a1 β=1.5 → 0.4; a2 α=1.5 → 0.6 (its replaced vote adds nothing).
    const trust = async (a: string) =>
      ((await as("reader").request("GET", `/v1/agents/${a}`)).json as Json).trust as number;
    expect(await trust("a3")).toBeCloseTo(0.6, 6);
    expect(await trust("a1")).toBeCloseTo(0.4, 6);
    expect(await trust("a2")).toBeCloseTo(0.6, 6);
    // A = 0.4×0.8 + 0.6×0.6 − 0.5 − 0.5 = −0.32 ; B = 0.6×1 + 0.5 = 1.1 ; margin 1.42
    const c = await query("concept=cons/x&lens=consensus");
    const winner = c.winner as Json;
    expect(winner.value).toBe("B");
    expect(winner.score as number).toBeCloseTo(1.1, 6);
    expect(winner.assertions).toEqual([a3.id]);
    expect(c.margin as number).toBeCloseTo(1.42, 6);
    const runnerUp = (c.runners_up as Json[])[0] as Json;
    expect(runnerUp.value).toBe("A");
    expect(runnerUp.score as number).toBeCloseTo(-0.32, 6);
    expect(runnerUp.author_score as number).toBeCloseTo(0.68, 6);
    expect(runnerUp.vote_score as number).toBeCloseTo(-1.0, 12);
    expect(runnerUp).toMatchObject({ votes_up: 0, votes_down: 2 });
    expect(runnerUp.assertions).toEqual([a2.id, a1.id]);
    // gold falls back to consensus while no gold standard exists.
    const g = await query("concept=cons/x&lens=gold");
    expect(g.source).toBe("consensus");
    expect((g.winner as Json).value).toBe("B");
  });

  it("says truncated when more active assertions exist than consensus and trusted look at", async () => {
    const batch = (from: number, count: number) =>
      Array.from({ length: count }, (_, i) => ({
        concept: "cons/many",
        value: from + i,
        confidence: 0.5,
      }));
    await assert("v2", { assertions: batch(0, 1000) });
    const exact = await query("concept=cons/many&lens=consensus");
    expect(exact).toMatchObject({ considered: 1000, truncated: false });
    await assert("v2", { assertions: batch(1000, 1) });
    const more = await query("concept=cons/many&lens=consensus");
    expect(more).toMatchObject({ considered: 1000, truncated: true });
    // No author is that trusted among the newest 1,000, and older ones were not looked at.
    const trusted = await query("concept=cons/many&lens=trusted&min_trust=0.99");
    expect(trusted).toMatchObject({ items: [], truncated: true });
    const found = await query("concept=cons/many&lens=trusted&min_trust=0");
    expect((found.items as Json[]).length).toBe(1);
    expect(found.truncated).toBe(false);
  });

  it("refuses self-votes, votes on unknown ids, and bad bodies", async () => {
    const mine = await assert("a1", { concept: "cons/self", value: 1, confidence: 1 });
    const self = await as("a1").request("POST", "/v1/vote", { assertion_id: mine.id, vote: "up" });
    expect(self.status).toBe(422);
    expect((self.json as { error: Json }).error.code).toBe("self_vote");
    const unknown = await as("v1").request("POST", "/v1/vote", {
      assertion_id: "0".repeat(32),
      vote: "up",
    });
    expect(unknown.status).toBe(404);
    const bad = await as("v1").request("POST", "/v1/vote", {
      assertion_id: mine.id,
      vote: "sideways",
    });
    expect(bad.status).toBe(422);
    const reader = await as("reader").request("POST", "/v1/vote", {
      assertion_id: mine.id,
      vote: "up",
    });
    expect(reader.status).toBe(403);
  });
});

describe("supersession and retraction", () => {
  it("applies the permission matrix and keeps links both ways", async () => {
    // Trust now (from the votes above): a3 0.6, a2 0.6, a1 0.4.
    const old = await assert("a3", { concept: "sup/x", value: 1, confidence: 0.9 });
    const body = (v: number, supersedes: unknown = old.id) => ({
      supersedes,
      assertion: { concept: "sup/x", value: v, confidence: 0.9 },
    });
    // Another agent with equal or lower trust may not (higher trust: test/trust_safety.test.ts).
    const peer = await as("a2").request("POST", "/v1/supersede", body(2));
    expect(peer.status).toBe(403);
    expect((peer.json as { error: Json }).error.code).toBe("not_permitted");
    const lower = await as("a1").request("POST", "/v1/supersede", body(2));
    expect(lower.status).toBe(403);
    // A different concept is not a supersession.
    const other = await as("a3").request("POST", "/v1/supersede", {
      supersedes: old.id,
      assertion: { concept: "sup/y", value: 2, confidence: 1 },
    });
    expect(other.status).toBe(422);
    // The author may; a retry is a duplicate, not a second write.
    const mine = await as("a3").request("POST", "/v1/supersede", body(2));
    expect(mine.status, mine.text).toBe(201);
    const again = await as("a3").request("POST", "/v1/supersede", body(2));
    expect(again.status).toBe(201);
    expect(again.json).toMatchObject({ id: (mine.json as Json).id, duplicate: true });
    const newId = (mine.json as Json).id;
    expect(await getAssertion(old.id as string)).toMatchObject({
      status: "superseded",
      superseded_by: newId,
    });
    expect(await getAssertion(newId as string)).toMatchObject({
      status: "active",
      supersedes: old.id,
    });
    // Superseding a non-active assertion is a conflict.
    const twice = await as("a3").request("POST", "/v1/supersede", body(3));
    expect(twice.status).toBe(409);
    // An admin may supersede anyone's.
    const admin = await as("admin").request("POST", "/v1/supersede", body(4, newId));
    expect(admin.status, admin.text).toBe(201);
    // history shows the chain, newest first.
    const h = await query("concept=sup/x&lens=history");
    const items = h.items as Json[];
    expect(items.map((i) => i.status)).toEqual(["active", "superseded", "superseded"]);
    expect(items[1]).toMatchObject({ id: newId, supersedes: old.id, superseded_by: items[0]?.id });
    const latest = await query("concept=sup/x&lens=latest");
    expect((latest.items as Json[])[0]?.value).toBe(4);
  });

  it("retracts: author or admin only, idempotent, latest falls back", async () => {
    const first = await assert("a1", { concept: "ret/x", value: "first", confidence: 1 });
    const second = await assert("a1", { concept: "ret/x", value: "second", confidence: 1 });
    const stranger = await as("a2").request("POST", "/v1/retract", { assertion_id: second.id });
    expect(stranger.status).toBe(403);
    const ok = await as("a1").request("POST", "/v1/retract", {
      assertion_id: second.id,
      reason: "wrong",
    });
    expect(ok.status, ok.text).toBe(200);
    expect(ok.json).toMatchObject({ status: "retracted", duplicate: false });
    const retry = await as("a1").request("POST", "/v1/retract", { assertion_id: second.id });
    expect(retry.json).toMatchObject({ duplicate: true });
    expect((await getAssertion(second.id as string)).status).toBe("retracted");
    const latest = await query("concept=ret/x&lens=latest");
    expect((latest.items as Json[])[0]?.id).toBe(first.id);
    // Votes and supersessions need an active target.
    const vote = await as("v1").request("POST", "/v1/vote", {
      assertion_id: second.id,
      vote: "up",
    });
    expect(vote.status).toBe(409);
    const admin = await as("admin").request("POST", "/v1/retract", { assertion_id: first.id });
    expect(admin.status).toBe(200);
    const none = await query("concept=ret/x&lens=latest");
    expect(none.items).toEqual([]);
  });
});

describe("epochs", () => {
  it("as_of_epoch sees exactly the state at the boundary on every shard", async () => {
    const concepts = Array.from({ length: 24 }, (_, i) => `ep/c${String(i).padStart(2, "0")}`);
    const before = new Map<string, Json>();
    for (const c of concepts)
      before.set(c, await assert("a1", { concept: c, value: `old-${c}`, confidence: 1 }));
    const shards = new Set([...before.values()].map((r) => r.shard));
    expect(shards.size).toBe(SHARDS);
    const epoch = await as("admin").request("POST", "/v1/epoch", { label: "before" });
    expect(epoch.status, epoch.text).toBe(201);
    const n = (epoch.json as Json).epoch as number;
    expect((epoch.json as Json).lsns).toHaveLength(SHARDS);
    // After the boundary: new claims, a supersession, a retraction and votes.
    for (const c of concepts.slice(0, 12))
      await assert("a2", { concept: c, value: `new-${c}`, confidence: 1 });
    const c12 = before.get("ep/c12") as Json;
    const sup = await as("a1").request("POST", "/v1/supersede", {
      supersedes: c12.id,
      assertion: { concept: "ep/c12", value: "replaced", confidence: 1 },
    });
    expect(sup.status).toBe(201);
    await as("a1").request("POST", "/v1/retract", {
      assertion_id: (before.get("ep/c13") as Json).id,
    });
    await as("v1").request("POST", "/v1/vote", {
      assertion_id: (before.get("ep/c14") as Json).id,
      vote: "down",
    });
    await assert("a1", { concept: "ep/new", value: "later", confidence: 1 });

    for (const c of concepts) {
      const then = await query(`concept=${c}&lens=latest&as_of_epoch=${n}`);
      expect((then.items as Json[])[0]?.value, c).toBe(`old-${c}`);
      expect((then.items as Json[])[0]?.status).toBe("active");
      const hist = await query(`concept=${c}&lens=history&as_of_epoch=${n}`);
      expect((hist.items as Json[]).length, c).toBe(1);
    }
    const c14 = await query(`concept=ep/c14&lens=consensus&as_of_epoch=${n}`);
    expect((c14.winner as Json).vote_score).toBe(0);
    const c14now = await query("concept=ep/c14&lens=consensus");
    expect((c14now.winner as Json).vote_score).toBe(-0.5);
    expect((await query(`concept=ep/new&lens=latest&as_of_epoch=${n}`)).items).toEqual([]);
    // Subtree at the boundary: exactly the 24 old values, merged from all shards in order.
    const sub = await query(`concept=ep/*&lens=latest&as_of_epoch=${n}&limit=1000`);
    expect((sub.items as Json[]).map((i) => i.value)).toEqual(concepts.map((c) => `old-${c}`));
    // Live: the new state.
    expect(((await query("concept=ep/c00&lens=latest")).items as Json[])[0]?.value).toBe(
      "new-ep/c00",
    );
    expect(((await query("concept=ep/c12&lens=latest")).items as Json[])[0]?.value).toBe(
      "replaced",
    );
    expect((await query("concept=ep/c13&lens=latest")).items).toEqual([]);
    const list = await as("reader").request("GET", "/v1/epochs");
    expect((list.json as Json).items as Json[]).toHaveLength(1);
    expect((list.json as Json).open_epoch).toBe(n + 1);
    const unknown = await as("reader").request(
      "GET",
      `/v1/query?concept=ep/c00&as_of_epoch=${n + 5}`,
    );
    expect(unknown.status).toBe(422);
    // New writes carry the open epoch.
    expect((await getAssertion(sup.json ? ((sup.json as Json).id as string) : "")).epoch).toBe(
      n + 1,
    );
  });

  it("subtree lenses page with a cursor across shards", async () => {
    for (let i = 0; i < 7; i++)
      await assert("a3", { concept: `pg/c${i}`, value: i, confidence: 1 });
    const seen: unknown[] = [];
    let cursor: string | null = null;
    for (let page = 0; page < 10; page++) {
      const q: string = `concept=pg/*&lens=consensus&limit=3${cursor === null ? "" : `&cursor=${cursor}`}`;
      const res = await query(q);
      for (const item of res.items as Json[]) seen.push((item.winner as Json).value);
      cursor = res.next_cursor as string | null;
      if (cursor === null) break;
    }
    expect(seen).toEqual([0, 1, 2, 3, 4, 5, 6]);
    // history over the subtree: by concept, newest first within one, paged across shards.
    await assert("a3", { concept: "pg/c3", value: 33, confidence: 1 });
    const rows: unknown[] = [];
    cursor = null;
    for (let page = 0; page < 20; page++) {
      const q: string = `concept=pg/*&lens=history&limit=2${cursor === null ? "" : `&cursor=${cursor}`}`;
      const res = await query(q);
      for (const item of res.items as Json[]) rows.push(`${item.concept}=${item.value}`);
      cursor = res.next_cursor as string | null;
      if (cursor === null) break;
    }
    expect(rows).toEqual([
      "pg/c0=0",
      "pg/c1=1",
      "pg/c2=2",
      "pg/c3=33",
      "pg/c3=3",
      "pg/c4=4",
      "pg/c5=5",
      "pg/c6=6",
    ]);
  });
});

describe("sources and provenance", () => {
  it("stores sources once, walks provenance and marks a cycle", async () => {
    // A cites source S before S exists; S is then registered as derived from A: a cycle.
    const sReq = { uri: "https://example.org/paper", title: "Paper", kind: "paper" };
    const sId = sourceRecord(sReq, "x", 0).id;
    const a = await assert("a2", {
      concept: "prov/x",
      value: 42,
      confidence: 0.7,
      sources: [sId],
    });
    expect(a.id).toBe(
      routableAssertionId({
        concept: "prov/x",
        agent: "a2",
        valueJson: canonicalJson(42),
        confidence: 0.7,
        sources: [sId],
        validFromMs: null,
        validToMs: null,
        nonce: null,
      }),
    );
    const s = await as("a1").request("POST", "/v1/source", { ...sReq, derived_from: [a.id] });
    expect(s.status, s.text).toBe(201);
    expect(s.json).toMatchObject({ id: sId, duplicate: false });
    const dup = await as("a3").request("POST", "/v1/source", sReq);
    expect(dup.json).toMatchObject({ id: sId, duplicate: true });
    const got = await as("reader").request("GET", `/v1/source/${sId}`);
    expect(got.json).toMatchObject({ uri: sReq.uri, derived_from: [a.id], created_by: "a1" });
    await as("v1").request("POST", "/v1/vote", { assertion_id: a.id, vote: "up" });
    const p = await as("reader").request("GET", `/v1/source/provenance?assertion_id=${a.id}`);
    expect(p.status, p.text).toBe(200);
    const body = p.json as Json;
    // a2 earned trust 0.6 from a vote in the consensus test, before this assertion; the up
    // vote below adds 0.5 of agreement: 2.0/3.0.
    const author = body.author as Json;
    expect(author.agent).toBe("a2");
    expect(author.trust_then as number).toBeCloseTo(0.6, 6);
    expect(author.trust_now as number).toBeCloseTo(2 / 3, 6);
    const src = (body.sources as Json[])[0] as Json;
    expect(src.id).toBe(sId);
    expect(src.derived_from).toEqual([{ id: a.id, cycle: true }]);
    expect(body.votes).toMatchObject([{ voter: "v1", vote: "up", weight: 0.5 }]);
    const missing = await as("reader").request("GET", `/v1/source/${"f".repeat(32)}`);
    expect(missing.status).toBe(404);
    const badUri = await as("a1").request("POST", "/v1/source", { uri: "" });
    expect(badUri.status).toBe(422);
  });
});

describe("durability of state changes", () => {
  it("keeps votes, supersessions, retractions, epochs and sources across kill -9", async () => {
    const x = await assert("a1", { concept: "dur/x", value: "v1", confidence: 1 });
    await as("v2").request("POST", "/v1/vote", { assertion_id: x.id, vote: "up" });
    const sup = await as("a1").request("POST", "/v1/supersede", {
      supersedes: x.id,
      assertion: { concept: "dur/x", value: "v2", confidence: 1 },
    });
    const y = await assert("a1", { concept: "dur/y", value: 1, confidence: 1 });
    await as("a1").request("POST", "/v1/retract", { assertion_id: y.id });
    const epochsBefore = ((await as("reader").request("GET", "/v1/epochs")).json as Json)
      .items as Json[];
    await server.kill9();
    server = await startServerProcess({ dataDir, shards: SHARDS });
    expect(await getAssertion(x.id as string)).toMatchObject({
      status: "superseded",
      superseded_by: (sup.json as Json).id,
    });
    expect((await getAssertion(y.id as string)).status).toBe("retracted");
    const p = await as("reader").request("GET", `/v1/source/provenance?assertion_id=${x.id}`);
    expect((p.json as Json).votes).toMatchObject([{ voter: "v2", vote: "up" }]);
    const epochsAfter = ((await as("reader").request("GET", "/v1/epochs")).json as Json).items;
    expect(epochsAfter).toEqual(epochsBefore);
    const c = await query("concept=cons/x&lens=consensus");
    expect((c.winner as Json).value).toBe("B");
    // Kill again right after more state writes, so WAL replay (not LMDB) must restore them;
    // then `stemedb verify` accepts every record kind and `wal-dump` decodes them.
    const z = await assert("a1", { concept: "dur/z", value: 1, confidence: 1 });
    await as("a1").request("POST", "/v1/retract", { assertion_id: z.id });
    await server.kill9();
    const dump = spawnSync(
      process.execPath,
      [CLI, "wal", "dump", "--data-dir", dataDir, "--shard", String(z.shard), "--json"],
      {
        encoding: "utf8",
      },
    );
    expect(dump.status, dump.stderr).toBe(0);
    expect(dump.stdout).toMatch(/"k":\s*"retract"/);
    const verify = spawnSync(process.execPath, [CLI, "verify", "--data-dir", dataDir], {
      encoding: "utf8",
    });
    expect(verify.status, verify.stdout + verify.stderr).toBe(0);
    server = await startServerProcess({ dataDir, shards: SHARDS });
    expect((await getAssertion(z.id as string)).status).toBe("retracted");
  });
});
