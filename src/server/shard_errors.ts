// Maps storage failures (reported by shard threads, or a meta env commit) to the documented
// HTTP errors.
import { isNoSpace } from "../store/lmdb_failure.js";
import { ApiError, badRequest, insufficientStorage, internalError, unavailable } from "./errors.js";
import { ShardRequestError } from "./shard_pool.js";

/** The ApiError for a known failure, or null for a bug (a 500 the caller logs). */
export function toApiError(err: unknown): ApiError | null {
  if (err instanceof ApiError) return err;
  if (!(err instanceof ShardRequestError)) return null;
  switch (err.reason) {
    case "domain":
      return new ApiError(err.status ?? 409, err.code ?? "conflict", err.message);
    case "backpressure":
      return unavailable(
        1,
        `Shard ${err.shardId} is at its queue bound; retry shortly.`,
        "overloaded",
      );
    case "disk_full":
      return insufficientStorage(
        `Shard ${err.shardId} cannot write: the WAL disk is full. Reads keep working.`,
        "disk_full",
      );
    case "store_full":
      return insufficientStorage(
        `Shard ${err.shardId} cannot write: its LMDB disk is full. Reads by id keep working; range reads are refused until the server restarts with space freed.`,
        "disk_full",
      );
    case "io_error":
    case "store_error":
    case "closed":
    case "exited":
    case "timeout":
      return unavailable(
        2,
        `Shard ${err.shardId} cannot take writes right now (${err.reason}).`,
        "shard_unavailable",
      );
    case "invalid_cursor":
      return badRequest(
        "The cursor is not one this server issued for this query.",
        "invalid_cursor",
      );
    default:
      return null;
  }
}

/** A failed commit of the meta env (in `metaDir`), by its cause: 507 when out of space, else a 500. */
export function metaCommitError(cause: Error, metaDir: string): ApiError {
  if (!isNoSpace(cause, metaDir)) return internalError();
  // A change and its audit entry commit separately: the change itself may have been saved.
  return insufficientStorage(
    "The metadata store (keys, agents, audit) is out of disk space; a write of this request failed, and the change may be partly applied: check it before retrying. Reads and assertions keep working.",
    "disk_full",
  );
}
