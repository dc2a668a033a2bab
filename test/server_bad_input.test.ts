import fs from "node:fs";
import net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  api,
  createKey,
  type ServerProcess,
  startServerWithKeys,
} from "./helpers/server_process.js";

let dataDir: string;
let server: ServerProcess;
let adminKey: string;
let agentKey: string;
let readerKey: string;

beforeAll(async () => {
  // This file sends many invalid writes as one agent on purpose; keep its circuit breaker
  // (tested in circuit_breaker.test.ts) from answering them with 429 instead.
  ({ dataDir, server, adminKey, agentKey, readerKey } = await startServerWithKeys(undefined, {
    STEMEDB_BREAKER_THRESHOLD: "1000000",
  }));
});

afterAll(async () => {
  await server?.kill9();
  fs.rmSync(dataDir, { recursive: true, force: true });
});

function expectError(
  res: { status: number; json: unknown; headers: Headers },
  status: number,
  code?: string,
): void {
  expect(res.status).toBe(status);
  const body = res.json as { error: { code: string; message: string; request_id: string } };
  expect(body.error.code).toMatch(/^[a-z][a-z0-9_]*$/);
  if (code !== undefined) expect(body.error.code).toBe(code);
  expect(body.error.message.length).toBeGreaterThan(5);
  expect(body.error.request_id).toBe(res.headers.get("x-request-id"));
}

const valid = { concept: "ok/concept", value: 1, confidence: 0.5 };

/** Raw bytes over a socket, for what fetch refuses to send. */
function rawRequest(port: number, bytes: Buffer): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1", () => socket.end(bytes));
    let out = "";
    socket.on("data", (d) => {
      out += d.toString("latin1");
    });
    socket.on("end", () => resolve(out));
    socket.on("close", () => resolve(out));
    socket.on("error", () => resolve(out)); // a reset after garbage is a fine answer
    socket.setTimeout(5000, () => socket.destroy());
  });
}

/**
 * Sends a chunked body in 1 MiB chunks, never the last one, until the server answers and
 * closes or 64 MiB went out. Returns what the server answered and how much was sent by then.
 */
function endlessChunkedBody(
  port: number,
  requestLine: string,
): Promise<{ response: string; sentBytes: number }> {
  const chunk = Buffer.concat([
    Buffer.from(`${(1 << 20).toString(16)}\r\n`),
    Buffer.alloc(1 << 20, 0x20),
    Buffer.from("\r\n"),
  ]);
  return new Promise((resolve) => {
    let response = "";
    let sentBytes = 0;
    let closed = false;
    const socket = net.connect(port, "127.0.0.1");
    const finish = () => {
      closed = true;
      resolve({ response, sentBytes });
    };
    socket.on("data", (d) => {
      response += d.toString("latin1");
    });
    socket.on("close", finish);
    socket.on("error", () => {}); // a reset after the answer is what "closed" looks like
    socket.setTimeout(20_000, () => socket.destroy());
    const pump = () => {
      while (!closed && sentBytes < 64 * 1024 * 1024) {
        sentBytes += chunk.length;
        if (!socket.write(chunk)) {
          socket.once("drain", pump);
          return;
        }
      }
    };
    socket.once("connect", () => {
      socket.write(
        `${requestLine} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n`,
      );
      pump();
    });
  });
}

describe("bad input gets a clear 4xx in the error format", () => {
  it("malformed, truncated and mistyped JSON", async () => {
    const agent = api(server.baseUrl, agentKey);
    expectError(await agent.request("POST", "/v1/assert", "{not json"), 400, "malformed_json");
    expectError(
      await agent.request("POST", "/v1/assert", '{"concept":"a","value":1,'),
      400,
      "malformed_json",
    );
    expectError(await agent.request("POST", "/v1/assert", ""), 400);
    expectError(await agent.request("POST", "/v1/assert", { ...valid, confidence: "high" }), 422);
    expectError(await agent.request("POST", "/v1/assert", { ...valid, confidence: 1.5 }), 422);
    expectError(await agent.request("POST", "/v1/assert", { concept: "a" }), 422);
    expectError(
      await agent.request("POST", "/v1/assert", { ...valid, agent: "someone-else" }),
      422,
    );
    expectError(await agent.request("POST", "/v1/assert", [valid]), 422);
    const deep = `${"[".repeat(200)}${"]".repeat(200)}`;
    expectError(
      await agent.request("POST", "/v1/assert", `{"concept":"a","confidence":1,"value":${deep}}`),
      422,
      "too_deep",
    );
  });

  it("invalid UTF-8, wrong media type, oversize body and batch", async () => {
    const agent = api(server.baseUrl, agentKey);
    const badUtf8 = Buffer.concat([
      Buffer.from('{"concept":"a","value":"'),
      Buffer.from([0xff, 0xfe]),
      Buffer.from('","confidence":1}'),
    ]);
    expectError(await agent.request("POST", "/v1/assert", badUtf8), 400, "malformed_json");
    expectError(
      await agent.request("POST", "/v1/assert", JSON.stringify(valid), {
        "content-type": "text/plain",
      }),
      415,
    );
    const huge = JSON.stringify({ ...valid, value: "x".repeat(5 * 1024 * 1024) });
    expectError(await agent.request("POST", "/v1/assert", huge), 413);
    // The same body chunked, so no Content-Length announces it: the byte bound still holds.
    const chunked = await rawRequest(
      server.port,
      Buffer.concat([
        Buffer.from(
          `POST /v1/assert HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${agentKey}\r\n` +
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" +
            `${Buffer.byteLength(huge).toString(16)}\r\n`,
        ),
        Buffer.from(huge),
        Buffer.from("\r\n0\r\n\r\n"),
      ]),
    );
    expect(chunked).toMatch(/^HTTP\/1\.1 413 /);
    expect(chunked).toContain('"code":"payload_too_large"');
    // Refused before its body is read (no key) and chunked without end: the server reads at
    // most its drain bound (16 MiB), then answers and closes the connection instead of
    // reading forever. (Closing with unread input resets the connection, so the client may
    // or may not get to read the 401 first.)
    const endless = await endlessChunkedBody(server.port, "POST /v1/assert");
    expect(endless.sentBytes).toBeGreaterThan(16 * 1024 * 1024);
    expect(endless.sentBytes).toBeLessThan(48 * 1024 * 1024);
    if (endless.response !== "") expect(endless.response).toMatch(/^HTTP\/1\.1 401 /);
    const bigBatch = { assertions: Array.from({ length: 10_001 }, () => valid) };
    expectError(await agent.request("POST", "/v1/assert", bigBatch), 413, "batch_too_large");
    expectError(
      await agent.request("POST", "/v1/assert", { ...valid, value: "y".repeat(20_000) }),
      422,
      "value_too_large",
    );
  });

  it("bad concept paths and query parameters", async () => {
    const agent = api(server.baseUrl, agentKey);
    for (const concept of ["", "a//b", "a/b c", "../etc", `${"a/".repeat(16)}a`, "x".repeat(600)]) {
      const res = await agent.request("POST", "/v1/assert", { ...valid, concept });
      expectError(res, 422);
      expect((res.json as { error: { code: string } }).error.code, concept).toMatch(
        /^(invalid_concept_path|invalid_request)$/,
      );
    }
    const reader = api(server.baseUrl, readerKey);
    expectError(await reader.request("GET", "/v1/query"), 400, "missing_concept");
    expectError(
      await reader.request("GET", "/v1/query?concept=a&lens=bogus"),
      422,
      "unsupported_lens",
    );
    expectError(await reader.request("GET", "/v1/query?concept=a&limit=0"), 422, "invalid_limit");
    expectError(await reader.request("GET", "/v1/query?concept=a&limit=abc"), 422, "invalid_limit");
    // An empty value is refused where there is no default, never read as "absent" (a cursor's
    // is the first page: test/list_params.test.ts).
    expectError(
      await reader.request("GET", "/v1/query?concept=a&as_of_epoch="),
      422,
      "unknown_epoch",
    );
    expectError(
      await reader.request("GET", "/v1/query?concept=a/*&cursor=zzzz"),
      400,
      "invalid_cursor",
    );
    expectError(
      await reader.request("GET", "/v1/query?concept=a&lens=history&cursor=%25%25"),
      400,
      "invalid_cursor",
    );
    expectError(await reader.request("GET", "/v1/assertions/not-an-id"), 400, "invalid_id");
    expectError(await reader.request("GET", `/v1/assertions/${"0".repeat(32)}`), 404);
  });

  it("missing, invalid and revoked keys, wrong role, wrong method, unknown route", async () => {
    expectError(
      await api(server.baseUrl, null).request("POST", "/v1/assert", valid),
      401,
      "missing_api_key",
    );
    expectError(
      await api(server.baseUrl, "stm_aaaaaaaaaaaa_bogus").request("POST", "/v1/assert", valid),
      401,
    );
    expectError(
      await api(server.baseUrl, null).request("POST", "/v1/assert", valid, {
        authorization: "Basic abc",
      }),
      401,
    );
    expectError(await api(server.baseUrl, readerKey).request("POST", "/v1/assert", valid), 403);
    expectError(
      await api(server.baseUrl, agentKey).request("POST", "/v1/admin/api_keys", { role: "agent" }),
      403,
    );

    const doomed = await createKey(server.baseUrl, adminKey, "agent");
    const doomedApi = api(server.baseUrl, doomed);
    expect((await doomedApi.request("POST", "/v1/assert", valid)).status).toBe(201);
    const keyId = doomed.split("_")[1] as string;
    expect(
      (await api(server.baseUrl, adminKey).request("DELETE", `/v1/admin/api_keys/${keyId}`)).status,
    ).toBe(200);
    expectError(await doomedApi.request("POST", "/v1/assert", valid), 401);

    const wrongMethod = await api(server.baseUrl, agentKey).request("PUT", "/v1/assert", valid);
    expectError(wrongMethod, 405);
    expect(wrongMethod.headers.get("allow")).toBe("POST");
    expectError(await api(server.baseUrl, agentKey).request("GET", "/v1/nope"), 404);
  });

  it("survives raw protocol abuse and keeps serving", async () => {
    const garbage = await rawRequest(server.port, Buffer.from("\x00\x01\x02 garbage\r\n\r\n"));
    expect(garbage.startsWith("HTTP/1.1 5")).toBe(false);
    const giantHeader = await rawRequest(
      server.port,
      Buffer.from(`GET /v1/health HTTP/1.1\r\nhost: x\r\nx-big: ${"a".repeat(100_000)}\r\n\r\n`),
    );
    expect(giantHeader.startsWith("HTTP/1.1 5")).toBe(false);
    // A body that is announced but never completes, then an aborted connection.
    const partial = net.connect(server.port, "127.0.0.1");
    partial.write(
      `POST /v1/assert HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${agentKey}\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{"concept":`,
    );
    await new Promise((r) => setTimeout(r, 100));
    partial.destroy();

    // HEAD has no route: 405/404 headers without a body (this once aborted the process).
    const head = await rawRequest(
      server.port,
      Buffer.from("HEAD /v1/health HTTP/1.1\r\nhost: x\r\n\r\n"),
    );
    expect(head.startsWith("HTTP/1.1 405")).toBe(true);
    const badPercent = await api(server.baseUrl, readerKey).request(
      "GET",
      "/v1/assertions/%E0%A4%A",
    );
    expectError(badPercent, 400, "malformed_path");

    const ok = await api(server.baseUrl, agentKey).request("POST", "/v1/assert", {
      ...valid,
      concept: "still/serving",
    });
    expect(ok.status).toBe(201);
    const health = await api(server.baseUrl, null).request("GET", "/v1/health");
    expect(health.status).toBe(200);
  });
});
