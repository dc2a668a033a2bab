// `stemedb wal dump`: prints a shard's WAL records for debugging. Read-only: it walks the log
// with recoverWal({readOnly: true}) (the same checks as recovery, nothing zeroed or deleted)
// and stops early, by throwing out of onRecord, once --limit records were printed.
import fs from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { MAX_SHARDS } from "../domain/limits.js";
import { decodeSourceRecord, decodeStateEvent } from "../domain/state_events.js";
import { decodeAssertion } from "../store/assertion_codec.js";
import { readManifest } from "../store/manifest.js";
import { WalRecordKind } from "../store/shard_store.js";
import { WalCorruptionError } from "../wal/errors.js";
import { listSegments, recoverWal } from "../wal/recovery.js";
import {
  clip,
  DIR_OPTIONS,
  DIR_OPTIONS_HELP,
  EXIT_FAILED,
  EXIT_OK,
  intOption,
  out,
  parseOrUsage,
  printJson,
  resolveDataDirs,
  UsageError,
} from "./args.js";

const DEFAULT_LIMIT = 100;
const MAX_LIMIT = 100_000;
/** Longest value JSON shown per line in the human output. */
const MAX_VALUE_CHARS = 160;

export const WAL_DUMP_USAGE = `Usage: stemedb wal dump --shard N [--from-lsn L] [--limit K] [--data-dir D] [--json]

Prints WAL records of one shard in LSN order: segment, LSN, kind and the assertion the
payload carries (id, concept, agent, status, confidence, value). Read-only; stops at the
end of the log or at a corrupt record (exit 1, with segment and byte offset).

  --shard N      shard number (0-based), required
  --from-lsn L   first LSN to print (default: the oldest record still on disk)
  --limit K      most records to print, 1..${MAX_LIMIT} (default ${DEFAULT_LIMIT})
${DIR_OPTIONS_HELP}`;

const KIND_NAMES: Readonly<Record<number, string>> = {
  [WalRecordKind.AssertionInsert]: "assertion_insert",
  [WalRecordKind.StateEvent]: "state_event",
  [WalRecordKind.SourceInsert]: "source_insert",
};

export interface DumpedRecord {
  segment: string;
  lsn: number;
  kind: number;
  kind_name: string;
  payload_bytes: number;
  assertion: {
    id: string;
    concept: string;
    agent: string;
    status: string;
    confidence: number;
    value: unknown;
    sources: string[];
    shard: number;
    recorded_at_ms: number;
  } | null;
  /** state_event / source_insert records: the decoded JSON. */
  event: unknown;
  decode_error: string | null;
}

export interface DumpResult {
  shard: number;
  wal_dir: string;
  segments: Array<{ segment: string; seq: number; first_lsn: number }>;
  records: DumpedRecord[];
  /** True when --limit stopped the dump before the end of the log. */
  truncated: boolean;
  /** Next LSN the log would get (null when the dump stopped early or the log is corrupt). */
  next_lsn: number | null;
  torn_tail: boolean;
  corruption: { segment: string; offset_bytes: number; message: string } | null;
}

/** Thrown out of onRecord to end the scan once enough records were collected. */
class LimitReached extends Error {}

function parseValue(json: string): unknown {
  try {
    return JSON.parse(json) as unknown;
  } catch {
    return json;
  }
}

function dumpRecord(segment: string, kind: number, lsn: number, payload: Buffer): DumpedRecord {
  const rec: DumpedRecord = {
    segment,
    lsn,
    kind,
    kind_name: KIND_NAMES[kind] ?? "unknown",
    payload_bytes: payload.byteLength,
    assertion: null,
    event: null,
    decode_error: null,
  };
  if (kind === WalRecordKind.StateEvent || kind === WalRecordKind.SourceInsert) {
    try {
      rec.event =
        kind === WalRecordKind.StateEvent ? decodeStateEvent(payload) : decodeSourceRecord(payload);
    } catch (err) {
      rec.decode_error = (err as Error).message;
    }
    return rec;
  }
  if (kind !== WalRecordKind.AssertionInsert) return rec;
  try {
    const a = decodeAssertion(payload);
    rec.assertion = {
      id: a.id,
      concept: a.concept,
      agent: a.agent,
      status: a.status,
      confidence: a.confidence,
      value: parseValue(a.valueJson),
      sources: a.sources,
      shard: a.shard,
      recorded_at_ms: a.recordedAtMs,
    };
    if (a.lsn !== lsn) rec.decode_error = `payload carries lsn ${a.lsn}`;
  } catch (err) {
    rec.decode_error = (err as Error).message;
  }
  return rec;
}

export function dumpWal(walDir: string, shard: number, fromLsn: number, limit: number): DumpResult {
  const result: DumpResult = {
    shard,
    wal_dir: walDir,
    segments: [],
    records: [],
    truncated: false,
    next_lsn: null,
    torn_tail: false,
    corruption: null,
  };
  try {
    const segments = listSegments(walDir, shard);
    result.segments = segments.map((s) => ({
      segment: path.basename(s.path),
      seq: s.header.seq,
      first_lsn: s.header.firstLsn,
    }));
    const oldest = segments[0];
    if (oldest === undefined) return result;
    // A segment's header is authoritative for where its LSNs start (docs/wal.md).
    let segIndex = 0;
    const segmentOf = (lsn: number): string => {
      while ((segments[segIndex + 1]?.header.firstLsn ?? Number.POSITIVE_INFINITY) <= lsn) {
        segIndex++;
      }
      return path.basename((segments[segIndex] ?? oldest).path);
    };
    const recovered = recoverWal({
      dir: walDir,
      shardId: shard,
      checkpointLsn: Math.max(oldest.header.firstLsn, fromLsn) - 1,
      repair: false,
      readOnly: true,
      onRecord: (kind, lsn, payload) => {
        if (result.records.length >= limit) throw new LimitReached();
        result.records.push(dumpRecord(segmentOf(lsn), kind, lsn, payload));
      },
    });
    result.next_lsn = recovered.nextLsn;
    result.torn_tail = recovered.tornTailTruncations > 0;
  } catch (err) {
    if (err instanceof LimitReached) result.truncated = true;
    else if (err instanceof WalCorruptionError) {
      result.corruption = {
        segment: err.segmentPath,
        offset_bytes: err.offsetBytes,
        message: err.message,
      };
    } else throw err;
  }
  return result;
}

function renderRecord(r: DumpedRecord): string {
  const head = `${r.segment} lsn=${r.lsn} kind=${r.kind_name}(${r.kind}) bytes=${r.payload_bytes}`;
  const a = r.assertion;
  const body =
    a === null
      ? r.event === null
        ? ""
        : ` ${clip(JSON.stringify(r.event), MAX_VALUE_CHARS)}`
      : ` id=${a.id} concept=${a.concept} agent=${a.agent} status=${a.status} ` +
        `confidence=${a.confidence} value=${clip(JSON.stringify(a.value), MAX_VALUE_CHARS)}`;
  return head + body + (r.decode_error !== null ? ` DECODE ERROR: ${r.decode_error}` : "");
}

export function renderDump(d: DumpResult, fromLsn: number): string {
  const lines = [
    `shard ${d.shard} WAL ${d.wal_dir}: ${d.segments.length} segment(s)` +
      (d.segments.length > 0
        ? ` (${d.segments.map((s) => `${s.segment} from LSN ${s.first_lsn}`).join(", ")})`
        : ""),
  ];
  const oldest = d.segments[0];
  if (oldest !== undefined && fromLsn < oldest.first_lsn && fromLsn > 1) {
    lines.push(`note: LSNs before ${oldest.first_lsn} were recycled after a checkpoint`);
  }
  for (const r of d.records) lines.push(renderRecord(r));
  const first = d.records[0];
  const last = d.records[d.records.length - 1];
  const range = first !== undefined && last !== undefined ? ` (LSN ${first.lsn}..${last.lsn})` : "";
  if (d.corruption !== null) {
    lines.push(`${d.records.length} record(s)${range}, then CORRUPTION: ${d.corruption.message}`);
  } else if (d.truncated) {
    lines.push(
      `${d.records.length} record(s)${range}; more follow (raise --limit or use --from-lsn)`,
    );
  } else {
    lines.push(
      `${d.records.length} record(s)${range}; end of log, next LSN ${d.next_lsn ?? "?"}` +
        (d.torn_tail ? "; torn tail after it (an unacknowledged last batch)" : ""),
    );
  }
  return lines.join("\n");
}

export async function runWalDump(argv: string[]): Promise<number> {
  const { values } = parseOrUsage(() =>
    parseArgs({
      args: argv,
      options: {
        ...DIR_OPTIONS,
        shard: { type: "string" },
        "from-lsn": { type: "string" },
        limit: { type: "string" },
      },
      strict: true,
      allowPositionals: false,
    }),
  );
  if (values.help) {
    out(WAL_DUMP_USAGE);
    return EXIT_OK;
  }
  const shard = intOption("shard", values.shard, null, 0, MAX_SHARDS - 1);
  const fromLsn = intOption("from-lsn", values["from-lsn"], 1, 1, Number.MAX_SAFE_INTEGER);
  const limit = intOption("limit", values.limit, DEFAULT_LIMIT, 1, MAX_LIMIT);
  const dirs = resolveDataDirs(values);
  const manifest = fs.existsSync(dirs.dataDir) ? readManifest(dirs.dataDir) : null;
  if (manifest !== null && shard >= manifest.shard_count) {
    throw new UsageError(
      `--shard ${shard}: the data directory has shards 0..${manifest.shard_count - 1}`,
    );
  }
  const walDir = path.join(dirs.walDir, `shard-${String(shard).padStart(3, "0")}`);
  if (!fs.existsSync(walDir)) {
    process.stderr.write(`stemedb wal dump: no WAL directory for shard ${shard} (${walDir})\n`);
    return EXIT_FAILED;
  }
  const dump = dumpWal(walDir, shard, fromLsn, limit);
  if (values.json) printJson(dump);
  else out(renderDump(dump, fromLsn));
  return dump.corruption === null ? EXIT_OK : EXIT_FAILED;
}
