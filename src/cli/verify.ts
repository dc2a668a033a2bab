// `stemedb verify`: offline consistency check of a data directory. Read-only: the WAL is read
// with recoverWal({readOnly: true}) (never zeroes a torn tail or deletes a segment) and each
// LMDB env is opened with lmdb-js readOnly (no write transaction, no named db created).
//
// Per shard:
// - WAL: segment headers, record CRCs, contiguous LSNs (recovery's rules, docs/wal.md); a
//   corrupt record is a failure, a torn tail only a warning (an unacknowledged last batch).
// - LMDB: meta (shard_id, format, applied_lsn); every record decodes, sits at its own LSN,
//   belongs to the shard and has its ids, by_concept and by_agent entries; every index entry
//   points to a record whose id/concept/agent match; latest[concept] is the newest active
//   record of the concept.
// - WAL vs LMDB: WAL records at or below applied_lsn are in LMDB, the log reaches applied_lsn.
// Plus the manifest: present, valid, and its shard_count matches the shard directories.
import fs from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { type Manifest, readManifest } from "../store/manifest.js";
import { WalCorruptionError } from "../wal/errors.js";
import { listSegments, recoverWal } from "../wal/recovery.js";
import {
  type DataDirs,
  DIR_OPTIONS,
  DIR_OPTIONS_HELP,
  EXIT_FAILED,
  EXIT_OK,
  out,
  parseOrUsage,
  printJson,
  resolveDataDirs,
  SHARD_DIR_RE,
  UsageError,
} from "./args.js";
import { walCrossCheck } from "./verify_cross_check.js";
import { checkLmdb, Findings, type LmdbSummary, openLmdbReadOnly } from "./verify_lmdb.js";

export const VERIFY_USAGE = `Usage: stemedb verify [--data-dir D] [--wal-dir W] [--db-dir B] [--json]

Checks a data directory offline: WAL segment headers, record CRCs and LSN order; every LMDB
record and index entry (ids, by_concept, by_agent, latest); that LMDB and the WAL agree about
applied_lsn; and that manifest.json matches the shard directories. Never modifies a file.

Stop the server first: a running server may make the WAL tail look torn (a batch being
written) and LMDB may be ahead of what this read sees.

${DIR_OPTIONS_HELP}

Exit status: 0 all checks passed (warnings allowed), 1 a check failed, 2 usage error.`;

export interface WalSummary {
  dir: string;
  segments: number;
  first_lsn: number | null;
  last_lsn: number | null;
  records: number;
  torn_tails: number;
  corruption: { segment: string; offset_bytes: number; message: string } | null;
}

export interface ShardReport {
  shard: number;
  ok: boolean;
  wal: WalSummary | null;
  lmdb: LmdbSummary | null;
  wal_records_above_applied: number;
  problems: string[];
  warnings: string[];
  /** Messages beyond the per-shard bound, counted only. */
  problems_omitted: number;
  warnings_omitted: number;
}

export interface VerifyReport {
  ok: boolean;
  data_dir: string;
  wal_dir: string;
  db_dir: string;
  manifest: { present: boolean; shard_count: number | null; shard_hash: string | null };
  problems: string[];
  warnings: string[];
  shards: ShardReport[];
}

function shardDirName(shardId: number): string {
  return `shard-${String(shardId).padStart(3, "0")}`;
}

/** Shard ids that have a directory under `root` (missing root: none). */
function shardIdsIn(root: string): number[] {
  let names: string[];
  try {
    names = fs.readdirSync(root);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw err;
  }
  const ids: number[] = [];
  for (const name of names) {
    const m = SHARD_DIR_RE.exec(name);
    if (m !== null && shardDirName(Number(m[1])) === name) ids.push(Number(m[1]));
  }
  return ids.sort((a, b) => a - b);
}

function isDir(p: string): boolean {
  try {
    return fs.statSync(p).isDirectory();
  } catch {
    return false;
  }
}

function verifyWal(
  walDir: string,
  shardId: number,
  f: Findings,
  check: ReturnType<typeof walCrossCheck>,
): WalSummary {
  const summary: WalSummary = {
    dir: walDir,
    segments: 0,
    first_lsn: null,
    last_lsn: null,
    records: 0,
    torn_tails: 0,
    corruption: null,
  };
  try {
    const segments = listSegments(walDir, shardId);
    summary.segments = segments.length;
    const oldest = segments[0];
    if (oldest === undefined) return summary;
    // Segments behind the last checkpoint may have been recycled: verify what is present.
    const result = recoverWal({
      dir: walDir,
      shardId,
      checkpointLsn: Math.max(0, oldest.header.firstLsn - 1),
      repair: false,
      readOnly: true,
      onRecord: (kind, lsn, payload) => check.onRecord(kind, lsn, payload),
    });
    summary.records = check.records;
    summary.first_lsn = oldest.header.firstLsn;
    summary.last_lsn = result.nextLsn - 1;
    summary.torn_tails = result.tornTailTruncations;
    if (result.tornTailTruncations > 0) {
      const last = result.segments[result.segments.length - 1];
      f.warn(
        `WAL has a torn tail after LSN ${result.nextLsn - 1} in ${last?.path ?? "the last segment"} ` +
          "(an unacknowledged last batch; the server zeroes it at start). If the server was " +
          "running during verify, stop it and verify again.",
      );
    }
    if (check.records !== result.replayedRecords) {
      f.fail(
        `WAL recovery replayed ${result.replayedRecords} records but ${check.records} were seen`,
      );
    }
  } catch (err) {
    if (!(err instanceof WalCorruptionError)) throw err;
    summary.records = check.records;
    summary.first_lsn = check.firstLsn;
    summary.last_lsn = check.lastLsn;
    summary.corruption = {
      segment: err.segmentPath,
      offset_bytes: err.offsetBytes,
      message: err.message,
    };
    f.fail(err.message); // names shard, segment path, byte offset and what to do
  }
  return summary;
}

export function verifyShard(dirs: DataDirs, shardId: number): ShardReport {
  const f = new Findings();
  const walDir = path.join(dirs.walDir, shardDirName(shardId));
  const dbDir = path.join(dirs.dbDir, shardDirName(shardId));
  const report: ShardReport = {
    shard: shardId,
    ok: false,
    wal: null,
    lmdb: null,
    wal_records_above_applied: 0,
    problems: f.problems,
    warnings: f.warnings,
    problems_omitted: 0,
    warnings_omitted: 0,
  };
  // lmdb-js creates a missing directory on open: check first, never create anything.
  const hasData = fs.existsSync(path.join(dbDir, "data.mdb"));
  if (!isDir(dbDir)) f.fail(`LMDB directory ${dbDir} is missing`);
  else if (!hasData) f.fail(`LMDB directory ${dbDir} has no data.mdb`);
  const lmdb = hasData ? openLmdbReadOnly(dbDir, shardId, f) : null;
  try {
    const check = walCrossCheck(shardId, lmdb, f);
    if (isDir(walDir)) report.wal = verifyWal(walDir, shardId, f, check);
    else f.fail(`WAL directory ${walDir} is missing`);
    report.wal_records_above_applied = check.aboveApplied;
    if (lmdb !== null) {
      report.lmdb = checkLmdb(lmdb, shardId, f, check.walIdsAboveApplied());
      const applied = lmdb.appliedLsn;
      const wal = report.wal;
      if (wal !== null && wal.corruption === null) {
        // No segments is normal after a clean stop: the final checkpoint recycles them all.
        if (wal.first_lsn !== null && wal.first_lsn > applied + 1) {
          f.fail(
            `the WAL starts at LSN ${wal.first_lsn} but LMDB applied_lsn is ${applied}: LSNs ` +
              `${applied + 1}..${wal.first_lsn - 1} are missing; the server refuses to start on this shard`,
          );
        } else if (wal.last_lsn !== null && wal.last_lsn < applied) {
          f.fail(
            `LMDB applied_lsn ${applied} is beyond the end of the WAL (last LSN ${wal.last_lsn}): ` +
              "the log lost records; the server refuses to start on this shard",
          );
        }
      }
    }
  } finally {
    if (lmdb !== null) lmdb.close();
  }
  report.ok = f.problemCount === 0;
  report.problems_omitted = f.problemCount - f.problems.length;
  report.warnings_omitted = f.warningCount - f.warnings.length;
  return report;
}

export function verifyDataDir(dirs: DataDirs): VerifyReport {
  const report: VerifyReport = {
    ok: false,
    data_dir: dirs.dataDir,
    wal_dir: dirs.walDir,
    db_dir: dirs.dbDir,
    manifest: { present: false, shard_count: null, shard_hash: null },
    problems: [],
    warnings: [],
    shards: [],
  };
  let manifest: Manifest | null = null;
  try {
    manifest = readManifest(dirs.dataDir);
    if (manifest === null) {
      report.problems.push(`${path.join(dirs.dataDir, "manifest.json")} is missing`);
    }
  } catch (err) {
    report.manifest.present = true;
    report.problems.push(`manifest.json is invalid: ${(err as Error).message}`);
  }
  if (manifest !== null) {
    report.manifest = {
      present: true,
      shard_count: manifest.shard_count,
      shard_hash: manifest.shard_hash,
    };
  }
  const walIds = shardIdsIn(dirs.walDir);
  const dbIds = shardIdsIn(dirs.dbDir);
  const found = [...new Set([...walIds, ...dbIds])].sort((a, b) => a - b);
  let ids = found;
  if (manifest !== null) {
    const count = manifest.shard_count;
    ids = Array.from({ length: count }, (_, i) => i);
    const extra = found.filter((id) => id >= count);
    if (extra.length > 0) {
      report.problems.push(
        `manifest shard_count is ${count} but shard directories exist for shard(s) ${extra.join(", ")}`,
      );
    }
    const missing = ids.filter((id) => !walIds.includes(id) || !dbIds.includes(id));
    if (missing.length > 0) {
      report.problems.push(
        `manifest shard_count is ${count} but the WAL or LMDB directory is missing for shard(s) ${missing.join(", ")}`,
      );
    }
  }
  // The server refuses shard data without its meta store (keys, agents, trust, …), and so
  // does this check (its contents are the server's to read: it is opened on start).
  const metaFile = path.join(dirs.dataDir, "meta", "data.mdb");
  if (found.length > 0 && !fs.existsSync(metaFile)) report.problems.push(`${metaFile} is missing`);
  for (const id of ids) report.shards.push(verifyShard(dirs, id));
  report.ok = report.problems.length === 0 && report.shards.every((s) => s.ok);
  return report;
}

function shardLine(s: ShardReport): string {
  const parts: string[] = [];
  const w = s.wal;
  if (w === null) parts.push("WAL missing");
  else if (w.segments === 0) parts.push("WAL empty (0 segments: all checkpointed)");
  else {
    const range = w.records > 0 ? `LSN ${w.first_lsn}..${w.last_lsn}` : "no records";
    parts.push(
      `WAL ${w.segments} segment(s), ${range} (${w.records} records${w.torn_tails > 0 ? ", torn tail" : ""}${w.corruption !== null ? ", CORRUPT" : ""})`,
    );
  }
  const l = s.lmdb;
  if (l === null) parts.push("LMDB missing");
  else {
    parts.push(
      `LMDB applied_lsn ${l.applied_lsn}, ${l.records} records, ${l.ids} ids, ${l.by_concept} by_concept, ` +
        `${l.by_agent} by_agent, ${l.latest} latest, ${l.active} active`,
    );
  }
  if (s.wal_records_above_applied > 0) {
    parts.push(`${s.wal_records_above_applied} WAL record(s) to replay at start`);
  }
  return `shard ${s.shard}: ${s.ok ? "ok" : "FAILED"}: ${parts.join("; ")}`;
}

export function renderVerifyReport(r: VerifyReport): string {
  const lines = [`stemedb verify ${r.data_dir} (wal ${r.wal_dir}, db ${r.db_dir})`];
  lines.push(
    r.manifest.shard_count !== null
      ? `manifest: ${r.manifest.shard_count} shard(s), hash ${r.manifest.shard_hash}`
      : "manifest: MISSING OR INVALID",
  );
  for (const p of r.problems) lines.push(`  problem: ${p}`);
  for (const w of r.warnings) lines.push(`  warning: ${w}`);
  let problems = r.problems.length;
  let warnings = r.warnings.length;
  for (const s of r.shards) {
    lines.push(shardLine(s));
    for (const p of s.problems) lines.push(`  problem: ${p}`);
    if (s.problems_omitted > 0) lines.push(`  ... and ${s.problems_omitted} more problem(s)`);
    for (const w of s.warnings) lines.push(`  warning: ${w}`);
    if (s.warnings_omitted > 0) lines.push(`  ... and ${s.warnings_omitted} more warning(s)`);
    problems += s.problems.length + s.problems_omitted;
    warnings += s.warnings.length + s.warnings_omitted;
  }
  lines.push(
    `result: ${r.ok ? "OK" : "FAILED"}: ${r.shards.length} shard(s), ${problems} problem(s), ${warnings} warning(s)`,
  );
  return lines.join("\n");
}

export async function runVerify(argv: string[]): Promise<number> {
  const { values } = parseOrUsage(() =>
    parseArgs({ args: argv, options: DIR_OPTIONS, strict: true, allowPositionals: false }),
  );
  if (values.help) {
    out(VERIFY_USAGE);
    return EXIT_OK;
  }
  const dirs = resolveDataDirs(values);
  if (!isDir(dirs.dataDir)) throw new UsageError(`data directory ${dirs.dataDir} does not exist`);
  const report = verifyDataDir(dirs);
  if (values.json) printJson(report);
  else out(renderVerifyReport(report));
  return report.ok ? EXIT_OK : EXIT_FAILED;
}
