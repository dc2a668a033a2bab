// A raw HTTP/1.1 client over `net` sockets, for requests that fetch refuses to send
// (duplicate or malformed headers, wrong content-length, invalid bytes in the request line,
// bodies split with delays, connections cut mid-body) and a tolerant response parser.
import net from "node:net";

/** Largest response we buffer, in bytes: the server's answers are small, metrics the largest. */
const MAX_RESPONSE_BYTES = 8 * 1024 * 1024;
/** Most responses parsed from one connection (pipelining cases send at most a handful). */
const MAX_RESPONSES = 16;

export interface RawResponse {
  status: number;
  /** Header names lowercased; repeated headers keep every value. */
  headers: Map<string, string[]>;
  body: Buffer;
}

export type Finish =
  /** Wait for `expectResponses` responses or the server closing; a timeout is a hang. */
  | { kind: "wait"; expectResponses: number }
  /** Wait up to lingerMs for responses, then close; responses are optional. */
  | { kind: "linger"; lingerMs: number }
  /** Close (FIN+destroy) or reset (RST) right after the last chunk. */
  | { kind: "abort"; reset: boolean };

export interface RawRequest {
  port: number;
  /** Written in order; between chunks the client waits delayMs. */
  chunks: readonly Buffer[];
  delayMs: number;
  finish: Finish;
  timeoutMs: number;
  /** HEAD responses carry no body whatever their content-length says. */
  head?: boolean;
}

export interface RawOutcome {
  responses: RawResponse[];
  /** The server ended or reset the connection before we were done. */
  closedByServer: boolean;
  timedOut: boolean;
  /** Bytes received that do not parse as an HTTP/1.1 response (bounded excerpt). */
  garbage: string | null;
  elapsedMs: number;
}

function header(res: RawResponse, name: string): string | undefined {
  return res.headers.get(name)?.[0];
}

export { header as responseHeader };

type Parsed = { response: RawResponse; used: number } | { incomplete: true } | { error: string };

/** Parses one response at the start of buf. `eof` lets a close-delimited body end. */
export function parseResponse(buf: Buffer, head: boolean, eof: boolean): Parsed {
  const end = buf.indexOf("\r\n\r\n");
  if (end === -1) {
    if (buf.length > 64 * 1024) return { error: "response head over 64 KiB" };
    if (buf.length >= 5 && !buf.subarray(0, 5).equals(Buffer.from("HTTP/")))
      return { error: "not an HTTP response" };
    return { incomplete: true };
  }
  const lines = buf.subarray(0, end).toString("latin1").split("\r\n");
  const m = /^HTTP\/1\.[01] (\d{3})(?: .*)?$/.exec(lines[0] ?? "");
  if (m === null) return { error: `bad status line ${JSON.stringify(lines[0]?.slice(0, 80))}` };
  const headers = new Map<string, string[]>();
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(":");
    if (colon <= 0) return { error: `bad header line ${JSON.stringify(line.slice(0, 80))}` };
    const name = line.slice(0, colon).trim().toLowerCase();
    const list = headers.get(name) ?? [];
    list.push(line.slice(colon + 1).trim());
    headers.set(name, list);
  }
  const status = Number(m[1]);
  const start = end + 4;
  const noBody = head || status === 204 || status === 304 || (status >= 100 && status < 200);
  if (noBody) return { response: { status, headers, body: Buffer.alloc(0) }, used: start };
  const te = headers.get("transfer-encoding")?.join(",").toLowerCase() ?? "";
  if (te.includes("chunked")) return parseChunked(buf, start, status, headers);
  const cl = headers.get("content-length");
  if (cl !== undefined) {
    if (cl.length > 1 && new Set(cl).size > 1) return { error: "conflicting content-length" };
    const n = Number(cl[0]);
    if (!Number.isSafeInteger(n) || n < 0) return { error: `bad content-length ${cl[0]}` };
    if (buf.length - start < n) return { incomplete: true };
    return {
      response: { status, headers, body: Buffer.from(buf.subarray(start, start + n)) },
      used: start + n,
    };
  }
  // Close-delimited body.
  if (!eof) return { incomplete: true };
  return {
    response: { status, headers, body: Buffer.from(buf.subarray(start)) },
    used: buf.length,
  };
}

function parseChunked(
  buf: Buffer,
  start: number,
  status: number,
  headers: Map<string, string[]>,
): Parsed {
  const parts: Buffer[] = [];
  let at = start;
  for (;;) {
    const lineEnd = buf.indexOf("\r\n", at);
    if (lineEnd === -1) return { incomplete: true };
    const size = Number.parseInt(buf.subarray(at, lineEnd).toString("latin1"), 16);
    if (!Number.isSafeInteger(size) || size < 0) return { error: "bad chunk size" };
    at = lineEnd + 2;
    if (size === 0) {
      const trailerEnd = buf.indexOf("\r\n", at);
      if (trailerEnd === -1) return { incomplete: true };
      return { response: { status, headers, body: Buffer.concat(parts) }, used: trailerEnd + 2 };
    }
    if (buf.length < at + size + 2) return { incomplete: true };
    parts.push(Buffer.from(buf.subarray(at, at + size)));
    at += size + 2;
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Sends a raw request and collects what comes back. Never rejects. */
export function sendRaw(req: RawRequest): Promise<RawOutcome> {
  const started = performance.now();
  return new Promise((resolve) => {
    const socket = net.connect(req.port, "127.0.0.1");
    socket.setNoDelay(true);
    let received: Buffer = Buffer.alloc(0);
    const responses: RawResponse[] = [];
    let garbage: string | null = null;
    let settled = false;
    let closedByServer = false;
    let timedOut = false;
    let doneWriting = false;
    const lingerTimers: NodeJS.Timeout[] = [];

    const settle = () => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      for (const t of lingerTimers) clearTimeout(t);
      socket.destroy();
      resolve({
        responses,
        closedByServer,
        timedOut,
        garbage,
        elapsedMs: performance.now() - started,
      });
    };
    const timer = setTimeout(() => {
      timedOut = true;
      settle();
    }, req.timeoutMs);

    const drainParsed = (eof: boolean) => {
      while (received.length > 0 && garbage === null && responses.length < MAX_RESPONSES) {
        const parsed = parseResponse(received, req.head === true, eof);
        if ("incomplete" in parsed) {
          if (eof) garbage = `truncated response: ${received.subarray(0, 200).toString("latin1")}`;
          return;
        }
        if ("error" in parsed) {
          garbage = `${parsed.error}: ${received.subarray(0, 200).toString("latin1")}`;
          return;
        }
        // Interim 1xx answers (100 Continue) precede the real one: skip them.
        if (parsed.response.status >= 200) responses.push(parsed.response);
        received = received.subarray(parsed.used);
      }
    };
    const enough = () =>
      garbage !== null ||
      (req.finish.kind === "wait" && doneWriting && responses.length >= req.finish.expectResponses);

    socket.on("data", (chunk: Buffer) => {
      if (received.length + chunk.length > MAX_RESPONSE_BYTES) {
        garbage = `response over ${MAX_RESPONSE_BYTES} bytes`;
        settle();
        return;
      }
      received = received.length === 0 ? chunk : Buffer.concat([received, chunk]);
      drainParsed(false);
      if (enough()) settle();
    });
    const onServerGone = () => {
      if (settled) return;
      closedByServer = true;
      drainParsed(true);
      settle();
    };
    socket.on("end", onServerGone);
    socket.on("close", onServerGone);
    socket.on("error", onServerGone); // ECONNRESET / EPIPE after the server gave up on us

    socket.once("connect", async () => {
      for (let i = 0; i < req.chunks.length; i++) {
        if (settled || socket.destroyed) return;
        if (i > 0 && req.delayMs > 0) await sleep(req.delayMs);
        if (settled || socket.destroyed) return;
        const ok = socket.write(req.chunks[i] as Buffer);
        if (!ok) {
          await new Promise<void>((r) => {
            const done = () => {
              socket.off("drain", done);
              socket.off("close", done);
              r();
            };
            socket.on("drain", done);
            socket.on("close", done);
          });
        }
      }
      doneWriting = true;
      if (settled) return;
      const finish = req.finish;
      if (finish.kind === "abort") {
        if (finish.reset) socket.resetAndDestroy();
        settle();
        return;
      }
      if (finish.kind === "linger") {
        lingerTimers.push(setTimeout(settle, finish.lingerMs));
        return;
      }
      if (enough()) settle();
    });
  });
}
