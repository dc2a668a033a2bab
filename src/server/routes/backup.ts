// POST /v1/admin/backup: an online, consistent backup while writes continue. Each shard
// copies an LMDB snapshot and its live WAL segments (checkpoints paused meanwhile); the meta
// store and the data directory manifest are copied too, and backup.json lists every file
// with its size and SHA-256 and every shard's LSN cut.
import fs from "node:fs";
import path from "node:path";
import { Type } from "@sinclair/typebox";
import { TypeCompiler } from "@sinclair/typebox/compiler";
import { shardDirs } from "../../shard/shard_open.js";
import {
  BACKUP_FORMAT_VERSION,
  BACKUP_MANIFEST_FILE,
  type BackupManifest,
  describeFiles,
} from "../../store/backup_manifest.js";
import { fsyncDir, MANIFEST_FILE, writeFileAtomic } from "../../store/manifest.js";
import type { ServerContext } from "../context.js";
import { conflict, echo, notFound, unprocessable } from "../errors.js";
import type { Reply, Route, RouteContext } from "../router.js";
import { parseJsonBody, validate } from "../schemas.js";

export const BackupRequest = Type.Object(
  {
    to: Type.String({
      minLength: 1,
      maxLength: 4096,
      description: "absolute directory path on the server; must not exist or be empty",
    }),
  },
  { additionalProperties: false },
);
const BackupRequestCheck = TypeCompiler.Compile(BackupRequest);

/** Backups run as jobs: uWS closes a connection idle for ~10 s, and a backup can take longer. */
interface BackupJob {
  id: string;
  to: string;
  status: "running" | "done" | "failed";
  startedAtMs: number;
  finishedAtMs: number | null;
  result: (BackupManifest & { bytes: number }) | null;
  error: string | null;
}
const MAX_REMEMBERED_JOBS = 32;
const jobs = new Map<string, BackupJob>();
let jobCounter = 0;

function jobJson(job: BackupJob): string {
  return JSON.stringify({
    id: job.id,
    to: job.to,
    status: job.status,
    started_at: job.startedAtMs,
    finished_at: job.finishedAtMs,
    duration_ms: (job.finishedAtMs ?? Date.now()) - job.startedAtMs,
    error: job.error,
    ...(job.result ?? {}),
  });
}

/**
 * fsyncs every file under `dir` (on the thread pool: segments and LMDB copies are large) and
 * every directory, children first. The copies (copyFile, LMDB's env copy) do not sync.
 */
async function fsyncTree(dir: string): Promise<void> {
  for (const entry of await fs.promises.readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) await fsyncTree(p);
    else if (entry.isFile()) {
      const handle = await fs.promises.open(p, "r");
      try {
        await handle.sync();
      } finally {
        await handle.close();
      }
    }
  }
  fsyncDir(dir);
}

export async function runBackup(server: ServerContext, to: string): Promise<BackupManifest> {
  const { config, pool } = server;
  fs.mkdirSync(path.join(to, "meta"), { recursive: true });
  fs.copyFileSync(path.join(config.dataDir, MANIFEST_FILE), path.join(to, MANIFEST_FILE));
  await server.meta.root.backup(path.join(to, "meta"), false);
  const shards = await Promise.all(
    Array.from({ length: pool.shardCount }, async (_, shard) => {
      const dirs = shardDirs(path.join(to, "wal"), path.join(to, "db"), shard);
      const result = await pool.backup(shard, dirs.walDir, dirs.dbDir);
      return { shard, cut_lsn: result.cutLsn, snapshot_lsn: result.snapshotLsn };
    }),
  );
  const manifest: BackupManifest = {
    format_version: BACKUP_FORMAT_VERSION,
    created_at_ms: Date.now(),
    shard_count: pool.shardCount,
    shards,
    files: await describeFiles(to),
  };
  // Everything on disk before backup.json says the backup is complete.
  await fsyncTree(to);
  writeFileAtomic(to, BACKUP_MANIFEST_FILE, `${JSON.stringify(manifest, null, 2)}\n`);
  fsyncDir(path.dirname(path.resolve(to)));
  return manifest;
}

async function backupHandler(server: ServerContext, ctx: RouteContext): Promise<Reply> {
  const checked = validate(BackupRequestCheck, parseJsonBody(ctx.body as Buffer));
  if (!checked.ok) throw unprocessable(checked.message);
  const to = checked.value.to;
  if (!path.isAbsolute(to))
    throw unprocessable(`Field /to must be an absolute path (got ${echo(to)}).`, "invalid_path");
  const resolved = path.resolve(to);
  const dataDir = path.resolve(server.config.dataDir);
  if (resolved === dataDir || resolved.startsWith(dataDir + path.sep)) {
    throw unprocessable("The backup directory must be outside the data directory.", "invalid_path");
  }
  if (fs.existsSync(resolved) && fs.readdirSync(resolved).length > 0) {
    throw conflict(
      `The backup directory ${echo(resolved)} is not empty.`,
      "backup_target_not_empty",
    );
  }
  if ([...jobs.values()].some((j) => j.status === "running"))
    throw conflict("A backup is already running.", "backup_running");
  jobCounter++;
  const job: BackupJob = {
    id: `backup-${Date.now()}-${jobCounter}`,
    to: resolved,
    status: "running",
    startedAtMs: Date.now(),
    finishedAtMs: null,
    result: null,
    error: null,
  };
  if (jobs.size >= MAX_REMEMBERED_JOBS) jobs.delete(jobs.keys().next().value as string);
  jobs.set(job.id, job);
  runBackup(server, resolved).then(
    (manifest) => {
      const bytes = manifest.files.reduce((sum, f) => sum + f.size_bytes, 0);
      job.result = { ...manifest, bytes };
      job.status = "done";
      job.finishedAtMs = Date.now();
      server.logger.info(
        {
          request_id: ctx.requestId,
          job: job.id,
          to: resolved,
          bytes,
          ms: job.finishedAtMs - job.startedAtMs,
        },
        "backup written",
      );
    },
    (err: unknown) => {
      job.status = "failed";
      job.error = (err as Error).message;
      job.finishedAtMs = Date.now();
      server.logger.error({ request_id: ctx.requestId, job: job.id, err }, "backup failed");
    },
  );
  return { status: 202, body: jobJson(job), headers: { location: `/v1/admin/backups/${job.id}` } };
}

export function backupRoutes(server: ServerContext): Route[] {
  return [
    {
      method: "post",
      pattern: "/v1/admin/backup",
      summary: "Start an online backup job into an empty directory",
      bodySchema: BackupRequest,
      role: "admin",
      jsonBody: true,
      handler: (ctx) => backupHandler(server, ctx),
    },
    {
      method: "get",
      pattern: "/v1/admin/backups/:id",
      role: "admin",
      jsonBody: false,
      handler: (ctx) => {
        const job = jobs.get(ctx.params[0] ?? "");
        if (job === undefined) throw notFound(`No backup job has id ${echo(ctx.params[0] ?? "")}.`);
        return { status: 200, body: jobJson(job) };
      },
    },
  ];
}
