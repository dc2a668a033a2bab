// `stemedb backup --to DIR`: asks the running server for an online, consistent backup.
import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import { DEFAULT_BIND_ADDR } from "../config.js";
import type { BackupManifest } from "../store/backup_manifest.js";
import { parseCommand } from "./args.js";

const USAGE = `usage: stemedb backup --to DIR [--url URL] [--key-file FILE | --key KEY] [--data-dir D] [--json]
  Online backup of the running server into DIR (an absolute path on the server's machine,
  absent or empty). The key defaults to STEMEDB_ADMIN_KEY, else <data-dir>/admin.key.`;

export function serverUrl(explicit: string | undefined): string {
  if (explicit !== undefined) return explicit.replace(/\/$/, "");
  const addr = process.env.STEMEDB_BIND_ADDR ?? DEFAULT_BIND_ADDR;
  const host = addr.slice(0, addr.lastIndexOf(":")).replace(/^0\.0\.0\.0$/, "127.0.0.1");
  return `http://${host}:${addr.slice(addr.lastIndexOf(":") + 1)}`;
}

export function adminKey(
  key: string | undefined,
  keyFile: string | undefined,
  dataDir: string,
): string {
  if (key !== undefined) return key;
  // The server's own first admin key, when it came from the environment (no admin.key then).
  const envKey = process.env.STEMEDB_ADMIN_KEY?.trim();
  if (keyFile === undefined && envKey !== undefined && envKey !== "") return envKey;
  const file = keyFile ?? path.join(dataDir, "admin.key");
  return fs.readFileSync(file, "utf8").trim();
}

export interface BackupJobResult extends BackupManifest {
  id: string;
  to: string;
  status: "running" | "done" | "failed";
  duration_ms: number;
  bytes: number;
  error: string | null;
}

const POLL_INTERVAL_MS = 100;
const MAX_BACKUP_WAIT_MS = 6 * 60 * 60 * 1000;

/**
 * One JSON request on a fresh connection (no keep-alive): the CLI's requests are minutes
 * apart, and a pooled connection the server has meanwhile closed would fail a POST.
 */
function requestJson(
  url: string,
  method: string,
  key: string,
  body?: unknown,
): Promise<{ status: number; json: unknown }> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = http.request(
      url,
      {
        method,
        agent: false,
        headers: {
          authorization: `Bearer ${key}`,
          ...(payload === undefined
            ? {}
            : { "content-type": "application/json", "content-length": Buffer.byteLength(payload) }),
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          try {
            resolve({
              status: res.statusCode ?? 0,
              json: JSON.parse(Buffer.concat(chunks).toString("utf8")),
            });
          } catch (err) {
            reject(err);
          }
        });
      },
    );
    req.on("error", reject);
    req.end(payload);
  });
}

/** Starts a backup job on the server and polls it until it is done or failed. */
export async function backupAndWait(
  baseUrl: string,
  key: string,
  to: string,
): Promise<BackupJobResult> {
  const res = await requestJson(`${baseUrl}/v1/admin/backup`, "POST", key, { to });
  let job = res.json as BackupJobResult & { error?: unknown };
  if (res.status !== 202) {
    const message = (job.error as { message?: string } | undefined)?.message ?? JSON.stringify(job);
    throw new Error(`backup refused (${res.status}): ${message}`);
  }
  const deadline = Date.now() + MAX_BACKUP_WAIT_MS;
  while (job.status === "running") {
    if (Date.now() > deadline)
      throw new Error(`backup ${job.id} still running after ${MAX_BACKUP_WAIT_MS} ms`);
    await new Promise((r) => setTimeout(r, POLL_INTERVAL_MS));
    job = (await requestJson(`${baseUrl}/v1/admin/backups/${job.id}`, "GET", key))
      .json as BackupJobResult;
  }
  if (job.status !== "done")
    throw new Error(`backup ${job.id} ended as ${String(job.status)}: ${job.error}`);
  return job;
}

export async function runBackup(argv: string[]): Promise<number> {
  const values = parseCommand(
    argv,
    {
      to: { type: "string" },
      url: { type: "string" },
      key: { type: "string" },
      "key-file": { type: "string" },
      "data-dir": { type: "string" },
      json: { type: "boolean", default: false },
    },
    USAGE,
  );
  if (typeof values === "number") return values;
  if (typeof values.to !== "string") {
    process.stderr.write(`${USAGE}\n`);
    return 2;
  }
  const dataDir = path.resolve(
    (values["data-dir"] as string | undefined) ?? process.env.STEMEDB_DATA_DIR ?? "./data",
  );
  const key = adminKey(
    values.key as string | undefined,
    values["key-file"] as string | undefined,
    dataDir,
  );
  let body: BackupJobResult;
  try {
    body = await backupAndWait(
      serverUrl(values.url as string | undefined),
      key,
      path.resolve(values.to),
    );
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    return 1;
  }
  if (values.json === true) {
    process.stdout.write(`${JSON.stringify(body)}\n`);
    return 0;
  }
  const mb = body.bytes / 1e6;
  process.stdout.write(
    `backup written to ${body.to}: ${body.files.length} files, ${mb.toFixed(1)} MB in ${body.duration_ms} ms ` +
      `(${(mb / Math.max(body.duration_ms / 1000, 0.001)).toFixed(1)} MB/s)\n`,
  );
  for (const s of body.shards)
    process.stdout.write(
      `  shard ${s.shard}: LSN cut ${s.cut_lsn}, LMDB snapshot at ${s.snapshot_lsn}\n`,
    );
  return 0;
}
