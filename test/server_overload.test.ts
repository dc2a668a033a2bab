// A full shard queue over HTTP: 503 `overloaded` with Retry-After in the error format, and
// the server keeps serving (one shard, a queue of 4 items).
import fs from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { api, type ServerProcess, startServerWithKeys } from "./helpers/server_process.js";

const QUEUE_MAX_ITEMS = 4;
let dataDir: string;
let server: ServerProcess;
let agentKey: string;

beforeAll(async () => {
  ({ dataDir, server, agentKey } = await startServerWithKeys("agent-busy", {
    STEMEDB_SHARDS: "1",
    STEMEDB_SHARD_QUEUE_MAX: String(QUEUE_MAX_ITEMS),
    STEMEDB_BREAKER_THRESHOLD: "1000000",
  }));
});

afterAll(async () => {
  await server?.kill9();
  fs.rmSync(dataDir, { recursive: true, force: true });
});

function assertion(i: number) {
  return { concept: `busy/c${i}`, value: i, confidence: 0.5 };
}

function expectOverloaded(res: { status: number; json: unknown; headers: Headers }): void {
  expect(res.status).toBe(503);
  const body = res.json as { error: { code: string; message: string; request_id: string } };
  expect(body.error.code).toBe("overloaded");
  expect(body.error.message).toContain("queue bound");
  expect(body.error.request_id).toBe(res.headers.get("x-request-id"));
  expect(Number(res.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
}

describe("a full shard queue answers 503 with Retry-After", () => {
  it("takes a batch larger than the whole queue only when nothing else waits", async () => {
    const agent = api(server.baseUrl, agentKey);
    const big = (round: number) =>
      Array.from({ length: QUEUE_MAX_ITEMS + 1 }, (_, i) => assertion(50_000 + 100 * round + i));
    // Alone it is taken: refusing it would mean a valid batch could never be written.
    expect((await agent.request("POST", "/v1/assert", { assertions: big(0) })).status).toBe(201);
    // Beside another write one of the two is refused (whichever finds the other queued).
    let refused = 0;
    for (let round = 1; round <= 5 && refused === 0; round++) {
      const answers = await Promise.all([
        agent.request("POST", "/v1/assert", {
          assertions: [assertion(60_000 + 2 * round), assertion(60_001 + 2 * round)],
        }),
        agent.request("POST", "/v1/assert", { assertions: big(round) }),
      ]);
      for (const res of answers) {
        if (res.status === 201) continue;
        expectOverloaded(res);
        refused++;
      }
    }
    expect(refused).toBeGreaterThan(0);
  });

  it("refuses what does not fit under concurrent load; everything acknowledged is readable", async () => {
    const agent = api(server.baseUrl, agentKey);
    // 64 writes of 2 items each against a 4-item queue: a round with no refusal would need every
    // write durable before the next one arrives. Up to 3 rounds make that impossible in practice.
    let refusedTotal = 0;
    for (let round = 0; round < 3 && refusedTotal === 0; round++) {
      const answers = await Promise.all(
        Array.from({ length: 64 }, (_, i) =>
          agent.request("POST", "/v1/assert", {
            assertions: [assertion(1000 * round + 2 * i), assertion(1000 * round + 2 * i + 1)],
          }),
        ),
      );
      const accepted = answers.filter((r) => r.status === 201);
      const refused = answers.filter((r) => r.status !== 201);
      expect(accepted.length).toBeGreaterThan(0);
      for (const r of refused) expectOverloaded(r);
      for (const r of accepted) {
        for (const item of (r.json as { results: Array<{ id: string }> }).results) {
          expect((await agent.request("GET", `/v1/assertions/${item.id}`)).status).toBe(200);
        }
      }
      refusedTotal += refused.length;
    }
    expect(refusedTotal).toBeGreaterThan(0);
    expect((await api(server.baseUrl, null).request("GET", "/v1/health")).status).toBe(200);
  });
});
