// Gold standards, quarantine, probation, escalations and their audit trail against a real
// Trust decays continuously (30-day half-life) on a clock that also follows real time, so
// trust figures after a few seconds are compared to 5 decimals, after the clock moved 10 min to 3.
// server whose clock the test moves (STEMEDB_TEST_CLOCK=on), then kill -9 and restart.
import fs from "node:fs";
import path from "node:path";
import { open } from "lmdb";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
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
const ENV = {
  STEMEDB_TEST_CLOCK: "on",
  STEMEDB_QUARANTINE_MIN_TRUST: "0.3",
  STEMEDB_BREAKER_THRESHOLD: "3",
  STEMEDB_BREAKER_MIN_VOLUME: "3",
  STEMEDB_BREAKER_COOLDOWN_MS: "30000",
};
const start = () => startServerProcess({ dataDir, shards: 2, env: ENV });

function as(who: string) {
  return api(server.baseUrl, keys[who] as string);
}
async function post(who: string, path: string, body: unknown, want = 201): Promise<Json> {
  const res = await as(who).request("POST", path, body);
  expect(res.status, `${path}: ${res.text}`).toBe(want);
  return res.json as Json;
}
async function get(path: string): Promise<Json> {
  const res = await as("admin").request("GET", path);
  expect(res.status, `${path}: ${res.text}`).toBe(200);
  return res.json as Json;
}
const trustOf = async (agent: string) => (await get(`/v1/agents/${agent}`)).trust as number;

async function waitForEscalation(concept: string): Promise<Json> {
  for (let i = 0; i < 200; i++) {
    const list = await get("/v1/admin/escalations");
    const found = (list.items as Json[]).find((e) => e.concept === concept);
    if (found !== undefined) return found;
    await new Promise((r) => setTimeout(r, 25)); // the check runs off the request path
  }
  throw new Error(`no escalation opened for ${concept}`);
}

/**
 * A crash right after a resolve stored its plan: kill -9, write the plan into the escalation's
 * record in the server's meta env (closed while it is down), start again.
 */
async function crashWithPlan(escalationId: number, plan: Json): Promise<void> {
  await server.kill9();
  const env = open({ path: path.join(dataDir, "meta"), maxDbs: 32 });
  const escalations = env.openDB<Json, number>({ name: "escalations", encoding: "json" });
  const stored = escalations.get(escalationId) as Json;
  await escalations.put(escalationId, { ...stored, plan });
  await env.close();
  server = await start();
}

beforeAll(async () => {
  dataDir = newDataDir();
  server = await start();
  keys.admin = readAdminKeyFile(dataDir);
  for (const agent of ["good", "rival", "bad", "flaky"]) {
    keys[agent] = await createKey(server.baseUrl, keys.admin, "agent", agent);
  }
});

afterAll(async () => {
  await server?.kill9();
  if (dataDir !== undefined) fs.rmSync(dataDir, { recursive: true, force: true });
});

describe("gold standards and quarantine", () => {
  it("quarantines contradictions, verifies agents into trust, and audits decisions", async () => {
    for (let i = 1; i <= 3; i++) {
      const g = await post("admin", "/v1/gold_standard", {
        concept: `gold/c${i}`,
        value: i * 10,
        tolerance: 0.5,
      });
      expect(g).toMatchObject({ concept: `gold/c${i}`, value: i * 10, tolerance: 0.5 });
    }
    // Within tolerance agrees; both trusted agents get three agreements.
    for (const agent of ["good", "rival"]) {
      for (let i = 1; i <= 3; i++) {
        const r = await post(agent, "/v1/assert", {
          concept: `gold/c${i}`,
          value: i * 10 + 0.25,
          confidence: 1,
        });
        expect(r.status).toBe("active");
      }
    }
    const wrong = await post("bad", "/v1/assert", { concept: "gold/c1", value: 99, confidence: 1 });
    expect(wrong.status).toBe("quarantined");
    // Retries answer as the first write did and do not count against the breaker again
    // (threshold 3: four bad outcomes would trip it).
    for (let i = 0; i < 3; i++) {
      const retry = await post("bad", "/v1/assert", {
        concept: "gold/c1",
        value: 99,
        confidence: 1,
      });
      expect(retry).toMatchObject({ id: wrong.id, status: "quarantined", duplicate: true });
    }
    expect(((await get("/v1/agents/bad")).breaker as Json).state).toBe("closed");
    // Invisible to lenses, visible in history and in the admin's list.
    const latest = await get("/v1/query?concept=gold/c1&lens=latest");
    expect((latest.items as Json[])[0]?.agent).toBe("rival");
    const history = await get("/v1/query?concept=gold/c1&lens=history");
    expect((history.items as Json[])[0]).toMatchObject({
      id: wrong.id,
      status: "quarantined",
      quarantine_reason: "gold_contradiction",
    });
    const held = await get("/v1/admin/quarantine?agent=bad");
    expect((held.items as Json[]).map((i) => i.id)).toEqual([wrong.id]);
    const gold = await get("/v1/query?concept=gold/c1&lens=gold");
    expect(gold).toMatchObject({ source: "gold_standard", gold: { value: 10, tolerance: 0.5 } });

    // verify: 3 agreements on the prior 1/1 -> trust 4/5; a second run adds nothing.
    const v = await post("admin", "/v1/gold_standard/verify", { agent: "good" }, 200);
    expect(v).toMatchObject({
      checked: 3,
      agreed: 3,
      disagreed: 0,
      accuracy: 1,
      trust_before: 0.5,
    });
    expect(v.trust_after as number).toBeCloseTo(0.8, 12);
    const again = await post("admin", "/v1/gold_standard/verify", { agent: "good" }, 200);
    expect(again).toMatchObject({ checked: 3, new_evidence: { agree: 0, disagree: 0 } });
    expect(again.trust_after as number).toBeCloseTo(0.8, 12);
    await post("admin", "/v1/gold_standard/verify", { agent: "rival" }, 200);
    // The quarantined contradiction counts: 1 disagreement -> 1/3.
    const vb = await post("admin", "/v1/gold_standard/verify", { agent: "bad" }, 200);
    expect(vb).toMatchObject({ checked: 1, agreed: 0, disagreed: 1, accuracy: 0 });
    expect(vb.trust_after as number).toBeCloseTo(1 / 3, 12);

    // Reject: rejected, author trust down to 1/4 (below 0.3: its next writes are held).
    const rej = await post("admin", "/v1/admin/quarantine/reject", { assertion_id: wrong.id }, 200);
    expect(rej).toMatchObject({ status: "rejected", duplicate: false });
    expect(await trustOf("bad")).toBeCloseTo(0.25, 5);
    expect(((await get("/v1/admin/quarantine?agent=bad")).items as Json[]).length).toBe(0);
    const low = await post("bad", "/v1/assert", { concept: "misc/x", value: 1, confidence: 1 });
    expect(low.status).toBe("quarantined");
    const lowRec = await get(`/v1/assertions/${low.id}`);
    expect(lowRec.quarantine_reason).toBe("low_trust");
    // Approve: active, visible to latest, author trust up (2 of 5).
    const ok = await post("admin", "/v1/admin/quarantine/approve", { assertion_id: low.id }, 200);
    expect(ok).toMatchObject({ status: "active" });
    expect(await trustOf("bad")).toBeCloseTo(0.4, 5);
    expect(((await get("/v1/query?concept=misc/x")).items as Json[])[0]?.id).toBe(low.id);
    const twice = await post(
      "admin",
      "/v1/admin/quarantine/approve",
      { assertion_id: low.id },
      200,
    );
    expect(twice.duplicate).toBe(true);
    // Each decision is audited.
    const actions = ((await get("/v1/audit?limit=1000")).items as Json[]).map((e) => e.action);
    for (const a of [
      "gold_standard.set",
      "gold_standard.verify",
      "quarantine.reject",
      "quarantine.approve",
    ]) {
      expect(actions).toContain(a);
    }
    const metrics = await (await fetch(`${server.baseUrl}/metrics`)).text();
    expect(metrics).toMatch(/stemedb_quarantine_pending\{shard="\d"\} 0/);
  });

  it("puts a tripped agent on probation: half-open probes are stored but held", async () => {
    for (let i = 0; i < 3; i++) {
      await post("flaky", "/v1/assert", { concept: "p/x", value: 1, confidence: 7 }, 422);
    }
    const refused = await as("flaky").request("POST", "/v1/assert", {
      concept: "p/x",
      value: 1,
      confidence: 1,
    });
    expect(refused.status).toBe(429);
    expect(Number(refused.headers.get("retry-after"))).toBeGreaterThan(0);
    await post("admin", "/v1/admin/test/clock", { advance_ms: 31_000 }, 200);
    const probe = await post("flaky", "/v1/assert", { concept: "p/x", value: 2, confidence: 1 });
    expect(probe.status).toBe("quarantined");
    expect((await get(`/v1/assertions/${probe.id}`)).quarantine_reason).toBe("probation");
    // Two more good probes close the breaker; probation lasts STEMEDB_PROBATION_MS (10 min)
    // from the trip, then writes are active again.
    for (let i = 0; i < 2; i++)
      await post("flaky", "/v1/assert", { concept: "p/x", value: 3 + i, confidence: 1 });
    expect(((await get("/v1/agents/flaky")).breaker as Json).state).toBe("closed");
    const still = await post("flaky", "/v1/assert", { concept: "p/x", value: 9, confidence: 1 });
    expect(still.status).toBe("quarantined");
    await post("admin", "/v1/admin/test/clock", { advance_ms: 600_000 }, 200);
    const free = await post("flaky", "/v1/assert", { concept: "p/x", value: 10, confidence: 1 });
    expect(free.status).toBe("active");
    // A retry of a held write is answered "quarantined" as it was first, though a new write
    // would now be active.
    const retried = await post("flaky", "/v1/assert", { concept: "p/x", value: 9, confidence: 1 });
    expect(retried).toMatchObject({ id: still.id, status: "quarantined", duplicate: true });
  });
});

describe("escalations", () => {
  it("opens when trusted agents disagree with a thin margin; resolving supersedes the losers", async () => {
    const yes = await post("good", "/v1/assert", { concept: "esc/x", value: "yes", confidence: 1 });
    const no = await post("rival", "/v1/assert", { concept: "esc/x", value: "no", confidence: 1 });
    expect(no.status).toBe("active");
    const esc = await waitForEscalation("esc/x");
    expect(esc).toMatchObject({ status: "open", margin: 0 });
    expect((esc.sides as Json[]).map((s) => s.value).sort()).toEqual(["no", "yes"]);
    const metrics = await (await fetch(`${server.baseUrl}/metrics`)).text();
    expect(metrics).toMatch(/stemedb_escalations_open 1/);
    const resolved = await post(
      "admin",
      "/v1/admin/escalation/resolve",
      { escalation_id: esc.id, winner_assertion_id: yes.id, reason: "checked the source" },
      200,
    );
    expect(resolved).toMatchObject({ status: "resolved", winner_id: yes.id, superseded: [no.id] });
    expect(await get(`/v1/assertions/${no.id}`)).toMatchObject({
      status: "superseded",
      superseded_by: yes.id,
    });
    expect(((await get("/v1/query?concept=esc/x")).items as Json[])[0]?.id).toBe(yes.id);
    // Winner's author gains an agreement (5/6), the loser's a disagreement (4/6).
    expect(await trustOf("good")).toBeCloseTo(5 / 6, 3);
    expect(await trustOf("rival")).toBeCloseTo(4 / 6, 3);
    const again = await as("admin").request("POST", "/v1/admin/escalation/resolve", {
      escalation_id: esc.id,
      value: "maybe",
    });
    expect(again.status).toBe(409);
    const actions = ((await get("/v1/audit?limit=1000")).items as Json[]).map((e) => e.action);
    expect(actions).toContain("escalation.resolve");
  });
});

describe("an escalation whose planned winner fell", () => {
  it("drops the plan with 409, and the next resolve plans again", async () => {
    const yes = await post("good", "/v1/assert", { concept: "esc/z", value: "yes", confidence: 1 });
    const no = await post("good", "/v1/assert", { concept: "esc/z", value: "no", confidence: 0.9 });
    const esc = await waitForEscalation("esc/z");
    // A plan with `yes` as winner was stored when the server crashed.
    await crashWithPlan(esc.id as number, {
      winner_id: yes.id,
      losers: [no.id],
      evidence: [["good", 1, 1]],
      resolved_by: "admin",
      reason: null,
    });
    await post("good", "/v1/retract", { assertion_id: yes.id }, 200);
    const alpha = ((await get("/v1/agents/good")) as Json).alpha as number;
    const res = await as("admin").request("POST", "/v1/admin/escalation/resolve", {
      escalation_id: esc.id,
      winner_assertion_id: no.id,
    });
    expect(res.status, res.text).toBe(409);
    expect((res.json as { error: Json }).error.code).toBe("not_active");
    expect((await get(`/v1/assertions/${no.id}`)).status).toBe("active");
    const listed = ((await get("/v1/admin/escalations")).items as Json[]).find(
      (e) => e.id === esc.id,
    );
    expect(listed).toMatchObject({ status: "open" });
    expect(listed).not.toHaveProperty("resolving");
    const resolved = await post(
      "admin",
      "/v1/admin/escalation/resolve",
      { escalation_id: esc.id, winner_assertion_id: no.id },
      200,
    );
    expect(resolved).toMatchObject({ status: "resolved", winner_id: no.id, superseded: [] });
    // Only the second plan's evidence: one agreement (the retracted `yes` is not counted).
    expect(((await get("/v1/agents/good")) as Json).alpha as number).toBeCloseTo(alpha + 1, 3);
  });
});

describe("a quarantine decision whose trust evidence a crash lost", () => {
  it("is counted, once, when the decision is retried", async () => {
    const held = await post("rival", "/v1/assert", {
      concept: "gold/c3",
      value: 12_345,
      confidence: 1,
    });
    expect(held.status).toBe("quarantined");
    // The meta store as it is before the decision, kept aside while the server is down.
    await server.kill9();
    const meta = path.join(dataDir, "meta");
    const saved = `${dataDir}-meta-before`;
    fs.cpSync(meta, saved, { recursive: true });
    server = await start();
    const before = (await get("/v1/agents/rival")) as Json;
    const first = await post(
      "admin",
      "/v1/admin/quarantine/approve",
      { assertion_id: held.id },
      200,
    );
    expect(first).toMatchObject({ duplicate: false });
    // A crash after the shard made the decision durable and before the meta store took the
    // evidence: the shard keeps the decision, the meta store is as it was.
    await server.kill9();
    fs.rmSync(meta, { recursive: true, force: true });
    fs.renameSync(saved, meta);
    server = await start();
    expect((await get(`/v1/assertions/${held.id}`)).status).toBe("active");
    expect(((await get("/v1/agents/rival")) as Json).alpha).toBeCloseTo(before.alpha as number, 3);
    const retried = await post(
      "admin",
      "/v1/admin/quarantine/approve",
      { assertion_id: held.id },
      200,
    );
    expect(retried).toMatchObject({ duplicate: true });
    expect(retried.author_trust).not.toBeNull();
    const after = (await get("/v1/agents/rival")) as Json;
    expect(after.alpha as number).toBeCloseTo((before.alpha as number) + 1, 3);
    // Counted now: a further retry adds nothing.
    const again = await post(
      "admin",
      "/v1/admin/quarantine/approve",
      { assertion_id: held.id },
      200,
    );
    expect(again).toMatchObject({ duplicate: true, author_trust: null });
    expect(((await get("/v1/agents/rival")) as Json).alpha).toBeCloseTo(after.alpha as number, 6);
  });
});

describe("an interrupted escalation resolve", () => {
  it("is finished by the next resolve as planned, its trust evidence counted once", async () => {
    const yes = await post("good", "/v1/assert", { concept: "esc/y", value: "yes", confidence: 1 });
    // Only "good" is trusted enough (≥ 0.7) to make a contest worth escalating, so it takes
    // both sides: yes 5/6 × 1 against no 5/6 × (0.6 + 0.4), a margin of 0.
    const no1 = await post("good", "/v1/assert", {
      concept: "esc/y",
      value: "no",
      confidence: 0.6,
    });
    const no2 = await post("good", "/v1/assert", {
      concept: "esc/y",
      value: "no",
      confidence: 0.4,
    });
    const esc = await waitForEscalation("esc/y");
    const agent = async (who: string) => (await get(`/v1/agents/${who}`)) as Json;
    const good0 = await agent("good");
    // A crash right after the plan was stored.
    await crashWithPlan(esc.id as number, {
      winner_id: yes.id,
      losers: [no1.id, no2.id],
      evidence: [["good", 1, 2]],
      resolved_by: "admin",
      reason: "interrupted",
    });
    // Meanwhile one loser was retracted: the resumed resolve skips it.
    await post("good", "/v1/retract", { assertion_id: no2.id }, 200);
    const listed = ((await get("/v1/admin/escalations")).items as Json[]).find(
      (e) => e.id === esc.id,
    );
    expect(listed).toMatchObject({ status: "open", resolving: true });
    expect(listed).not.toHaveProperty("plan");
    // This request names another winner; the stored plan wins.
    const resolved = await post(
      "admin",
      "/v1/admin/escalation/resolve",
      { escalation_id: esc.id, value: "maybe" },
      200,
    );
    expect(resolved).toMatchObject({
      status: "resolved",
      winner_id: yes.id,
      superseded: [no1.id],
      reason: "interrupted",
    });
    expect(resolved).not.toHaveProperty("plan");
    expect((await get(`/v1/assertions/${no1.id}`)).status).toBe("superseded");
    const good1 = await agent("good");
    expect(good1.alpha as number).toBeCloseTo((good0.alpha as number) + 1, 3);
    expect(good1.beta as number).toBeCloseTo((good0.beta as number) + 2, 3);
    const again = await as("admin").request("POST", "/v1/admin/escalation/resolve", {
      escalation_id: esc.id,
      winner_assertion_id: yes.id,
    });
    expect(again.status).toBe(409);
    expect((await agent("good")).alpha as number).toBeCloseTo(good1.alpha as number, 6);
  });
});

describe("supersession by trust", () => {
  it("lets a more trusted agent supersede, and not a less trusted one", async () => {
    const theirs = await post("bad", "/v1/assert", { concept: "perm/x", value: 1, confidence: 1 });
    expect(theirs.status).toBe("active");
    const mine = await post("good", "/v1/assert", { concept: "perm/y", value: 1, confidence: 1 });
    expect(await trustOf("good")).toBeGreaterThan(await trustOf("bad"));
    const up = await post("good", "/v1/supersede", {
      supersedes: theirs.id,
      assertion: { concept: "perm/x", value: 2, confidence: 1 },
    });
    expect(up.supersedes).toBe(theirs.id);
    const down = await as("bad").request("POST", "/v1/supersede", {
      supersedes: mine.id,
      assertion: { concept: "perm/y", value: 2, confidence: 1 },
    });
    expect(down.status).toBe(403);
    expect((down.json as { error: Json }).error.code).toBe("not_permitted");
  });
});

describe("restart", () => {
  it("keeps gold standards, decisions, trust, escalations and the audit chain across kill -9", async () => {
    const before = {
      good: await trustOf("good"),
      bad: await trustOf("bad"),
      gold: await get("/v1/gold_standard"),
      escalations: await get("/v1/admin/escalations?status=all"),
    };
    await server.kill9();
    server = await start();
    expect(await trustOf("good")).toBe(before.good);
    expect(await trustOf("bad")).toBe(before.bad);
    expect(await get("/v1/gold_standard")).toEqual(before.gold);
    expect(await get("/v1/admin/escalations?status=all")).toEqual(before.escalations);
    const wrong = await post("bad", "/v1/assert", { concept: "gold/c2", value: 1, confidence: 1 });
    expect(wrong.status).toBe("quarantined");
    expect((await get("/v1/audit/verify")).ok).toBe(true);
  });
});
