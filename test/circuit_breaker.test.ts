// Circuit breakers: the state machine in-process (window, trip rule, cooldown, probes, bounds,
// persistence), then over HTTP with a real server and a test clock: 429 + Retry-After, half-open,
// close, re-open on a failed probe, audited reset, and an open breaker surviving kill -9.
import fs from "node:fs";
import net from "node:net";
import { afterAll, describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../src/config.js";
import {
  type BreakerConfig,
  type BreakerPersistence,
  CircuitBreakers,
  type PersistedBreaker,
} from "../src/safety/circuit_breaker.js";
import {
  type Api,
  api,
  createKey,
  newDataDir,
  readAdminKeyFile,
  type ServerProcess,
  startServerProcess,
} from "./helpers/server_process.js";

const T0 = 1_700_000_000_000;
const CONFIG: BreakerConfig = {
  windowMs: 10_000,
  threshold: 3,
  minVolume: 4,
  minBadRatio: 0.5,
  cooldownMs: 5_000,
  halfOpenProbes: 2,
  maxTrackedAgents: 3,
};

class MemoryPersistence implements BreakerPersistence {
  readonly stored = new Map<string, PersistedBreaker>();
  save(agent: string, state: PersistedBreaker | null): Promise<void> {
    if (state === null) this.stored.delete(agent);
    else this.stored.set(agent, state);
    return Promise.resolve();
  }
}

function bad(b: CircuitBreakers, agent: string, n: number, nowMs = T0): void {
  for (let i = 0; i < n; i++) b.record(agent, "bad", nowMs);
}

describe("CircuitBreakers (in-process)", () => {
  it("trips only with threshold, minimum volume and bad ratio all met", () => {
    const b = new CircuitBreakers(CONFIG, new MemoryPersistence());
    bad(b, "a", 3);
    expect(b.stateOf("a", T0).state).toBe("closed"); // volume 3 < 4
    b.record("a", "ok", T0);
    expect(b.stateOf("a", T0)).toMatchObject({
      state: "open",
      bad_in_window: 3,
      total_in_window: 4,
    });
    // A busy, mostly healthy agent: 3 bad out of 20 is below the ratio.
    for (let i = 0; i < 17; i++) b.record("busy", "ok", T0);
    bad(b, "busy", 3);
    expect(b.stateOf("busy", T0).state).toBe("closed");
    expect(b.trips).toBe(1);
  });

  it("forgets outcomes older than the window", () => {
    const b = new CircuitBreakers(CONFIG, new MemoryPersistence());
    bad(b, "a", 2);
    b.record("a", "ok", T0);
    bad(b, "a", 2, T0 + CONFIG.windowMs);
    expect(b.stateOf("a", T0 + CONFIG.windowMs)).toMatchObject({
      state: "closed",
      bad_in_window: 2,
    });
  });

  it("refuses while open, half-opens after the cooldown, closes after the probes succeed", () => {
    const store = new MemoryPersistence();
    const b = new CircuitBreakers(CONFIG, store);
    bad(b, "a", 4);
    expect(b.admit("a", T0)).toEqual({ ok: false, retryAfterS: 5 });
    expect(b.admit("a", T0 + 4_001)).toEqual({ ok: false, retryAfterS: 1 });
    expect(store.stored.get("a")).toEqual({
      state: "open",
      openedAtMs: T0,
      retryAtMs: T0 + 5_000,
      trips: 1,
    });
    const t = T0 + 5_000;
    expect(b.admit("a", t)).toEqual({ ok: true });
    expect(b.admit("a", t)).toEqual({ ok: true });
    expect(b.admit("a", t)).toEqual({ ok: false, retryAfterS: 1 }); // 2 probes in flight
    expect(store.stored.get("a")?.state).toBe("half_open");
    b.record("a", "ok", t);
    expect(b.stateOf("a", t).state).toBe("half_open");
    b.record("a", "ok", t);
    expect(b.stateOf("a", t)).toMatchObject({ state: "closed", bad_in_window: 0 });
    expect(store.stored.has("a")).toBe(false);
  });

  it("re-opens on a failed probe; a released probe frees its slot", () => {
    const b = new CircuitBreakers({ ...CONFIG, halfOpenProbes: 1 }, new MemoryPersistence());
    bad(b, "a", 4);
    const t = T0 + 5_000;
    expect(b.admit("a", t).ok).toBe(true);
    expect(b.admit("a", t).ok).toBe(false);
    b.release("a");
    expect(b.admit("a", t).ok).toBe(true);
    b.record("a", "bad", t);
    expect(b.stateOf("a", t)).toMatchObject({ state: "open", trips: 2, retry_at: t + 5_000 });
    expect(b.admit("a", t + 4_999).ok).toBe(false);
  });

  it("restores open breakers from persistence", () => {
    const store = new MemoryPersistence();
    new CircuitBreakers(CONFIG, store).record("a", "bad", T0, 4);
    const again = new CircuitBreakers(CONFIG, store, store.stored.entries());
    expect(again.admit("a", T0 + 1_000)).toEqual({ ok: false, retryAfterS: 4 });
    expect(again.counts(T0 + 1_000)).toEqual({ closed: 0, open: 1, half_open: 0 });
    expect(again.counts(T0 + 5_000)).toEqual({ closed: 0, open: 0, half_open: 1 });
    // Half-open with no probe for a whole window: the agent went quiet, the breaker closes.
    expect(again.counts(T0 + 5_000 + CONFIG.windowMs)).toEqual({
      closed: 1,
      open: 0,
      half_open: 0,
    });
    expect(store.stored.has("a")).toBe(false);
  });

  it("bounds tracked agents: evicts idle closed ones, never open ones, else fails open", () => {
    const b = new CircuitBreakers(CONFIG, new MemoryPersistence());
    b.record("a", "bad", T0, 4); // open
    b.record("b", "ok", T0);
    b.record("c", "ok", T0);
    b.record("d", "ok", T0); // evicts b, the least recently recorded closed agent
    expect(b.tracked).toBe(3);
    expect(b.list(T0, { limit: 10 }).map((s) => s.agent)).toEqual(["a", "c", "d"]);
    b.record("c", "bad", T0, 4);
    b.record("d", "bad", T0, 4);
    b.record("e", "bad", T0, 4); // every slot holds an open breaker: e is not tracked
    expect(b.admit("e", T0)).toEqual({ ok: true });
    expect(b.counts(T0)).toEqual({ closed: 0, open: 3, half_open: 0 });
    expect(b.list(T0, { limit: 2, afterAgent: "a", state: "open" }).map((s) => s.agent)).toEqual([
      "c",
      "d",
    ]);
  });

  it("reset closes and reports the previous state", () => {
    const b = new CircuitBreakers(CONFIG, new MemoryPersistence());
    b.record("a", "bad", T0, 4);
    expect(b.reset("a", T0)).toBe("open");
    expect(b.admit("a", T0)).toEqual({ ok: true });
    expect(b.reset("never-seen", T0)).toBe("closed");
  });
});

describe("trust and breaker configuration", () => {
  it("has documented defaults and refuses bad values", () => {
    expect(loadConfig({}).safety).toEqual({
      trustHalfLifeMs: 30 * 86_400_000,
      trustDecayIntervalMs: 86_400_000,
      breakerWindowMs: 60_000,
      breakerThreshold: 10,
      breakerMinVolume: 20,
      breakerMinBadRatio: 0.5,
      breakerCooldownMs: 30_000,
      breakerHalfOpenProbes: 3,
      testClock: false,
      quarantineMinTrust: 0.2,
      probationMs: 600_000,
      escalationMargin: 0.25,
      escalationMinTrust: 0.7,
    });
    expect(loadConfig({}).writeChecks).toBe(true);
    expect(loadConfig({ STEMEDB_WRITE_CHECKS: "off" }).writeChecks).toBe(false);
    expect(() => loadConfig({ STEMEDB_ESCALATION_MARGIN: "2" })).toThrow();
    expect(loadConfig({ STEMEDB_BREAKER_MIN_BAD_RATIO: ".25" }).safety.breakerMinBadRatio).toBe(
      0.25,
    );
    for (const env of [
      { STEMEDB_BREAKER_MIN_BAD_RATIO: "1.5" },
      { STEMEDB_BREAKER_MIN_BAD_RATIO: "-0" },
      { STEMEDB_BREAKER_THRESHOLD: "0" },
      { STEMEDB_TRUST_HALF_LIFE_MS: "10" },
      { STEMEDB_TEST_CLOCK: "yes" },
    ]) {
      expect(() => loadConfig(env), JSON.stringify(env)).toThrow(ConfigError);
    }
    expect(loadConfig({ STEMEDB_TEST_CLOCK: "on" }).safety.testClock).toBe(true);
  });
});

describe("circuit breakers over HTTP (real server, test clock)", () => {
  let dataDir: string;
  let server: ServerProcess;
  const COOLDOWN_MS = 10_000;
  const env = {
    STEMEDB_TEST_CLOCK: "on",
    STEMEDB_BREAKER_WINDOW_MS: "60000",
    STEMEDB_BREAKER_THRESHOLD: "3",
    STEMEDB_BREAKER_MIN_VOLUME: "3",
    STEMEDB_BREAKER_MIN_BAD_RATIO: "0.5",
    STEMEDB_BREAKER_COOLDOWN_MS: String(COOLDOWN_MS),
    STEMEDB_BREAKER_HALF_OPEN_PROBES: "1",
  };
  afterAll(async () => {
    await server?.kill9();
    if (dataDir !== undefined) fs.rmSync(dataDir, { recursive: true, force: true });
  });

  let n = 0;
  const valid = () => ({ concept: "breaker/test", value: n++, confidence: 0.5 });
  const invalid = { concept: "breaker/test", value: 1, confidence: 7 }; // 422
  async function trip(agent: Api): Promise<void> {
    for (let i = 0; i < 3; i++)
      expect((await agent.request("POST", "/v1/assert", invalid)).status).toBe(422);
  }
  async function metric(name: string): Promise<number> {
    const text = (await api(server.baseUrl, null).request("GET", "/metrics")).text;
    const m = new RegExp(`^${name.replace(/[{}"]/g, "\\$&")} (\\S+)$`, "m").exec(text);
    return Number(m?.[1]);
  }

  it("trips to 429 + Retry-After, half-opens with time, closes on success, re-opens on a failed probe, resets (audited), survives kill -9", async () => {
    dataDir = newDataDir();
    server = await startServerProcess({ dataDir, env });
    const adminKey = readAdminKeyFile(dataDir);
    const agentKey = await createKey(server.baseUrl, adminKey, "agent", "agent-b");
    const otherKey = await createKey(server.baseUrl, adminKey, "agent", "agent-ok");
    const agent = api(server.baseUrl, agentKey);
    const admin = api(server.baseUrl, adminKey);
    const advance = async (ms: number) =>
      expect((await admin.request("POST", "/v1/admin/test/clock", { advance_ms: ms })).status).toBe(
        200,
      );

    expect((await agent.request("POST", "/v1/assert", valid())).status).toBe(201);
    await trip(agent);
    const refused = await agent.request("POST", "/v1/assert", valid());
    expect(refused.status).toBe(429);
    expect(Number(refused.headers.get("retry-after"))).toBeGreaterThanOrEqual(9);
    expect(Number(refused.headers.get("retry-after"))).toBeLessThanOrEqual(10);
    expect(refused.json).toMatchObject({
      error: { code: "circuit_open", request_id: refused.headers.get("x-request-id") },
    });
    // Other agents are not affected.
    expect(
      (await api(server.baseUrl, otherKey).request("POST", "/v1/assert", valid())).status,
    ).toBe(201);
    const view = await api(server.baseUrl, adminKey).request("GET", "/v1/agents/agent-b");
    expect(view.json).toMatchObject({ breaker: { state: "open", trips: 1, bad_in_window: 3 } });
    expect(await metric('stemedb_circuit_breaker_state{state="open"}')).toBe(1);
    expect(await metric("stemedb_circuit_breaker_trips_total")).toBe(1);

    await advance(COOLDOWN_MS);
    expect(await metric('stemedb_circuit_breaker_state{state="half_open"}')).toBe(1);
    expect((await agent.request("POST", "/v1/assert", valid())).status).toBe(201); // the probe
    expect((await admin.request("GET", "/v1/agents/agent-b")).json).toMatchObject({
      breaker: { state: "closed" },
    });

    await trip(agent);
    await advance(COOLDOWN_MS);
    expect((await agent.request("POST", "/v1/assert", invalid)).status).toBe(422); // failed probe
    expect((await agent.request("POST", "/v1/assert", valid())).status).toBe(429);
    expect(await metric("stemedb_circuit_breaker_trips_total")).toBe(3);

    const list = await admin.request("GET", "/v1/admin/circuit_breakers?state=open");
    expect(list.status).toBe(200);
    expect(list.json).toMatchObject({
      circuit_breakers: [{ agent: "agent-b", state: "open", trips: 3 }],
      next_cursor: null,
    });
    const page = await admin.request("GET", "/v1/admin/circuit_breakers?limit=1");
    expect((page.json as { next_cursor: string | null }).next_cursor).toBe("agent-b");
    expect((await agent.request("GET", "/v1/admin/circuit_breakers")).status).toBe(403);

    const reset = await admin.request("POST", "/v1/admin/circuit_breaker/reset", {
      agent: "agent-b",
    });
    expect(reset.status).toBe(200);
    expect(reset.json).toMatchObject({ previous_state: "open", breaker: { state: "closed" } });
    expect((await agent.request("POST", "/v1/assert", valid())).status).toBe(201);
    const audit = await admin.request("GET", "/v1/audit?action=circuit_breaker.reset");
    expect((audit.json as { items: unknown[] }).items).toMatchObject([
      {
        actor: "admin",
        target: "agent-b",
        outcome: "ok",
        request_id: reset.headers.get("x-request-id"),
        details: { previous_state: "open" },
      },
    ]);
    const trips = await admin.request("GET", "/v1/audit?action=circuit_breaker.trip");
    expect((trips.json as { items: unknown[] }).items).toHaveLength(3);

    await trip(agent);
    expect((await agent.request("POST", "/v1/assert", valid())).status).toBe(429);
    await server.kill9();
    server = await startServerProcess({ dataDir, env });
    const after = api(server.baseUrl, agentKey);
    const still = await after.request("POST", "/v1/assert", valid());
    expect(still.status).toBe(429);
    expect(still.headers.get("retry-after")).toBeTruthy();
    expect(await metric('stemedb_circuit_breaker_state{state="open"}')).toBe(1);
  });

  it("counts the quarantined writes of a request whose client hung up before the answer", async () => {
    // The server of the test above, still running.
    const adminKey = readAdminKeyFile(dataDir);
    const admin = api(server.baseUrl, adminKey);
    const key = await createKey(server.baseUrl, adminKey, "agent", "agent-gone");
    const gold = await admin.request("POST", "/v1/gold_standard", { concept: "gone/x", value: 0 });
    expect(gold.status).toBe(201);
    // Three writes contradicting the gold standard (all quarantined: bad outcomes), sent in
    // one request whose socket is closed as soon as it is sent.
    const body = JSON.stringify({
      assertions: [1, 2, 3].map((value) => ({ concept: "gone/x", value, confidence: 0.5 })),
    });
    const port = Number(new URL(server.baseUrl).port);
    await new Promise<void>((resolve) => {
      const socket = net.connect(port, "127.0.0.1", () => {
        socket.write(
          `POST /v1/assert HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${key}\r\n` +
            `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
          () => {
            socket.destroy();
            resolve();
          },
        );
      });
      socket.on("error", () => resolve());
    });
    let state = "";
    for (let i = 0; i < 100 && state !== "open"; i++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      const view = await admin.request("GET", "/v1/agents/agent-gone");
      state = (view.json as { breaker?: { state: string } }).breaker?.state ?? "";
    }
    expect(state).toBe("open");
  });
});
