// Trust ranks: the Beta math on hand-computed examples (in-process, a fixed test clock), and
// the server: GET /v1/agents, the decay route and metric, survival of kill -9.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, afterEach, beforeEach, describe, expect, it } from "vitest";
import { TestClock } from "../src/domain/clock.js";
import { GoldStore } from "../src/store/gold_store.js";
import { MetaStore } from "../src/store/meta_store.js";
import { TrustBook } from "../src/trust/trust_book.js";
import {
  api,
  createKey,
  newDataDir,
  readAdminKeyFile,
  type ServerProcess,
  startServerProcess,
} from "./helpers/server_process.js";

const T0 = 1_700_000_000_000;
const H = 3_600_000; // half-life in the examples: 1 hour
const ID_A = "a".repeat(32);

function fixedClock(): TestClock {
  return new TestClock({ nowMs: () => T0 });
}

describe("TrustBook (Beta evidence, decay toward the prior)", () => {
  let dir: string;
  let meta: MetaStore;
  let clock: TestClock;
  let book: TrustBook;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "stemedb-"));
    meta = MetaStore.open(dir);
    clock = fixedClock();
    book = new TrustBook(meta.root, { clock, halfLifeMs: H });
  });
  afterEach(async () => {
    await meta.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it("gives an unknown agent the prior 0.5", () => {
    expect(book.trust("nobody")).toBe(0.5);
    expect(book.get("nobody")).toMatchObject({ alpha: 1, beta: 1, trust: 0.5, known: false });
  });

  it("adds evidence: trust = α/(α+β) with the 1/1 prior, counters by kind", async () => {
    expect(await book.addEvidence("a", { agree: 9, disagree: 0, kind: "gold" })).toEqual({
      before: 0.5,
      after: 10 / 11,
    });
    expect(book.trust("a")).toBe(10 / 11);
    expect(await book.addEvidence("b", { agree: 0, disagree: 3, kind: "quarantine" })).toEqual({
      before: 0.5,
      after: 0.2,
    });
    // Fractional weights: a vote weighted by its voter's trust.
    expect(await book.addEvidence("b", { agree: 0.75, disagree: 0, kind: "vote" })).toEqual({
      before: 0.2,
      after: 1.75 / 5.75,
    });
    expect(book.get("b")).toMatchObject({
      alpha: 1.75,
      beta: 4,
      known: true,
      createdAtMs: T0,
      updatedAtMs: T0,
      evidence: { quarantine_rejected: 3, votes_up_weight: 0.75, gold_agreed: 0 },
    });
  });

  it("decays after exactly 1 and 3 half-lives to the hand-computed values", async () => {
    await book.addEvidence("a", { agree: 9, disagree: 0, kind: "gold" });
    await book.addEvidence("b", { agree: 0, disagree: 8, kind: "escalation" });
    clock.advance(H);
    expect(await book.decay()).toEqual({ agents: 2, ranAtMs: T0 + H });
    // α = 1 + 9·2^-1 = 5.5; β = 1 + 8·2^-1 = 5
    expect(book.get("a")).toMatchObject({ alpha: 5.5, beta: 1, decayedAtMs: T0 + H });
    expect(book.trust("a")).toBe(5.5 / 6.5);
    expect(book.get("b")).toMatchObject({ alpha: 1, beta: 5 });
    clock.advance(2 * H);
    await book.decay();
    // Three half-lives from the start: α = 1 + 9/8 = 2.125, β = 1 + 8/8 = 2.
    expect(book.get("a")).toMatchObject({ alpha: 2.125, beta: 1 });
    expect(book.trust("a")).toBe(0.68);
    expect(book.get("b")).toMatchObject({ alpha: 1, beta: 2 });
    expect(book.trust("b")).toBe(1 / 3);
    // The counters keep the lifetime totals.
    expect(book.get("a").evidence.gold_agreed).toBe(9);
    expect(book.lastDecay).toEqual({ agents: 2, ranAtMs: T0 + 3 * H });
  });

  it("decays an agent to now before adding new evidence (Δt since its last update)", async () => {
    await book.addEvidence("c", { agree: 4, disagree: 0, kind: "gold" });
    clock.advance(H);
    // α = 1 + 4·½ + 1 = 4, β = 1: the reader saw 5/6 before.
    expect(await book.addEvidence("c", { agree: 1, disagree: 0, kind: "gold" })).toEqual({
      before: 5 / 6,
      after: 0.8,
    });
    clock.advance(H);
    await book.decay();
    expect(book.get("c").alpha).toBe(2.5); // 1 + 3·½
  });

  it("is on disk when addEvidence and decay resolve, and reloads", async () => {
    await book.addEvidence("d", { agree: 1, disagree: 2, kind: "vote" });
    clock.advance(H);
    await book.decay();
    await meta.close();
    meta = MetaStore.open(dir);
    const again = new TrustBook(meta.root, { clock, halfLifeMs: H });
    expect(again.get("d")).toMatchObject({ alpha: 1.5, beta: 2, known: true });
    expect(again.lastDecay).toEqual({ agents: 1, ranAtMs: T0 + H });
  });

  it("commits evidence and what marks it counted in the same LMDB transaction", async () => {
    const gold = new GoldStore(meta.root);
    const done = book.addEvidence("g", { agree: 1, disagree: 0, kind: "gold" }, () =>
      gold.putCounted("g", [[ID_A, true]]),
    );
    // Neither is visible before the one commit (lmdb-js runs the callback in its write
    // transaction; a crash before it keeps neither, after it both).
    expect(gold.counted("g", ID_A)).toBe(false);
    await done;
    expect(gold.counted("g", ID_A)).toBe(true);
    await meta.close();
    meta = MetaStore.open(dir);
    expect(new TrustBook(meta.root, { clock, halfLifeMs: H }).get("g")).toMatchObject({
      alpha: 2,
      beta: 1,
    });
    expect(new GoldStore(meta.root).counted("g", ID_A)).toBe(true);
  });

  it("refuses invalid agents, kinds and weights", async () => {
    await expect(
      book.addEvidence("bad id", { agree: 1, disagree: 0, kind: "gold" }),
    ).rejects.toThrow(RangeError);
    for (const w of [-1, Number.NaN, Number.POSITIVE_INFINITY, 2e6]) {
      await expect(book.addEvidence("a", { agree: w, disagree: 0, kind: "gold" })).rejects.toThrow(
        RangeError,
      );
    }
    await expect(
      book.addEvidence("a", { agree: 1, disagree: 0, kind: "nope" as "gold" }),
    ).rejects.toThrow(RangeError);
    expect(book.size).toBe(0);
  });
});

describe("trust over HTTP (real server, test clock)", () => {
  let dataDir: string;
  let server: ServerProcess;
  const env = {
    STEMEDB_TEST_CLOCK: "on",
    STEMEDB_TRUST_HALF_LIFE_MS: String(H),
    STEMEDB_TRUST_DECAY_INTERVAL_MS: String(365 * 86_400_000),
  };
  afterAll(async () => {
    await server?.kill9();
    if (dataDir !== undefined) fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it("serves trust and evidence, decays on the admin route, exports the run time, survives kill -9", async () => {
    // Evidence written before the server starts (no HTTP route adds evidence yet).
    dataDir = newDataDir();
    {
      const meta = MetaStore.open(dataDir);
      const book = new TrustBook(meta.root, { clock: new TestClock(), halfLifeMs: H });
      await book.addEvidence("agent-x", { agree: 9, disagree: 0, kind: "gold" });
      await book.decay(); // a first run, so the server does not run one at startup
      await meta.close();
    }
    server = await startServerProcess({ dataDir, env });
    const adminKey = readAdminKeyFile(dataDir);
    const readerKey = await createKey(server.baseUrl, adminKey, "reader");
    const reader = api(server.baseUrl, readerKey);
    const admin = api(server.baseUrl, adminKey);

    const unknown = await reader.request("GET", "/v1/agents/nobody");
    expect(unknown.status).toBe(200);
    expect(unknown.json).toMatchObject({
      agent: "nobody",
      known: false,
      trust: 0.5,
      alpha: 1,
      beta: 1,
      updated_at: null,
      breaker: { state: "closed" },
    });
    expect((await reader.request("GET", "/v1/agents/bad%20id")).status).toBe(400);

    const x = (await reader.request("GET", "/v1/agents/agent-x")).json as Record<string, number>;
    expect(x).toMatchObject({ agent: "agent-x", known: true, beta: 1 });
    expect(x.alpha).toBeCloseTo(10, 1);
    expect((x as unknown as { evidence: Record<string, number> }).evidence.gold_agreed).toBe(9);

    expect((await reader.request("POST", "/v1/admin/decay_trust_ranks")).status).toBe(403);
    const moved = await admin.request("POST", "/v1/admin/test/clock", { advance_ms: H });
    expect(moved.status).toBe(200);
    const decay = await admin.request("POST", "/v1/admin/decay_trust_ranks");
    expect(decay.status).toBe(200);
    const run = decay.json as { agents: number; ran_at: number; half_life_ms: number };
    expect(run).toMatchObject({ agents: 1, half_life_ms: H });
    expect(run.ran_at).toBeGreaterThanOrEqual((moved.json as { now_ms: number }).now_ms);

    const after = (await reader.request("GET", "/v1/agents/agent-x")).json as Record<
      string,
      number
    >;
    // One half-life (plus the seconds the test took, ≪ 1 h): α ≈ 1 + 9·½.
    expect(after.alpha).toBeCloseTo(5.5, 1);
    expect(after.decayed_at).toBe(run.ran_at);

    const metrics = (await api(server.baseUrl, null).request("GET", "/metrics")).text;
    const m = /^stemedb_trust_decay_last_run_timestamp_seconds (\S+)$/m.exec(metrics);
    expect(Number(m?.[1])).toBe(run.ran_at / 1000);

    const audit = await admin.request("GET", "/v1/audit?action=trust.decay");
    const entries = (audit.json as { items: Array<Record<string, unknown>> }).items;
    expect(entries.at(-1)).toMatchObject({
      actor: "admin",
      outcome: "ok",
      request_id: decay.headers.get("x-request-id"),
      details: { agents: 1, ran_at: run.ran_at },
    });

    await server.kill9();
    server = await startServerProcess({ dataDir, env });
    const back = await api(server.baseUrl, readerKey).request("GET", "/v1/agents/agent-x");
    expect(back.json).toMatchObject({ alpha: after.alpha, beta: 1, decayed_at: run.ran_at });
    const metrics2 = (await api(server.baseUrl, null).request("GET", "/metrics")).text;
    expect(metrics2).toContain(
      `stemedb_trust_decay_last_run_timestamp_seconds ${run.ran_at / 1000}`,
    );
  });
});
