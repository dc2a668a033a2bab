// Runs the real server (`node dist/src/server/main.js`) as a child process on a free
// loopback port and talks to it over real HTTP. Used by `stemedb dr-drill`, the benchmarks
// and the tests.
import { type ChildProcess, spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const MAIN = path.join(path.dirname(fileURLToPath(import.meta.url)), "../server/main.js");
const START_TIMEOUT_MS = 30_000;

export interface ServerProcess {
  port: number;
  baseUrl: string;
  dataDir: string;
  child: ChildProcess;
  stdout: string[];
  /** Admin key printed on first start (null when the directory already had keys). */
  printedAdminKey: string | null;
  /** SIGTERM and wait; resolves with the exit code once `stdout` holds every line. */
  stop(): Promise<number | null>;
  /** SIGKILL and wait. */
  kill9(): Promise<void>;
}

export function newDataDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), "stemedb-srv-"));
}

export interface StartOptions {
  dataDir: string;
  shards?: number;
  env?: Record<string, string>;
}

function waitExit(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => child.once("exit", (code) => resolve(code)));
}

/**
 * The caller's environment without its STEMEDB_* variables: a scratch server (tests, the DR
 * drill) is configured only by its options, never pointed at a production STEMEDB_WAL_DIR,
 * STEMEDB_DB_DIR or STEMEDB_WAL_ARCHIVE_DIR that the calling shell happens to have loaded.
 */
function scratchEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env))
    if (!name.startsWith("STEMEDB_")) env[name] = value;
  return env;
}

/** Starts the server and resolves once it logs "listening"; rejects with its output if it exits first. */
export function startServerProcess(opts: StartOptions): Promise<ServerProcess> {
  const child = spawn(process.execPath, [MAIN], {
    env: {
      ...scratchEnv(),
      STEMEDB_DATA_DIR: opts.dataDir,
      STEMEDB_BIND_ADDR: "127.0.0.1:0",
      STEMEDB_SHARDS: String(opts.shards ?? 2),
      STEMEDB_WAL_SEGMENT_BYTES: String(4 * 1024 * 1024),
      STEMEDB_LOG_LEVEL: "info",
      ...opts.env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const stdout: string[] = [];
  let stderr = "";
  return new Promise((resolve, reject) => {
    let buffered = "";
    let printedAdminKey: string | null = null;
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(
        new Error(
          `server did not start within ${START_TIMEOUT_MS} ms:\n${stdout.join("\n")}\n${stderr}`,
        ),
      );
    }, START_TIMEOUT_MS);
    child.stderr?.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    child.stdout?.on("data", (chunk: Buffer) => {
      buffered += chunk.toString();
      const lines = buffered.split("\n");
      buffered = lines.pop() ?? "";
      for (const line of lines) {
        stdout.push(line);
        const key = /^\s+(stm_[a-z2-7]{12}_[A-Za-z0-9_-]{43})$/.exec(line);
        if (key !== null) printedAdminKey = key[1] as string;
        if (!line.startsWith("{")) continue;
        const entry = JSON.parse(line) as { msg?: string; port?: number };
        if (entry.msg === "listening" && entry.port !== undefined) {
          clearTimeout(timer);
          const port = entry.port;
          resolve({
            port,
            baseUrl: `http://127.0.0.1:${port}`,
            dataDir: opts.dataDir,
            child,
            stdout,
            printedAdminKey,
            stop: async () => {
              const out = child.stdout;
              const drained = new Promise<void>((done) => {
                if (out === null || out.closed || out.destroyed) done();
                else out.once("close", () => done());
              });
              child.kill("SIGTERM");
              const code = await waitExit(child);
              await drained;
              return code;
            },
            kill9: async () => {
              child.kill("SIGKILL");
              await waitExit(child);
            },
          });
        }
      }
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new ServerExitError(code, `${stdout.join("\n")}\n${stderr}`));
    });
  });
}

export class ServerExitError extends Error {
  constructor(
    readonly exitCode: number | null,
    readonly output: string,
  ) {
    super(`server exited with code ${exitCode}: ${output}`);
  }
}

export function readAdminKeyFile(dataDir: string): string {
  return fs.readFileSync(path.join(dataDir, "admin.key"), "utf8").trim();
}

export interface Api {
  request(
    method: string,
    urlPath: string,
    body?: unknown,
    headers?: Record<string, string>,
  ): Promise<ApiResponse>;
}

export interface ApiResponse {
  status: number;
  headers: Headers;
  text: string;
  json: unknown;
}

export function api(baseUrl: string, key: string | null): Api {
  return {
    async request(method, urlPath, body, headers = {}) {
      const init: RequestInit = { method, headers: { ...headers } };
      if (key !== null) (init.headers as Record<string, string>).authorization = `Bearer ${key}`;
      if (body !== undefined) {
        init.body =
          typeof body === "string" || body instanceof Uint8Array ? body : JSON.stringify(body);
        if (!("content-type" in headers))
          (init.headers as Record<string, string>)["content-type"] = "application/json";
      }
      const res = await fetch(baseUrl + urlPath, init);
      const text = await res.text();
      let json: unknown = null;
      try {
        json = JSON.parse(text);
      } catch {
        json = null;
      }
      return { status: res.status, headers: res.headers, text, json };
    },
  };
}

/** Creates a key through the admin API and returns it. */
export async function createKey(
  baseUrl: string,
  adminKey: string,
  role: "agent" | "reader" | "admin",
  principal?: string,
): Promise<string> {
  const res = await api(baseUrl, adminKey).request("POST", "/v1/admin/api_keys", {
    role,
    ...(principal ? { principal } : {}),
  });
  if (res.status !== 201) throw new Error(`key creation failed: ${res.status} ${res.text}`);
  return (res.json as { key: string }).key;
}
