// `stemedb backup --to DIR`: asks the running server for an online, consistent backup.
import fs from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { DEFAULT_BIND_ADDR } from "../config.js";
import type { BackupManifest } from "../store/backup_manifest.js";

const USAGE = `usage: stemedb backup --to DIR [--url URL] [--key-file FILE | --key KEY] [--data-dir D] [--json]
  Online backup of the running server into DIR (an absolute path on the server's machine,
  absent or empty). The key defaults to <data-dir>/admin.key.`;

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
  const file = keyFile ?? path.join(dataDir, "admin.key");
  return fs.readFileSync(file, "utf8").trim();
}

export async function runBackup(argv: string[]): Promise<number> {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        to: { type: "string" },
        url: { type: "string" },
        key: { type: "string" },
        "key-file": { type: "string" },
        "data-dir": { type: "string" },
        json: { type: "boolean", default: false },
      },
    }));
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n${USAGE}\n`);
    return 2;
  }
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
  const res = await fetch(`${serverUrl(values.url as string | undefined)}/v1/admin/backup`, {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: JSON.stringify({ to: path.resolve(values.to) }),
  });
  const body = (await res.json()) as BackupManifest & {
    to: string;
    bytes: number;
    duration_ms: number;
    error?: { message: string };
  };
  if (res.status !== 201) {
    process.stderr.write(
      `backup failed (${res.status}): ${body.error?.message ?? JSON.stringify(body)}\n`,
    );
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
