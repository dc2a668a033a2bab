// Maps failures reported by shard threads to the documented HTTP errors.
import { ApiError, badRequest, insufficientStorage, unavailable } from "./errors.js";
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
    case "io_error":
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
