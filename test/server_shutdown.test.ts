// A stop signal on a real server: it stops accepting, answers requests that arrive on open
// keep-alive connections with 503 `shutting_down`, lets an in-flight write finish durably,
// checkpoints, and exits 0 (SIGINT here; SIGTERM in server.test.ts and server_crash.test.ts).
import fs from "node:fs";
import net from "node:net";
import { afterAll, describe, expect, it } from "vitest";
import {
  api,
  type ServerProcess,
  startServerProcess,
  startServerWithKeys,
} from "./helpers/server_process.js";

interface RawResponse {
  status: number;
  headers: Map<string, string>;
  body: string;
}

/** One keep-alive connection that reads whole responses (Content-Length bodies). */
class RawConnection {
  private buffered = Buffer.alloc(0);
  private waiting: ((r: RawResponse) => void) | null = null;
  readonly closed: Promise<void>;

  private constructor(private readonly socket: net.Socket) {
    socket.on("data", (chunk: Buffer) => {
      this.buffered = Buffer.concat([this.buffered, chunk]);
      this.deliver();
    });
    this.closed = new Promise((resolve) => socket.once("close", () => resolve()));
  }

  static open(port: number): Promise<RawConnection> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(port, "127.0.0.1", () => resolve(new RawConnection(socket)));
      socket.once("error", reject);
    });
  }

  write(text: string): void {
    this.socket.write(text);
  }

  /** The next complete response on this connection. */
  response(): Promise<RawResponse> {
    return new Promise((resolve) => {
      this.waiting = resolve;
      this.deliver();
    });
  }

  close(): void {
    this.socket.destroy();
  }

  private deliver(): void {
    if (this.waiting === null) return;
    const end = this.buffered.indexOf("\r\n\r\n");
    if (end === -1) return;
    const [statusLine = "", ...lines] = this.buffered.subarray(0, end).toString().split("\r\n");
    const headers = new Map<string, string>();
    for (const line of lines) {
      const colon = line.indexOf(":");
      headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
    }
    const length = Number(headers.get("content-length") ?? "0");
    if (this.buffered.length < end + 4 + length) return;
    const body = this.buffered.subarray(end + 4, end + 4 + length).toString();
    this.buffered = this.buffered.subarray(end + 4 + length);
    const resolve = this.waiting;
    this.waiting = null;
    resolve({ status: Number(statusLine.split(" ")[1]), headers, body });
  }
}

function exitCode(server: ServerProcess): Promise<number | null> {
  return new Promise((resolve) => {
    if (server.child.exitCode !== null) resolve(server.child.exitCode);
    else server.child.once("exit", (code) => resolve(code));
  });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls until `ready()` holds (at most 10 s). */
async function until(what: string, ready: () => boolean | Promise<boolean>): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (await ready()) return;
    await sleep(50);
  }
  throw new Error(`timed out waiting for ${what}`);
}

let dataDir = "";
let server: ServerProcess | null = null;

afterAll(async () => {
  await server?.kill9();
  if (dataDir !== "") fs.rmSync(dataDir, { recursive: true, force: true });
});

describe("shutdown on a stop signal", () => {
  it("refuses new requests, finishes the in-flight write, checkpoints and exits 0", async () => {
    const started = await startServerWithKeys("agent-stop");
    dataDir = started.dataDir;
    server = started.server;
    const first = await api(server.baseUrl, started.agentKey).request("POST", "/v1/assert", {
      concept: "stop/first",
      value: 1,
      confidence: 0.9,
    });
    expect(first.status).toBe(201);

    // An in-flight write: its headers and half its body are in, so the drain waits for it.
    const body = JSON.stringify({ concept: "stop/in-flight", value: 2, confidence: 0.8 });
    const writer = await RawConnection.open(server.port);
    writer.write(
      `POST /v1/assert HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${started.agentKey}\r\n` +
        `Content-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, 10)}`,
    );
    // Keep-alive connections opened before the signal.
    const idle = await RawConnection.open(server.port);
    idle.write("GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    expect((await idle.response()).status).toBe(200);
    const poster = await RawConnection.open(server.port);
    poster.write("GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    expect((await poster.response()).status).toBe(200);
    // The writer's request is being handled: the scrape sees it besides itself.
    const metrics = api((server as ServerProcess).baseUrl, started.readerKey);
    await until("the in-flight write", async () => {
      const text = (await metrics.request("GET", "/metrics")).text;
      return /^stemedb_http_requests_in_flight 2$/m.test(text);
    });

    const exited = exitCode(server);
    const stopping = server;
    server.child.kill("SIGINT");
    await until("the shutdown log line", () =>
      stopping.stdout.some((line) => line.includes("shutting down")),
    );
    expect(server.child.exitCode).toBeNull(); // still draining: the write is not finished

    idle.write("GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    const refused = await idle.response();
    expect(refused.status).toBe(503);
    expect(JSON.parse(refused.body)).toMatchObject({ error: { code: "shutting_down" } });
    expect(refused.headers.get("retry-after")).toBeTruthy();
    expect(refused.headers.get("x-request-id")).toBeTruthy();
    await idle.closed; // and the connection is closed
    // A write with its whole body, refused the same way (its body is read first).
    const late = JSON.stringify({ concept: "stop/late", value: 3, confidence: 0.5 });
    poster.write(
      `POST /v1/assert HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${started.agentKey}\r\n` +
        `Content-Type: application/json\r\nContent-Length: ${late.length}\r\n\r\n${late}`,
    );
    const lateAnswer = await poster.response();
    expect(lateAnswer.status).toBe(503);
    expect(JSON.parse(lateAnswer.body)).toMatchObject({ error: { code: "shutting_down" } });
    await poster.closed;

    writer.write(body.slice(10));
    const written = await writer.response();
    expect(written.status).toBe(201);
    const id = (JSON.parse(written.body) as { id: string }).id;
    writer.close();
    expect(await exited).toBe(0);

    // The restart finds everything checkpointed: nothing to replay, both writes readable.
    server = await startServerProcess({ dataDir });
    const health = await api(server.baseUrl, null).request("GET", "/v1/health");
    const report = health.json as {
      version: string;
      uptime_s: number;
      shards: Array<{
        last_lsn: number;
        checkpoint_lsn: number;
        wal_segments: number;
        recovery: { replayed_records: number };
      }>;
    };
    expect(typeof report.version).toBe("string");
    expect(report.uptime_s).toBeGreaterThanOrEqual(0);
    let writtenLsns = 0;
    for (const shard of report.shards) {
      expect(shard.checkpoint_lsn).toBe(shard.last_lsn);
      expect(shard.recovery.replayed_records).toBe(0);
      expect(shard.wal_segments).toBeGreaterThanOrEqual(1);
      writtenLsns += shard.last_lsn;
    }
    expect(writtenLsns).toBeGreaterThanOrEqual(2);
    const reader = api(server.baseUrl, started.readerKey);
    expect((await reader.request("GET", `/v1/assertions/${id}`)).status).toBe(200);
    const firstId = (first.json as { id: string }).id;
    expect((await reader.request("GET", `/v1/assertions/${firstId}`)).status).toBe(200);
  });
});
