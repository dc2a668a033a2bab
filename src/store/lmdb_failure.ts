// What a failed lmdb-js commit looks like, and what caused it. lmdb-js rejects every write of
// a failed commit with one generic Error("Commit failed (see commitError for details)") and
// puts the cause (e.g. "No space left on device", code 28) in a second promise on it,
// `commitError`, rejected in the same turn. Nothing else observes that promise, and lmdb-js
// also leaves a rejected promise of its own unobserved (see absorbLmdbCommitFailure).
import fs from "node:fs";

const COMMIT_FAILED_MESSAGE = "Commit failed (see commitError for details)";
/** How long to wait for the cause; lmdb-js rejects it in the same turn as the commit. */
const CAUSE_WAIT_MS = 200;
/** errno ENOSPC and EDQUOT as lmdb-js reports them (numbers), and LMDB's MDB_MAP_FULL. */
const ENOSPC_ERRNO = 28;
const EDQUOT_ERRNO = 122;
const MDB_MAP_FULL = -30792;
const EIO_ERRNO = 5;
/** Free space under which an EIO from LMDB is taken for a full disk (a commit can be MBs). */
const LOW_SPACE_BYTES = 64 * 1024 * 1024;

export type LmdbCommitFailure = Error & { commitError?: unknown };

export function isLmdbCommitFailure(err: unknown): err is LmdbCommitFailure {
  return err instanceof Error && err.message === COMMIT_FAILED_MESSAGE;
}

/**
 * Whether an unhandled rejection is lmdb-js reporting a failed commit on a promise of its own
 * making (the commit of an event turn's writes, which nothing can observe); if so, its cause
 * is observed too. The same failure reaches the promises of the writes themselves, which
 * their callers handle.
 */
export function absorbLmdbCommitFailure(reason: unknown): boolean {
  if (!isLmdbCommitFailure(reason)) return false;
  observeCommitCause(reason);
  return true;
}

/** Marks a failed commit's cause promise handled (nothing else may await it). */
export function observeCommitCause(err: Error): void {
  const cause = (err as LmdbCommitFailure).commitError;
  if (cause instanceof Promise) cause.catch(() => {});
}

/**
 * The cause of a failed commit (bounded wait), or `err` itself when it is not lmdb-js's
 * generic commit failure or no cause arrives in time. Never rejects.
 */
export function lmdbFailureCause(err: Error): Promise<Error> {
  if (!isLmdbCommitFailure(err) || !(err.commitError instanceof Promise)) {
    return Promise.resolve(err);
  }
  const cause = err.commitError;
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(err), CAUSE_WAIT_MS);
    cause.then(
      () => {
        clearTimeout(timer);
        resolve(err);
      },
      (reason: unknown) => {
        clearTimeout(timer);
        resolve(reason instanceof Error ? reason : err);
      },
    );
  });
}

/**
 * Whether an LMDB error (a cause, see lmdbFailureCause) means the disk or the map is full.
 * LMDB reports a short page write as EIO, which is how a filling disk usually shows (seen on
 * a full tmpfs), so an EIO counts as "full" when the env's filesystem is nearly out of space.
 */
export function isNoSpace(err: Error, envDir: string): boolean {
  const code = (err as { code?: unknown }).code;
  if (code === "ENOSPC" || code === ENOSPC_ERRNO || code === "EDQUOT" || code === EDQUOT_ERRNO)
    return true;
  if (code === MDB_MAP_FULL) return true;
  if (/MDB_MAP_FULL|No space left/i.test(err.message)) return true;
  if (code !== EIO_ERRNO && code !== "EIO") return false;
  try {
    const stats = fs.statfsSync(envDir);
    return stats.bavail * stats.bsize < LOW_SPACE_BYTES;
  } catch {
    return false;
  }
}
