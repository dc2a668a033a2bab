/** The log cannot be opened as it is: a bad record is followed by valid ones, or LSNs jump. */
export class WalCorruptionError extends Error {
  readonly code = "wal_corruption";
  constructor(
    readonly shardId: number,
    readonly segmentPath: string,
    readonly offsetBytes: number,
    detail: string,
  ) {
    super(
      `WAL corruption in shard ${shardId}, segment ${segmentPath}, byte offset ${offsetBytes}: ${detail}. ` +
        "Refusing to open; restore from backup, or start with the WAL repair option to truncate " +
        "the log at this offset (records after it are dropped and counted).",
    );
    this.name = "WalCorruptionError";
  }
}

/**
 * Why appends are refused. "store_full" / "store_error": a shard's LMDB commit failed (for
 * lack of space / otherwise); the shard refuses writes until a restart replays the WAL.
 */
export type WalUnavailableReason =
  | "disk_full"
  | "io_error"
  | "closed"
  | "backpressure"
  | "store_full"
  | "store_error";

/** Appends are refused (never silently retried): the caller maps this to 507/503. */
export class WalUnavailableError extends Error {
  constructor(
    readonly reason: WalUnavailableReason,
    message: string,
    readonly errnoCode: string | null = null,
  ) {
    super(message);
    this.name = "WalUnavailableError";
  }
}
