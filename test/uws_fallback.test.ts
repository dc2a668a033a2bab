// uWebSockets.js's own switch to its pure-JS fallback (UWS_USE_FALLBACK=1, what the package
// also does when its native binary fails to load): the server refuses to start, unless
// STEMEDB_ALLOW_UWS_FALLBACK=1, and then reports it in /v1/health and still serves.
import fs from "node:fs";
import net from "node:net";
import { afterAll, describe, expect, it } from "vitest";
import {
  api,
  createKey,
  newDataDir,
  readAdminKeyFile,
  ServerExitError,
  type ServerProcess,
  startServerProcess,
} from "./helpers/server_process.js";

const dataDir = newDataDir();
let server: ServerProcess | null = null;

afterAll(async () => {
  await server?.kill9();
  fs.rmSync(dataDir, { recursive: true, force: true });
});

describe("the uWS pure-JS fallback", () => {
  it("is refused at startup with what to do", async () => {
    const refused = await startServerProcess({ dataDir, env: { UWS_USE_FALLBACK: "1" } }).then(
      () => null,
      (err: unknown) => err,
    );
    expect(refused).toBeInstanceOf(ServerExitError);
    expect((refused as ServerExitError).exitCode).toBe(2);
    expect((refused as ServerExitError).output).toContain("STEMEDB_ALLOW_UWS_FALLBACK=1");
  });

  it("when allowed, shows in /v1/health and serves writes and queries", async () => {
    server = await startServerProcess({
      dataDir,
      env: { UWS_USE_FALLBACK: "1", STEMEDB_ALLOW_UWS_FALLBACK: "1" },
    });
    const health = await api(server.baseUrl, null).request("GET", "/v1/health");
    expect(health.status).toBe(503);
    expect(health.json).toMatchObject({ status: "degraded", http_engine: "fallback" });

    const key = await createKey(server.baseUrl, readAdminKeyFile(dataDir), "agent", "slow-agent");
    const agent = api(server.baseUrl, key);
    const written = await agent.request("POST", "/v1/assert", {
      concept: "fallback/x",
      value: 7,
      confidence: 0.5,
    });
    expect(written.status).toBe(201);
    const page = await agent.request("GET", "/v1/query?concept=fallback/x&lens=latest");
    expect(page.status).toBe(200);
    expect((page.json as { items: Array<{ id: string; value: number }> }).items).toEqual([
      expect.objectContaining({ id: (written.json as { id: string }).id, value: 7 }),
    ]);
    const bad = await agent.request("POST", "/v1/assert", "{bad");
    expect(bad.status).toBe(400);
    // The fallback cannot serve WS /v1/stream: a clear 503, and the server stays up.
    const upgradeTo = (target: string) =>
      new Promise<string>((resolve) => {
        const socket = net.connect((server as ServerProcess).port, "127.0.0.1", () =>
          socket.write(
            `GET ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
              "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
              `Authorization: Bearer ${key}\r\n\r\n`,
          ),
        );
        let answer = "";
        socket.on("data", (chunk: Buffer) => {
          answer += chunk.toString();
        });
        socket.on("close", () => resolve(answer));
        socket.on("error", () => resolve(answer));
      });
    const upgrade = await upgradeTo("/v1/stream");
    expect(await upgradeTo("/v1/elsewhere?x=1")).toMatch(/^HTTP\/1\.1 404 /);
    expect(upgrade).toMatch(/^HTTP\/1\.1 503 /);
    expect(upgrade).toContain('"code":"websocket_unavailable"');
    expect((await api(server.baseUrl, null).request("GET", "/v1/health")).status).toBe(503);
    expect(await server.stop()).toBe(0);
    server = null;
  });
});
