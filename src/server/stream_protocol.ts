// WS /v1/stream, the protocol of an open connection: parse and admit each message, keep the
// per-connection window (in flight + waiting), write through the shard pool, and batch the
// ack and error frames into one corked send per microtask. Connection admission (the
// upgrade), the route and shutdown live in stream.ts; see its header for the flow control.

import type { WebSocket } from "uWebSockets.js";
import type { WsMessageOutcome } from "../metrics/main_metrics.js";
import { WRITE_DUPLICATE } from "../shard/core_options.js";
import type { WriteResult } from "../shard/protocol.js";
import type { ServerContext } from "./context.js";
import { ApiError, internalError, unauthorized, unavailable, unprocessable } from "./errors.js";
import {
  checkNew,
  countsAgainstBreaker,
  countsAsBad,
  encodeNew,
  itemResultFields,
  watchForContests,
  writeStamp,
} from "./routes/assert.js";
import { parseStreamMessage, StreamMessageError } from "./schemas.js";
import { toApiError } from "./shard_errors.js";

export const STREAM_PATH = "/v1/stream";
/** Outgoing bytes buffered (client not reading acks) above which no new write starts. */
export const SEND_HIGH_WATER_BYTES = 64 * 1024;
/** uWS send() result for a frame dropped at maxBackpressure. */
const SEND_DROPPED = 2;

/** An accepted message: encoded, waiting for a window slot or being written. */
interface Accepted {
  seq: number;
  concept: string;
  id: string;
  shard: number;
  status: "active" | "quarantined";
  /** The write counts against the agent's circuit breaker (quarantined for gold or trust). */
  bad: boolean;
  record: Uint8Array;
  receivedMs: number;
}

/** WebSocket close code 1008: the key of the connection is no longer valid. */
const CLOSE_POLICY_VIOLATION = 1008;

/** Per-connection state; uWS copies the upgrade's user data onto the WebSocket object. */
export interface Conn {
  readonly agent: string;
  /** The key the connection authenticated with: each message checks it is still accepted. */
  readonly keyId: string;
  /** Which of the key's secrets it presented (MetaStore.presentedVersion). */
  readonly secretVersion: number;
  readonly requestId: string;
  ws: WebSocket<UserData> | null;
  /** Messages handed to the shard pool and not yet answered. */
  inflight: number;
  /** Accepted messages waiting to start, oldest at `waitingHead`. */
  waiting: Accepted[];
  waitingHead: number;
  /** Seqs of in-flight and waiting messages (a second message with one of them is refused). */
  unacked: Set<number>;
  /** Frames to send at the next flush (one corked write per flush). */
  outbox: string[];
  flushScheduled: boolean;
}

export interface UserData {
  conn: Conn;
}

/** A connection's state before uWS opens it (`ws` is set by the open handler). */
export function newConn(
  agent: string,
  keyId: string,
  secretVersion: number,
  requestId: string,
): Conn {
  return {
    agent,
    keyId,
    secretVersion,
    requestId,
    ws: null,
    inflight: 0,
    waiting: [],
    waitingHead: 0,
    unacked: new Set(),
    outbox: [],
    flushScheduled: false,
  };
}

function waitingCount(conn: Conn): number {
  return conn.waiting.length - conn.waitingHead;
}

export interface StreamProtocolOptions {
  server: ServerContext;
  /** The server's in-flight count (graceful drain): each message being written counts once. */
  inflight: { count: number };
  maxInflight: number;
}

export interface StreamProtocol {
  /** uWS message handler. */
  onMessage(ws: WebSocket<UserData>, message: ArrayBuffer, isBinary: boolean): void;
  /** Starts waiting messages while the window has room and the client reads its acks. */
  pump(conn: Conn): void;
  /** Sends the frames queued for `conn` now (in one corked write). */
  flush(conn: Conn): void;
  /** The connection closed: drop what waits; in-flight writes complete with nowhere to ack. */
  closed(conn: Conn): void;
  /** Stop taking messages: new ones and those waiting on `conns` get `shutting_down`. */
  stop(conns: Iterable<Conn>): void;
  readonly stopping: boolean;
}

export function createStreamProtocol(opts: StreamProtocolOptions): StreamProtocol {
  const { server, inflight, maxInflight } = opts;
  const { metrics, pool, logger } = server;
  let stopping = false;

  const schedule = (conn: Conn, frame: string) => {
    conn.outbox.push(frame);
    if (conn.flushScheduled) return;
    conn.flushScheduled = true;
    // Acks of one shard answer resolve in one microtask run: they leave in one write.
    queueMicrotask(() => flush(conn));
  };

  const flush = (conn: Conn) => {
    conn.flushScheduled = false;
    const frames = conn.outbox;
    conn.outbox = [];
    const ws = conn.ws;
    if (ws === null) return;
    let dropped = false;
    ws.cork(() => {
      for (const frame of frames) {
        if (ws.send(frame, false) === SEND_DROPPED) {
          dropped = true;
          break;
        }
      }
    });
    if (dropped) {
      // The client is not reading: an ack it will never see would look like a lost write.
      logger.warn({ request_id: conn.requestId }, "closing WS /v1/stream: acks not read");
      ws.close();
      return;
    }
    pump(conn);
  };

  const reject = (
    conn: Conn,
    seq: number | null,
    err: ApiError,
    outcome: WsMessageOutcome,
  ): void => {
    metrics.wsMessages[outcome].inc();
    metrics.errors(err.code).inc();
    const frame = `{"seq":${seq === null ? "null" : seq},"error":${JSON.stringify({ code: err.code, message: err.message })}}`;
    // The agent's own faults count against its circuit breaker, as on POST /v1/assert.
    if (outcome === "invalid") recordThen(conn, "bad", () => schedule(conn, frame));
    else schedule(conn, frame);
  };

  /**
   * Records an outcome for the agent's breaker; `then` runs once a state change it caused
   * (a trip) is on disk, as the router does for HTTP: a client told about a trip must not
   * find the breaker closed after a crash.
   */
  const recordThen = (conn: Conn, outcome: "ok" | "bad", then: () => void) => {
    const write = server.breakers.record(conn.agent, outcome, server.clock.nowMs());
    if (write === null) then();
    else
      write
        .then(then, then)
        .catch((err: unknown) =>
          logger.error({ err, request_id: conn.requestId, route: STREAM_PATH }, "stream ack"),
        );
  };

  const finished = (conn: Conn, seq: number) => {
    conn.inflight--;
    inflight.count--;
    conn.unacked.delete(seq);
  };

  const start = (conn: Conn, msg: Accepted) => {
    conn.inflight++;
    inflight.count++;
    pool
      .write(msg.shard, [msg.record])
      .then(
        (result: WriteResult) => {
          watchForContests(server, conn.agent, [msg], [msg]);
          const flag = result.flags[0] as number;
          const fields = itemResultFields(msg, result.lsns[0] as number, flag);
          metrics.wsMessages[(flag & WRITE_DUPLICATE) !== 0 ? "duplicate" : "written"].inc();
          recordThen(conn, countsAgainstBreaker(msg.bad, flag) ? "bad" : "ok", () => {
            finished(conn, msg.seq);
            metrics.wsAckDuration.observe((performance.now() - msg.receivedMs) / 1000);
            if (conn.ws !== null) schedule(conn, `{"seq":${msg.seq},${fields}}`);
          });
        },
        (err: unknown) => {
          finished(conn, msg.seq);
          server.breakers.release(conn.agent); // not the agent's fault: neither ok nor bad
          const apiError = toApiError(err);
          if (apiError === null || apiError.status >= 500) {
            logger.error({ err, request_id: conn.requestId, route: STREAM_PATH }, "stream write");
          }
          if (conn.ws !== null) reject(conn, msg.seq, apiError ?? internalError(), "failed");
        },
      )
      // A throw in the handlers above is a bug: log it rather than crash the process.
      .catch((err: unknown) =>
        logger.error({ err, request_id: conn.requestId, route: STREAM_PATH }, "stream ack"),
      );
  };

  const sendBlocked = (conn: Conn): boolean =>
    (conn.ws as WebSocket<UserData>).getBufferedAmount() > SEND_HIGH_WATER_BYTES;

  /** Starts waiting messages while the window has room and the client reads its acks. */
  const pump = (conn: Conn) => {
    if (conn.ws === null || stopping) return;
    while (waitingCount(conn) > 0 && conn.inflight < maxInflight && !sendBlocked(conn)) {
      const msg = conn.waiting[conn.waitingHead] as Accepted;
      conn.waiting[conn.waitingHead++] = undefined as unknown as Accepted;
      // Drop the consumed front once it outweighs the rest (amortized O(1) per message), so
      // a queue that never fully empties does not grow.
      if (conn.waitingHead >= 64 && conn.waitingHead >= waitingCount(conn)) {
        conn.waiting = conn.waiting.slice(conn.waitingHead);
        conn.waitingHead = 0;
      }
      start(conn, msg);
    }
  };

  /** Forgets messages admitted but never sent to a shard; each gives its probe slot back. */
  const dropWaiting = (conn: Conn) => {
    for (let i = conn.waitingHead; i < conn.waiting.length; i++) {
      const msg = conn.waiting[i] as Accepted;
      conn.unacked.delete(msg.seq);
      server.breakers.release(conn.agent);
    }
    conn.waiting = [];
    conn.waitingHead = 0;
  };

  const onMessage = (ws: WebSocket<UserData>, message: ArrayBuffer, isBinary: boolean) => {
    const conn = ws.getUserData().conn;
    const receivedMs = performance.now();
    const key = server.meta.credentialActive(conn.keyId, conn.secretVersion, Date.now());
    if (key === null || key.role === "reader") {
      // Revoked, expired, rotated out or demoted since the upgrade: nothing more is taken.
      const err = unauthorized(
        "The API key of this connection was revoked, has expired, was rotated past its grace period or no longer has the agent role; reconnect with a valid key.",
        "invalid_api_key",
      );
      reject(conn, null, err, "failed");
      // Nothing queued under the dead key starts; the frames go out, then the close (flush
      // may already have closed a connection that stopped reading: hence conn.ws?.).
      dropWaiting(conn);
      flush(conn);
      conn.ws?.end(CLOSE_POLICY_VIOLATION, "api key revoked or expired");
      return;
    }
    if (isBinary) {
      const err = unprocessable(
        "Send each message as a text frame of JSON; binary frames are not read.",
        "binary_frame",
      );
      reject(conn, null, err, "invalid");
      return;
    }
    let seq: number;
    let encoded: ReturnType<typeof encodeNew>;
    let bad = false;
    let concept = "";
    try {
      const parsed = parseStreamMessage(new Uint8Array(message));
      seq = parsed.seq;
      if (conn.unacked.has(seq)) {
        throw new StreamMessageError(
          seq,
          unprocessable(
            `Seq ${seq} is already in flight on this connection; wait for its ack.`,
            "seq_in_flight",
          ),
        );
      }
      if (stopping) {
        reject(conn, seq, shuttingDown(), "failed");
        return;
      }
      if (waitingCount(conn) >= maxInflight) {
        const err = new ApiError(
          429,
          "window_full",
          `This connection has ${conn.inflight} messages in flight and ${waitingCount(conn)} waiting (window ${maxInflight}); resend seq ${seq} after acks arrive.`,
        );
        reject(conn, seq, err, "window_full");
        return;
      }
      const admitted = server.breakers.admit(conn.agent, server.clock.nowMs());
      if (!admitted.ok) {
        const err = new ApiError(
          429,
          "circuit_open",
          `The circuit breaker of agent ${conn.agent} is open; resend seq ${seq} after ${admitted.retryAfterS} s.`,
        );
        reject(conn, seq, err, "failed");
        return;
      }
      concept = server.aliases.resolve(parsed.item.concept);
      const item = { ...parsed.item, concept };
      const quarantine = checkNew(server, conn.agent, item);
      bad = countsAsBad(quarantine);
      encoded = encodeNew(item, writeStamp(server, conn.agent), pool.shardCount, { quarantine });
    } catch (err) {
      if (err instanceof StreamMessageError) {
        reject(conn, err.seq, err.error, "invalid");
        return;
      }
      logger.error({ err, request_id: conn.requestId, route: STREAM_PATH }, "stream message");
      reject(conn, null, internalError(), "failed");
      return;
    }
    conn.unacked.add(seq);
    const msg: Accepted = { seq, concept, ...encoded, bad, receivedMs };
    if (conn.inflight < maxInflight && waitingCount(conn) === 0 && !sendBlocked(conn)) {
      start(conn, msg);
    } else {
      conn.waiting.push(msg);
    }
  };

  return {
    onMessage,
    pump,
    flush,
    closed(conn) {
      conn.ws = null;
      dropWaiting(conn);
      conn.outbox = [];
    },
    stop(conns) {
      stopping = true;
      for (const conn of conns) {
        for (let i = conn.waitingHead; i < conn.waiting.length; i++)
          reject(conn, (conn.waiting[i] as Accepted).seq, shuttingDown(), "failed");
        dropWaiting(conn);
      }
    },
    get stopping() {
      return stopping;
    },
  };
}

export function shuttingDown(): ApiError {
  return unavailable(
    1,
    "The server is shutting down; resend to it after it restarts.",
    "shutting_down",
  );
}
