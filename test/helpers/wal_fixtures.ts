import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Wal, type WalOptions } from "../../src/wal/wal.js";

export const SMALL_SEGMENT_BYTES = 1024 * 1024;

export function tempDir(prefix = "stemedb-wal-"): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

export interface Replayed {
  kind: number;
  lsn: number;
  payload: string;
}

/** Opens a WAL and collects every replayed record. */
export async function openCollecting(
  dir: string,
  extra: Partial<WalOptions> = {},
): Promise<{ wal: Wal; replayed: Replayed[] }> {
  const replayed: Replayed[] = [];
  const wal = await Wal.open({
    dir,
    shardId: 0,
    segmentSizeBytes: SMALL_SEGMENT_BYTES,
    checkpointLsn: 0,
    onRecord: (kind, lsn, payload) =>
      replayed.push({ kind, lsn, payload: payload.toString("utf8") }),
    ...extra,
  });
  return { wal, replayed };
}

export function payloadOf(text: string): Uint8Array {
  return Buffer.from(text, "utf8");
}
