// A small WS /v1/stream client for tests: connects with a key, records every frame, and
// streams messages with a bounded number unacknowledged.
import type { IncomingMessage } from "node:http";
import WebSocket from "ws";

export interface AckFrame {
  seq: number;
  id: string;
  status: string;
  shard: number;
  lsn: number;
  duplicate: boolean;
}
export interface ErrorFrame {
  seq: number | null;
  error: { code: string; message: string };
}
export type Frame = AckFrame | ErrorFrame;

export function isError(f: Frame): f is ErrorFrame {
  return "error" in f;
}

export interface RefusedUpgrade {
  status: number;
  headers: IncomingMessage["headers"];
  body: string;
}

export function streamUrl(baseUrl: string): string {
  return `${baseUrl.replace(/^http/, "ws")}/v1/stream`;
}

export class StreamClient {
  readonly frames: Frame[] = [];
  /** Messages sent with send(). */
  sent = 0;
  closed: { code: number; reason: string } | null = null;
  private listeners: Array<(f: Frame) => void> = [];
  private closeListeners: Array<() => void> = [];

  constructor(
    readonly ws: WebSocket,
    readonly upgradeHeaders: IncomingMessage["headers"],
  ) {
    ws.on("message", (data: Buffer) => {
      const frame = JSON.parse(data.toString("utf8")) as Frame;
      this.frames.push(frame);
      for (const l of this.listeners) l(frame);
    });
    ws.on("close", (code: number, reason: Buffer) => {
      this.closed = { code, reason: reason.toString() };
      for (const l of this.closeListeners) l();
    });
    ws.on("error", () => {}); // reported through "close"
  }

  /** Connects; rejects with a RefusedUpgrade when the server answers without upgrading. */
  static connect(
    baseUrl: string,
    key: string | null,
    headers: Record<string, string> = {},
  ): Promise<StreamClient> {
    const all = { ...headers, ...(key === null ? {} : { authorization: `Bearer ${key}` }) };
    const ws = new WebSocket(streamUrl(baseUrl), { headers: all });
    return new Promise((resolve, reject) => {
      let upgradeHeaders: IncomingMessage["headers"] = {};
      ws.once("upgrade", (res: IncomingMessage) => {
        upgradeHeaders = res.headers;
      });
      ws.once("open", () => resolve(new StreamClient(ws, upgradeHeaders)));
      ws.once("unexpected-response", (_req, res: IncomingMessage) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          reject({ status: res.statusCode ?? 0, headers: res.headers, body: chunks.join("") });
          ws.terminate();
        });
      });
      ws.once("error", reject);
    });
  }

  onFrame(listener: (f: Frame) => void): void {
    this.listeners.push(listener);
  }

  send(seq: number, assertion: unknown): void {
    this.sent++;
    this.ws.send(JSON.stringify({ seq, assertion }));
  }

  sendRaw(data: string | Buffer, binary = false): void {
    this.ws.send(data, { binary });
  }

  /** Resolves once `count` frames have arrived in total (rejects if the socket closes first). */
  waitFrames(count: number, timeoutMs = 30_000): Promise<Frame[]> {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (this.frames.length >= count) {
          clearTimeout(timer);
          resolve(this.frames);
          return true;
        }
        return false;
      };
      const timer = setTimeout(
        () => reject(new Error(`${this.frames.length}/${count} frames after ${timeoutMs} ms`)),
        timeoutMs,
      );
      if (check()) return;
      this.listeners.push(() => check());
      this.closeListeners.push(() => {
        if (!check()) {
          clearTimeout(timer);
          reject(new Error(`closed after ${this.frames.length}/${count} frames`));
        }
      });
    });
  }

  /**
   * Sends `messages` keeping at most `window` unanswered; resolves with the answer per seq
   * when all are answered or the connection closes (then unanswered seqs are absent).
   */
  streamWindowed(
    messages: ReadonlyArray<{ seq: number; assertion: unknown }>,
    window: number,
  ): Promise<Map<number, Frame>> {
    const answers = new Map<number, Frame>();
    let next = 0;
    let outstanding = 0;
    return new Promise((resolve) => {
      const pump = () => {
        while (outstanding < window && next < messages.length && this.closed === null) {
          const m = messages[next++] as { seq: number; assertion: unknown };
          outstanding++;
          this.send(m.seq, m.assertion);
        }
        if (outstanding === 0 && next >= messages.length) resolve(answers);
      };
      this.listeners.push((f) => {
        if (f.seq === null || answers.has(f.seq)) return;
        answers.set(f.seq, f);
        outstanding--;
        pump();
      });
      this.closeListeners.push(() => resolve(answers));
      pump();
    });
  }

  close(): Promise<void> {
    if (this.closed !== null) return Promise.resolve();
    return new Promise((resolve) => {
      this.closeListeners.push(resolve);
      this.ws.close(1000);
    });
  }
}
