// WS /v1/stream against the real server process: acks after fsync (survive kill -9), the
// window and resend (duplicate acks, no double writes), error frames that leave good traffic
// alone, and auth refused at the upgrade.
import fs from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  api,
  createKey,
  newDataDir,
  readAdminKeyFile,
  type ServerProcess,
  startServerProcess,
  startServerWithKeys,
} from "./helpers/server_process.js";
import {
  type AckFrame,
  type ErrorFrame,
  type Frame,
  isError,
  type RefusedUpgrade,
  StreamClient,
} from "./helpers/ws_client.js";

const dirs: string[] = [];
const servers: ServerProcess[] = [];

afterAll(async () => {
  for (const s of servers) await s.kill9();
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

function assertion(concept: string, value: unknown = 1): Record<string, unknown> {
  return { concept, value, confidence: 0.5 };
}

async function refused(baseUrl: string, key: string | null): Promise<RefusedUpgrade> {
  const outcome = await StreamClient.connect(baseUrl, key, { "x-request-id": "ws-auth-1" }).then(
    async (c) => {
      await c.close();
      return null;
    },
    (err: unknown) => err as RefusedUpgrade,
  );
  if (outcome === null) throw new Error("the upgrade was accepted");
  return outcome;
}

/**
 * Assertions stored over all shards (/v1/health), once LMDB has applied every durable record
 * (apply runs behind the acks; the count is read when applied_lsn has caught up).
 */
async function storedRecords(baseUrl: string): Promise<number> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const health = (await api(baseUrl, null).request("GET", "/v1/health")).json as {
      shards: Array<{ records: number; last_lsn: number; applied_lsn: number }>;
    };
    const caughtUp = health.shards.every((s) => s.applied_lsn >= s.last_lsn);
    if (caughtUp || Date.now() > deadline) {
      return health.shards.reduce((sum, s) => sum + s.records, 0);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Sends message 2 on a connection whose key no longer counts: the answer must be a refusal
 * with no seq; resolves with the close code that follows (null if none within 2 s).
 */
async function refusedAndClosed(client: StreamClient, concept: string): Promise<number | null> {
  client.send(2, assertion(concept, 2));
  const frames = await client.waitFrames(2);
  expect(frames[1]).toEqual({
    seq: null,
    error: expect.objectContaining({ code: "invalid_api_key" }),
  });
  for (let i = 0; i < 200 && client.closed === null; i++)
    await new Promise((resolve) => setTimeout(resolve, 10));
  return client.closed?.code ?? null;
}

describe("WS /v1/stream", () => {
  let server: ServerProcess;
  let agentKey: string;
  let readerKey: string;
  let adminKey: string;

  beforeAll(async () => {
    const started = await startServerWithKeys("ws-agent");
    ({ server, agentKey, readerKey, adminKey } = started);
    servers.push(server);
    dirs.push(started.dataDir);
  });

  it("refuses a missing or bad key (401) and a reader key (403) before upgrading", async () => {
    const none = await refused(server.baseUrl, null);
    expect(none.status).toBe(401);
    expect(none.headers["www-authenticate"]).toContain("Bearer");
    expect(JSON.parse(none.body)).toEqual({
      error: { code: "missing_api_key", message: expect.any(String), request_id: "ws-auth-1" },
    });
    const bad = await refused(server.baseUrl, `${agentKey.slice(0, -4)}AAAA`);
    expect(bad.status).toBe(401);
    expect(JSON.parse(bad.body).error.code).toBe("invalid_api_key");
    const reader = await refused(server.baseUrl, readerKey);
    expect(reader.status).toBe(403);
    expect(JSON.parse(reader.body).error.code).toBe("forbidden");
    // An admin key is above agent: accepted.
    const admin = await StreamClient.connect(server.baseUrl, adminKey);
    await admin.close();
    // Plain HTTP on the path says how to use it.
    const plain = await api(server.baseUrl, agentKey).request("GET", "/v1/stream");
    expect(plain.status).toBe(426);
    expect(plain.headers.get("upgrade")).toBe("websocket");
    expect((plain.json as ErrorFrame).error.code).toBe("upgrade_required");
  });

  it("stops taking messages on an open connection once its key is revoked (1008)", async () => {
    const key = await createKey(server.baseUrl, adminKey, "agent", "ws-revoked");
    const client = await StreamClient.connect(server.baseUrl, key);
    client.send(1, assertion("ws/revoked/before", 1));
    expect(await client.waitFrames(1)).toEqual([expect.objectContaining({ seq: 1 })]);
    const keyId = key.slice("stm_".length, "stm_".length + 12);
    const revoked = await api(server.baseUrl, adminKey).request(
      "DELETE",
      `/v1/admin/api_keys/${keyId}`,
    );
    expect(revoked.status).toBe(200);
    expect(await refusedAndClosed(client, "ws/revoked/after")).toBe(1008);
    // The message before the revocation was written, the one after was not.
    const reader = api(server.baseUrl, readerKey);
    const before = await reader.request("GET", "/v1/query?concept=ws/revoked/before");
    expect(JSON.stringify(before.json)).toContain('"agent":"ws-revoked"');
    const after = await reader.request("GET", "/v1/query?concept=ws/revoked/after");
    expect(after.status).toBe(200);
    expect(JSON.stringify(after.json)).not.toContain('"agent":"ws-revoked"');
  });

  it("closes a connection whose secret was rotated out or whose key became a reader (1008)", async () => {
    const adminApi = api(server.baseUrl, adminKey);
    for (const change of ["rotate", "demote"] as const) {
      const key = await createKey(server.baseUrl, adminKey, "agent", `ws-${change}`);
      const keyId = key.slice("stm_".length, "stm_".length + 12);
      const client = await StreamClient.connect(server.baseUrl, key);
      client.send(1, assertion(`ws/${change}/before`, 1));
      expect(await client.waitFrames(1)).toEqual([expect.objectContaining({ seq: 1 })]);
      const res =
        change === "rotate"
          ? await adminApi.request("POST", "/v1/admin/api_keys/rotate", {
              key_id: keyId,
              grace_period_s: 0,
            })
          : await adminApi.request("PATCH", "/v1/admin/api_keys", {
              key_id: keyId,
              role: "reader",
            });
      expect(res.status, res.text).toBe(200);
      expect(await refusedAndClosed(client, `ws/${change}/after`), change).toBe(1008);
    }
  });

  it("keeps a connection whose secret was rotated with a grace period", async () => {
    const key = await createKey(server.baseUrl, adminKey, "agent", "ws-grace");
    const keyId = key.slice("stm_".length, "stm_".length + 12);
    const client = await StreamClient.connect(server.baseUrl, key);
    const res = await api(server.baseUrl, adminKey).request("POST", "/v1/admin/api_keys/rotate", {
      key_id: keyId,
      grace_period_s: 600,
    });
    expect(res.status, res.text).toBe(200);
    client.send(1, assertion("ws/grace", 1));
    expect(await client.waitFrames(1)).toEqual([
      expect.objectContaining({ seq: 1, duplicate: false }),
    ]);
    await client.close();
    // An admin key lowered to agent may still stream.
    const adminB = await createKey(server.baseUrl, adminKey, "admin", "ws-admin-b");
    const streamB = await StreamClient.connect(server.baseUrl, adminB);
    const demoted = await api(server.baseUrl, adminKey).request("PATCH", "/v1/admin/api_keys", {
      key_id: adminB.slice("stm_".length, "stm_".length + 12),
      role: "agent",
    });
    expect(demoted.status, demoted.text).toBe(200);
    streamB.send(1, assertion("ws/demoted-admin", 1));
    expect(await streamB.waitFrames(1)).toEqual([expect.objectContaining({ seq: 1 })]);
    await streamB.close();
  });

  it("acks each message after fsync with its seq, id, shard and lsn, like POST /v1/assert", async () => {
    const client = await StreamClient.connect(server.baseUrl, agentKey, {
      "x-request-id": "ws-basic",
    });
    expect(client.upgradeHeaders["x-request-id"]).toBe("ws-basic");
    expect(client.upgradeHeaders["x-stemedb-max-inflight"]).toBe("256");
    const count = 40;
    for (let i = 0; i < count; i++) client.send(1000 + i, assertion(`WS/Basic/C${i}`, { n: i }));
    const frames = (await client.waitFrames(count)) as AckFrame[];
    expect(frames.map((f) => f.seq).sort()).toEqual(
      Array.from({ length: count }, (_, i) => 1000 + i),
    );
    expect(new Set(frames.map((f) => f.shard))).toEqual(new Set([0, 1]));
    const reader = api(server.baseUrl, readerKey);
    for (const f of frames) {
      expect(f).toMatchObject({ status: "active", duplicate: false });
      expect(f.id).toMatch(/^[0-9a-f]{32}$/);
      expect(f.lsn).toBeGreaterThan(0);
      const got = await reader.request("GET", `/v1/assertions/${f.id}`);
      const i = f.seq - 1000;
      expect(got.json).toMatchObject({
        id: f.id,
        concept: `ws/basic/c${i}`,
        agent: "ws-agent",
        value: { n: i },
        shard: f.shard,
        lsn: f.lsn,
      });
    }
    // The same content over HTTP is the same assertion: same id, a duplicate.
    const first = frames.find((f) => f.seq === 1000) as AckFrame;
    const http = await api(server.baseUrl, agentKey).request(
      "POST",
      "/v1/assert",
      assertion("ws/basic/c0", { n: 0 }),
    );
    expect(http.json).toMatchObject({ id: first.id, duplicate: true, lsn: first.lsn });
    await client.close();
  });

  it("answers bad messages with error frames and keeps acking good ones on the same connection", async () => {
    const client = await StreamClient.connect(server.baseUrl, agentKey);
    const bad: Array<[string | Buffer, boolean, number | null, string]> = [
      ["{not json", false, null, "malformed_json"],
      ["[1,2]", false, null, "invalid_request"],
      ['{"assertion":{"concept":"a","value":1,"confidence":0.5}}', false, null, "invalid_request"],
      [JSON.stringify({ seq: -1, assertion: assertion("a") }), false, null, "invalid_request"],
      [JSON.stringify({ seq: 1.5, assertion: assertion("a") }), false, null, "invalid_request"],
      [
        JSON.stringify({ seq: 7, assertion: { ...assertion("a"), confidence: 2 } }),
        false,
        7,
        "invalid_request",
      ],
      [JSON.stringify({ seq: 8, assertion: assertion("a//b") }), false, 8, "invalid_concept_path"],
      [
        JSON.stringify({ seq: 9, assertion: { ...assertion("a"), agent: "x" } }),
        false,
        9,
        "invalid_request",
      ],
      [
        JSON.stringify({ seq: 10, assertion: { assertions: [assertion("a")] } }),
        false,
        10,
        "invalid_request",
      ],
      [
        JSON.stringify({ seq: 11, assertion: assertion("a"), extra: 1 }),
        false,
        11,
        "invalid_request",
      ],
      [
        JSON.stringify({ seq: 12, assertion: { ...assertion("a"), value: "x".repeat(20_000) } }),
        false,
        12,
        "value_too_large",
      ],
      [
        JSON.stringify({
          seq: 13,
          assertion: assertion("a", JSON.parse(`${"[".repeat(40)}${"]".repeat(40)}`)),
        }),
        false,
        null, // refused before JSON.parse runs, so the seq is not read
        "too_deep",
      ],
      [
        Buffer.from(JSON.stringify({ seq: 14, assertion: assertion("a") })),
        true,
        null,
        "binary_frame",
      ],
    ];
    let goodSeq = 0;
    for (const [data, binary] of bad) {
      client.send(goodSeq, assertion(`ws/mixed/g${goodSeq}`));
      goodSeq++;
      client.sendRaw(data, binary);
    }
    client.send(goodSeq, assertion(`ws/mixed/g${goodSeq}`));
    goodSeq++;
    const frames = await client.waitFrames(goodSeq + bad.length);
    await new Promise((r) => setTimeout(r, 100)); // nothing more arrives
    expect(frames.length).toBe(goodSeq + bad.length);
    const errors = frames.filter(isError);
    const acks = frames.filter((f): f is AckFrame => !isError(f));
    expect(acks.map((a) => a.seq).sort((a, b) => a - b)).toEqual(
      Array.from({ length: goodSeq }, (_, i) => i),
    );
    expect(errors.map((e) => [e.seq, e.error.code])).toEqual(
      expect.arrayContaining(bad.map(([, , seq, code]) => [seq, code])),
    );
    expect(errors.length).toBe(bad.length);
    for (const e of errors) {
      expect(e.error.message.length).toBeGreaterThan(0);
      expect(Object.keys(e).sort()).toEqual(["error", "seq"]);
    }
    expect(client.closed).toBeNull();
    await client.close();
  });

  it("refuses a seq already in flight on the connection", async () => {
    const client = await StreamClient.connect(server.baseUrl, agentKey);
    client.send(5, assertion("ws/seq/a"));
    client.send(5, assertion("ws/seq/b"));
    const frames = await client.waitFrames(2);
    const errors = frames.filter(isError);
    // Both can be acked only if the first was acked before the second arrived.
    for (const e of errors) expect(e.error.code).toBe("seq_in_flight");
    expect(frames.filter((f) => !isError(f)).length).toBeGreaterThanOrEqual(1);
    await client.close();
  });

  it("drops a connection that sends a message over 4 MiB; others are unaffected", async () => {
    const other = await StreamClient.connect(server.baseUrl, agentKey);
    const client = await StreamClient.connect(server.baseUrl, agentKey);
    client.sendRaw(" ".repeat(4 * 1024 * 1024 + 1));
    await new Promise<void>((resolve) => client.ws.once("close", () => resolve()));
    expect(client.closed?.code).toBe(1006);
    other.send(1, assertion("ws/big/after"));
    expect(isError((await other.waitFrames(1))[0] as Frame)).toBe(false);
    await other.close();
  });

  it("describes the stream in the OpenAPI document with the validating frame schema", async () => {
    const doc = (await api(server.baseUrl, null).request("GET", "/v1/openapi.json")).json as {
      paths: Record<string, { get?: Record<string, unknown> }>;
    };
    const op = doc.paths["/v1/stream"]?.get as {
      "x-stemedb-role": string;
      "x-stemedb-websocket": { clientFrame: { required: string[] } };
    };
    expect(op["x-stemedb-role"]).toBe("agent");
    expect(op["x-stemedb-websocket"].clientFrame.required.sort()).toEqual(["assertion", "seq"]);
  });

  it("exports the stream metrics", async () => {
    const text = (await api(server.baseUrl, null).request("GET", "/metrics")).text;
    expect(text).toMatch(/stemedb_ws_messages_total\{outcome="written"\} [1-9]/);
    expect(text).toMatch(/stemedb_ws_messages_total\{outcome="invalid"\} [1-9]/);
    expect(text).toMatch(/stemedb_ws_messages_total\{outcome="duplicate"\} 0/);
    expect(text).toMatch(/stemedb_ws_connections 0/);
    expect(text).toContain("stemedb_ws_ack_duration_seconds_bucket");
    expect(text).toMatch(
      /stemedb_http_requests_total\{method="GET",route="\/v1\/stream",status="101"\} [1-9]/,
    );
    expect(text).toMatch(
      /stemedb_http_requests_total\{method="GET",route="\/v1\/stream",status="403"\} 1/,
    );
  });

  it("on SIGTERM acks what is in flight, closes connections with 1001 and exits 0", async () => {
    const client = await StreamClient.connect(server.baseUrl, agentKey);
    const answers = client.streamWindowed(
      Array.from({ length: 100_000 }, (_, i) => ({
        seq: i,
        assertion: assertion(`ws/term/c${i}`),
      })),
      64,
    );
    await client.waitFrames(200);
    expect(await server.stop()).toBe(0);
    const got = await answers;
    expect(client.closed?.code).toBe(1001);
    // Every answer is an ack or a retryable shutting_down error, never anything else.
    for (const f of got.values()) if (isError(f)) expect(f.error.code).toBe("shutting_down");
  });
});

describe("WS /v1/stream window and resend", () => {
  const WINDOW = 4;
  let server: ServerProcess;
  let agentKey: string;

  beforeAll(async () => {
    const dataDir = newDataDir();
    dirs.push(dataDir);
    server = await startServerProcess({
      dataDir,
      env: { STEMEDB_WS_MAX_INFLIGHT: String(WINDOW), STEMEDB_WS_MAX_CONNECTIONS: "2" },
    });
    servers.push(server);
    agentKey = await createKey(server.baseUrl, readAdminKeyFile(dataDir), "agent", "ws-win");
  });

  it("answers every message once: acks, or window_full beyond the window; a resend writes nothing twice", async () => {
    const count = 400;
    const messages = Array.from({ length: count }, (_, i) => ({
      seq: i,
      assertion: assertion(`ws/win/c${i}`, i),
    }));
    const blaster = await StreamClient.connect(server.baseUrl, agentKey);
    expect(blaster.upgradeHeaders["x-stemedb-max-inflight"]).toBe(String(WINDOW));
    for (const m of messages) blaster.send(m.seq, m.assertion); // ignores the window
    const frames = await blaster.waitFrames(count);
    const bySeq = new Map<number, Frame>();
    for (const f of frames) {
      expect(bySeq.has(f.seq as number), `seq ${f.seq} answered twice`).toBe(false);
      bySeq.set(f.seq as number, f);
    }
    expect(bySeq.size).toBe(count);
    const full = frames.filter(isError);
    for (const e of full) expect(e.error.code).toBe("window_full");
    expect(full.length).toBeGreaterThan(0);
    const acked = frames.filter((f): f is AckFrame => !isError(f));
    expect(acked.length).toBeGreaterThanOrEqual(2 * WINDOW);
    expect(await storedRecords(server.baseUrl)).toBe(acked.length);
    await blaster.close();

    // Reconnect and resend everything, respecting the window: acked ones come back as
    // duplicates with the same id and lsn, the rest are written now; nothing is refused.
    const resender = await StreamClient.connect(server.baseUrl, agentKey);
    const answers = await resender.streamWindowed(messages, WINDOW);
    expect(answers.size).toBe(count);
    for (const [seq, f] of answers) {
      expect(isError(f), JSON.stringify(f)).toBe(false);
      const before = bySeq.get(seq) as Frame;
      if (!isError(before)) {
        expect(f).toMatchObject({ id: before.id, lsn: before.lsn, duplicate: true });
      } else {
        expect((f as AckFrame).duplicate).toBe(false);
      }
    }
    expect(await storedRecords(server.baseUrl)).toBe(count);
    const reader = api(server.baseUrl, agentKey);
    for (const i of [0, 1, 17, count - 1]) {
      const history = await reader.request("GET", `/v1/query?concept=ws/win/c${i}&lens=history`);
      expect((history.json as { items: unknown[] }).items.length).toBe(1);
    }
    await resender.close();
  });

  it("refuses connections beyond STEMEDB_WS_MAX_CONNECTIONS with 503 at the upgrade", async () => {
    const a = await StreamClient.connect(server.baseUrl, agentKey);
    const b = await StreamClient.connect(server.baseUrl, agentKey);
    const c = await refused(server.baseUrl, agentKey);
    expect(c.status).toBe(503);
    expect(c.headers["retry-after"]).toBe("1");
    expect(JSON.parse(c.body).error.code).toBe("too_many_connections");
    await a.close();
    await b.close();
    const d = await StreamClient.connect(server.baseUrl, agentKey);
    await d.close();
  });
});

describe("WS /v1/stream with a full shard queue", () => {
  it("answers writes the shard refuses with error frames coded as HTTP would (overloaded); resends succeed", async () => {
    const dataDir = newDataDir();
    dirs.push(dataDir);
    const server = await startServerProcess({
      dataDir,
      shards: 1,
      env: { STEMEDB_SHARD_QUEUE_MAX: "1" },
    });
    servers.push(server);
    const agentKey = await createKey(server.baseUrl, readAdminKeyFile(dataDir), "agent", "ws-full");
    const client = await StreamClient.connect(server.baseUrl, agentKey);
    const messages = Array.from({ length: 100 }, (_, i) => ({
      seq: i,
      assertion: assertion(`ws/full/c${i}`, i),
    }));
    for (const m of messages) client.send(m.seq, m.assertion);
    const frames = await client.waitFrames(messages.length);
    const refusedFrames = frames.filter(isError);
    expect(refusedFrames.length).toBeGreaterThan(0);
    for (const e of refusedFrames) expect(e.error.code).toBe("overloaded");
    const retry = messages.filter((m) => refusedFrames.some((e) => e.seq === m.seq));
    const answers = await client.streamWindowed(retry, 1);
    for (const f of answers.values()) expect(isError(f), JSON.stringify(f)).toBe(false);
    expect(await storedRecords(server.baseUrl)).toBe(messages.length);
    const text = (await api(server.baseUrl, null).request("GET", "/metrics")).text;
    expect(text).toMatch(/stemedb_ws_messages_total\{outcome="failed"\} [1-9]/);
    expect(text).toMatch(/stemedb_errors_total\{code="overloaded"\} [1-9]/);
    await client.close();
  });
});

describe("WS /v1/stream crash", () => {
  it("kill -9 mid-stream: every acked seq is readable after restart, and a resend duplicates nothing", async () => {
    const dataDir = newDataDir();
    dirs.push(dataDir);
    let server = await startServerProcess({ dataDir });
    servers.push(server);
    const agentKey = await createKey(
      server.baseUrl,
      readAdminKeyFile(dataDir),
      "agent",
      "ws-crash",
    );
    const connections = 4;
    const perConnection = 200_000;
    const messagesOf = (c: number) =>
      Array.from({ length: perConnection }, (_, i) => ({
        seq: i,
        assertion: assertion(`ws/crash/k${c}/c${i}`, i),
      }));
    const clients = await Promise.all(
      Array.from({ length: connections }, () => StreamClient.connect(server.baseUrl, agentKey)),
    );
    const streams = clients.map((client, c) => client.streamWindowed(messagesOf(c), 64));
    // Kill mid-stream: after some acks (however loaded the machine), at a random moment.
    await Promise.all(clients.map((client) => client.waitFrames(50)));
    await new Promise((r) => setTimeout(r, 100 + Math.random() * 400));
    await server.kill9();
    const answers = await Promise.all(streams);
    const acked = answers.flatMap((m, c) =>
      [...m.values()].filter((f): f is AckFrame => !isError(f)).map((f) => ({ c, f })),
    );
    expect(acked.length).toBeGreaterThanOrEqual(200);

    server = await startServerProcess({ dataDir });
    servers.push(server);
    const reader = api(server.baseUrl, agentKey);
    let missing = 0;
    let wrong = 0;
    let next = 0;
    const check = async () => {
      while (next < acked.length) {
        const { c, f } = acked[next++] as { c: number; f: AckFrame };
        const got = await reader.request("GET", `/v1/assertions/${f.id}`);
        if (got.status !== 200) missing++;
        else if ((got.json as { concept: string }).concept !== `ws/crash/k${c}/c${f.seq}`) wrong++;
      }
    };
    await Promise.all(Array.from({ length: 16 }, check));
    expect({ missing, wrong }).toEqual({ missing: 0, wrong: 0 });

    // Resend everything that was sent (answered or not) on one connection: the acked ones
    // are duplicates; the store ends with exactly one record per message sent.
    const resender = await StreamClient.connect(server.baseUrl, agentKey);
    const stored = await storedRecords(server.baseUrl);
    expect(stored).toBeGreaterThanOrEqual(acked.length);
    let seq = 0;
    const resend: Array<{ seq: number; assertion: unknown }> = [];
    const original = new Map<number, AckFrame>();
    for (let c = 0; c < connections; c++) {
      const byOriginalSeq = answers[c] as Map<number, Frame>;
      for (let i = 0; i < (clients[c] as StreamClient).sent; i++) {
        const before = byOriginalSeq.get(i);
        if (before !== undefined && !isError(before)) original.set(seq, before);
        resend.push({ seq: seq++, assertion: assertion(`ws/crash/k${c}/c${i}`, i) });
      }
    }
    const again = await resender.streamWindowed(resend, 256);
    expect(again.size).toBe(resend.length);
    for (const [s, f] of again) {
      expect(isError(f), JSON.stringify(f)).toBe(false);
      const before = original.get(s);
      if (before !== undefined) {
        expect(f).toMatchObject({ id: before.id, lsn: before.lsn, duplicate: true });
      }
    }
    expect(await storedRecords(server.baseUrl)).toBe(resend.length);
    await resender.close();
  });
});
