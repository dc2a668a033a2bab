// One keep-alive TCP connection, one request at a time, each answer read to its
// Content-Length: the latency of every request at concurrency 1. No HTTP library, so its own
// cost per request is a few µs; bench:http measures the zero-hop floor with it too, and its
// figures pass the check wrk's c=1 figures fail here (mean latency × requests ≤ run time).
import net from "node:net";

export interface SequentialRun {
  host: string;
  port: number;
  /** The bytes of request i (a complete HTTP/1.1 request with keep-alive). */
  request: (i: number) => Buffer;
  warmup: number;
  count: number;
}

export interface SequentialResult {
  /** Milliseconds per measured request, in order. */
  latenciesMs: Float64Array;
  durationMs: number;
  non2xx: number;
}

const HEADER_END = Buffer.from("\r\n\r\n");
const MAX_RESPONSE_BYTES = 1 << 20;

export function runSequential(run: SequentialRun): Promise<SequentialResult> {
  const total = run.warmup + run.count;
  const latenciesMs = new Float64Array(run.count);
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: run.host, port: run.port, noDelay: true });
    let pending: Buffer = Buffer.alloc(0);
    let i = 0;
    let sentAt = 0;
    let startedAt = 0;
    let non2xx = 0;
    const send = () => {
      if (i === run.warmup) startedAt = performance.now();
      sentAt = performance.now();
      socket.write(run.request(i));
    };
    socket.on("connect", send);
    socket.on("error", reject);
    socket.on("data", (chunk: Buffer) => {
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
      if (pending.length > MAX_RESPONSE_BYTES) {
        socket.destroy();
        reject(new Error("response over 1 MiB"));
        return;
      }
      const headerEnd = pending.indexOf(HEADER_END);
      if (headerEnd < 0) return;
      const head = pending.subarray(0, headerEnd).toString("latin1");
      const length = /\r\ncontent-length: *(\d+)/i.exec(head);
      if (length === null) {
        socket.destroy();
        reject(new Error(`response without Content-Length: ${head.slice(0, 200)}`));
        return;
      }
      const end = headerEnd + HEADER_END.length + Number(length[1]);
      if (pending.length < end) return;
      const doneAt = performance.now();
      if (pending.length > end) {
        socket.destroy();
        reject(new Error("bytes after a complete response at concurrency 1"));
        return;
      }
      pending = Buffer.alloc(0);
      if (!/^HTTP\/1\.1 2\d\d/.test(head)) non2xx++;
      if (i >= run.warmup) latenciesMs[i - run.warmup] = doneAt - sentAt;
      i++;
      if (i < total) {
        send();
        return;
      }
      socket.end();
      resolve({ latenciesMs, durationMs: performance.now() - startedAt, non2xx });
    });
  });
}
