// Request bodies under a byte bound. uWS hands out chunks that are only valid inside
// onData, so they are copied.
import type { HttpResponse } from "uWebSockets.js";
import { MAX_BODY_BYTES } from "../domain/limits.js";

/** Oversize bodies up to this size are read and dropped so the client sees the 413. */
export const MAX_DRAIN_BYTES = 4 * MAX_BODY_BYTES;

/**
 * Collects the body under MAX_BODY_BYTES. A body that grows past it without having declared
 * its length (chunked) is read on and dropped up to MAX_DRAIN_BYTES, and `tooLarge(false)`
 * is called at its end, so the client reads the 413 before anything is closed; past the
 * drain bound `tooLarge(true)` is called at once (the connection is then closed).
 */
export function readBody(
  res: HttpResponse,
  done: (body: Buffer) => void,
  tooLarge: (closeConnection: boolean) => void,
): void {
  let chunks: Buffer[] | null = [];
  let size = 0;
  let dropping = false;
  res.onData((chunk, isLast) => {
    size += chunk.byteLength;
    if (dropping) {
      if (size > MAX_DRAIN_BYTES) {
        dropping = false;
        tooLarge(true);
      } else if (isLast) {
        dropping = false;
        tooLarge(false);
      }
      return;
    }
    if (chunks === null) return;
    if (size > MAX_BODY_BYTES) {
      chunks = null;
      if (size > MAX_DRAIN_BYTES) tooLarge(true);
      else if (isLast) tooLarge(false);
      else dropping = true;
      return;
    }
    if (isLast && chunks.length === 0) {
      done(copyChunk(chunk));
      chunks = null;
      return;
    }
    chunks.push(copyChunk(chunk));
    if (isLast) {
      const body = Buffer.concat(chunks, size);
      chunks = null;
      done(body);
    }
  });
}

/**
 * Discards a request body up to MAX_DRAIN_BYTES, whether declared or chunked. Calls
 * `done(false)` at its end; `done(true)` at once when it will not be read, or when it grows
 * past the bound (the caller answers and closes the connection instead of reading on).
 */
export function drainBody(
  res: HttpResponse,
  read: boolean,
  done: (closeConnection: boolean) => void,
): void {
  if (!read) {
    done(true);
    return;
  }
  let size = 0;
  let settled = false;
  res.onData((chunk, isLast) => {
    if (settled) return;
    size += chunk.byteLength;
    if (size > MAX_DRAIN_BYTES || isLast) {
      settled = true;
      done(!isLast);
    }
  });
}

/** uWS reuses the chunk's memory after onData returns. */
function copyChunk(chunk: ArrayBuffer): Buffer {
  return Buffer.from(new Uint8Array(chunk));
}
