// Checkpoints and online backups of one shard. A checkpoint waits for LMDB to commit and
// flush up to its applied LSN, then lets the WAL recycle the segments behind it; a backup
// copies an LMDB snapshot and then the live WAL segments, so checkpoints (which recycle
// segments) must pause while it runs. Both concern segment lifetime, not the write path,
// which is why they live here and not in ShardCore.
import fs from "node:fs";
import path from "node:path";
import type { ShardStore } from "../store/shard_store.js";
import type { Wal } from "../wal/wal.js";

export const DEFAULT_CHECKPOINT_EVERY_RECORDS = 100_000;
export const DEFAULT_CHECKPOINT_INTERVAL_MS = 5_000;
/** The timer checks at least this often whether a checkpoint is due. */
const MAX_CHECK_PERIOD_MS = 1000;

export interface CheckpointerOptions {
  shardId: number;
  /** Checkpoint once this many records were applied since the last one. */
  everyRecords?: number;
  intervalMs?: number;
}

export interface BackupResult {
  cutLsn: number;
  snapshotLsn: number;
  walFiles: string[];
}

export class Checkpointer {
  private readonly shardId: number;
  private readonly everyRecords: number;
  private readonly intervalMs: number;
  private lastCheckpointLsn: number;
  private lastCheckpointAtMs = Date.now();
  private running: Promise<number> | null = null;
  private timer: NodeJS.Timeout | null;
  /** While a backup copies WAL segments, checkpoints (which recycle segments) wait. */
  private backupRunning = false;

  constructor(
    private readonly store: ShardStore,
    private readonly wal: Wal,
    opts: CheckpointerOptions,
  ) {
    this.shardId = opts.shardId;
    this.lastCheckpointLsn = store.appliedLsn;
    this.everyRecords = opts.everyRecords ?? DEFAULT_CHECKPOINT_EVERY_RECORDS;
    this.intervalMs = opts.intervalMs ?? DEFAULT_CHECKPOINT_INTERVAL_MS;
    this.timer = setInterval(
      () => this.maybeCheckpoint(),
      Math.min(this.intervalMs, MAX_CHECK_PERIOD_MS),
    );
    this.timer.unref();
  }

  get checkpointLsn(): number {
    return this.lastCheckpointLsn;
  }

  /** Stops the periodic check (at close; explicit checkpoint() calls still work). */
  stopTimer(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  /** Resolves once the checkpoint running now, if any, has finished. */
  async idle(): Promise<void> {
    if (this.running !== null) await this.running;
  }

  private maybeCheckpoint(): void {
    if (this.running !== null || this.backupRunning) return;
    const applied = this.store.appliedLsn;
    const due =
      applied - this.lastCheckpointLsn >= this.everyRecords ||
      (applied > this.lastCheckpointLsn && Date.now() - this.lastCheckpointAtMs >= this.intervalMs);
    if (due) void this.checkpoint().catch(() => {});
  }

  /** Makes LMDB durable up to the applied LSN, then recycles WAL segments behind it. */
  checkpoint(): Promise<number> {
    if (this.running !== null) return this.running;
    const running = this.store
      .checkpoint()
      .then(async (lsn) => {
        this.lastCheckpointLsn = lsn;
        this.lastCheckpointAtMs = Date.now();
        await this.wal.releaseUpTo(lsn);
        return lsn;
      })
      .finally(() => {
        this.running = null;
      });
    this.running = running;
    return running;
  }

  /**
   * Online backup of this shard into walDir/dbDir (both empty): an LMDB snapshot, then every
   * live WAL segment. Checkpoints pause meanwhile so no segment is recycled under the copy.
   * `cutLsn`: every write acknowledged before the call is at or below it and in the copy.
   */
  async backup(walDir: string, dbDir: string): Promise<BackupResult> {
    if (this.backupRunning) throw new Error(`shard ${this.shardId}: a backup is already running`);
    this.backupRunning = true;
    try {
      if (this.running !== null) await this.running;
      const cutLsn = this.wal.durableLsn;
      fs.mkdirSync(dbDir, { recursive: true });
      fs.mkdirSync(walDir, { recursive: true });
      const snapshotLsn = await this.store.backupTo(dbDir);
      const walFiles: string[] = [];
      for (const segment of this.wal.segmentsInfo()) {
        const target = path.join(walDir, path.basename(segment.path));
        await fs.promises.copyFile(segment.path, target);
        walFiles.push(target);
      }
      return { cutLsn, snapshotLsn, walFiles };
    } finally {
      this.backupRunning = false;
    }
  }
}
