// Request bodies under a byte bound. uWS hands out chunks that are only valid inside
// onData, so they are copied.
import type { HttpResponse } from "uWebSockets.js";
import { MAX_BODY_BYTES } from "../domain/limits.js";

/** Collects the body under MAX_BODY_BYTES; chunks are only valid inside onData, so they are copied. */
export function readBody(
  res: HttpResponse,
  done: (body: Buffer) => void,
  tooLarge: () => void,
): void {
  let chunks: Buffer[] | null = [];
  let size = 0;
  res.onData((chunk, isLast) => {
    if (chunks === null) return;
    size += chunk.byteLength;
    if (size > MAX_BODY_BYTES) {
      chunks = null;
      tooLarge();
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

/** Discards a request body; calls done at its end, or at once when it will not be read. */
export function drainBody(res: HttpResponse, read: boolean, done: () => void): void {
  if (!read) {
    done();
    return;
  }
  res.onData((_chunk, isLast) => {
    if (isLast) done();
  });
}

/** uWS reuses the chunk's memory after onData returns. */
function copyChunk(chunk: ArrayBuffer): Buffer {
  return Buffer.from(new Uint8Array(chunk));
}
