// WS /v1/stream: streaming ingest for agent fleets (docs/api.md, "WS /v1/stream").
//
// Each text frame is `{"seq": n, "assertion": {…}}`, validated and encoded exactly like a
// single POST /v1/assert, written through the same per-shard coalescing pool, and answered
// with an ack frame once durable, or an error frame; either carries the client's seq. A bad
// message never closes the connection. Ids are content-derived, so a resend after a
// reconnect is acked as a duplicate and never written twice.
//
// Flow control. uWebSockets.js 20.30 has no WebSocket pause()/resume(): the server cannot
// stop reading a connection, so the window is part of the protocol. A connection has at most
// `maxInflight` messages being written and at most `maxInflight` more waiting for a slot;
// a message beyond that gets an error frame `window_full` (not written; resend it after acks
// arrive). A client that keeps at most `maxInflight` messages unacknowledged (announced in
// the 101 answer's `x-stemedb-max-inflight`) never sees it. While the client does not read
// its acks (more than SEND_HIGH_WATER_BYTES buffered), accepted messages wait instead of
// starting; past MAX_SEND_BUFFER_BYTES the connection is closed.
//
// This file admits connections (auth and the connection bound at the upgrade), registers the
// route and shuts connections down; the per-message protocol is in stream_protocol.ts.

import type { HttpRequest, HttpResponse, TemplatedApp, us_socket_context_t } from "uWebSockets.js";
import { MAX_WS_MESSAGE_BYTES } from "../domain/limits.js";
import type { ServerContext } from "./context.js";
import { ApiError, internalError, unauthorized, unavailable } from "./errors.js";
import { errorReply, requestIdOf, send } from "./reply.js";
import { authenticate, type RouterDeps } from "./router.js";
import { toApiError } from "./shard_errors.js";
import {
  type Conn,
  createStreamProtocol,
  newConn,
  STREAM_PATH,
  shuttingDown,
  type UserData,
} from "./stream_protocol.js";

export { SEND_HIGH_WATER_BYTES, STREAM_PATH } from "./stream_protocol.js";
/** Outgoing bytes buffered at which uWS drops frames; a connection that gets there is closed. */
export const MAX_SEND_BUFFER_BYTES = 1024 * 1024;
/** Seconds without traffic before uWS closes a connection (it pings before that). */
const IDLE_TIMEOUT_S = 120;
/** WebSocket close codes (RFC 6455 §7.4.1). */
const CLOSE_GOING_AWAY = 1001;

export interface StreamOptions {
  server: ServerContext;
  verifyKey: RouterDeps["verifyKey"];
  /** The server's in-flight count (graceful drain): each message being written counts once. */
  inflight: { count: number };
  maxInflight: number;
  maxConnections: number;
}

export interface Stream {
  /** Stop taking messages: new and waiting ones get `shutting_down` error frames. */
  stop(): void;
  /** Close every connection (after in-flight writes are acked). */
  closeAll(): void;
  /** Open connections. */
  readonly connections: number;
}

/** Registers WS /v1/stream (and the 426 answer for a plain request to it) on `app`. */
export function registerStream(app: TemplatedApp, opts: StreamOptions): Stream {
  const { server, inflight, maxInflight, maxConnections } = opts;
  const { metrics, logger } = server;
  const open = new Set<Conn>();
  const protocol = createStreamProtocol({ server, inflight, maxInflight });

  const upgrade = (res: HttpResponse, req: HttpRequest, context: us_socket_context_t) => {
    const started = performance.now();
    const requestId = requestIdOf(req);
    let status = 101;
    try {
      if (protocol.stopping) throw shuttingDown();
      const authorization = req.getHeader("authorization");
      const principal = authenticate(authorization, "agent", {
        metrics,
        verifyKey: opts.verifyKey,
      });
      const secretVersion = opts.server.meta.presentedVersion(
        authorization.slice(7).trim(),
        Date.now(),
      );
      if (secretVersion === null) {
        // Its grace period ended between the two checks.
        metrics.authFailures("invalid").inc();
        throw unauthorized("The API key is unknown, revoked or expired.", "invalid_api_key");
      }
      if (open.size >= maxConnections) {
        throw unavailable(
          1,
          `${maxConnections} WebSocket connections are open (STEMEDB_WS_MAX_CONNECTIONS); retry shortly.`,
          "too_many_connections",
        );
      }
      const conn = newConn(principal.principal, principal.keyId, secretVersion, requestId);
      // Custom headers on a 101 need the status line written first (uWS docs).
      res.writeStatus("101 Switching Protocols");
      res.writeHeader("x-request-id", requestId);
      res.writeHeader("x-stemedb-max-inflight", String(maxInflight));
      // No subprotocol is spoken; uWS negotiates no extension (compression is disabled).
      res.upgrade<UserData>(
        { conn },
        req.getHeader("sec-websocket-key"),
        "",
        req.getHeader("sec-websocket-extensions"),
        context,
      );
    } catch (err) {
      const apiError = err instanceof ApiError ? err : (toApiError(err) ?? internalError());
      if (!(err instanceof ApiError)) {
        logger.error({ err, request_id: requestId, route: STREAM_PATH }, "stream upgrade");
      }
      status = apiError.status;
      metrics.errors(apiError.code).inc();
      send(res, requestId, errorReply(apiError, requestId));
    }
    metrics.recordHttp("GET", STREAM_PATH, status, (performance.now() - started) / 1000);
  };

  app.ws<UserData>(STREAM_PATH, {
    maxPayloadLength: MAX_WS_MESSAGE_BYTES,
    maxBackpressure: MAX_SEND_BUFFER_BYTES,
    closeOnBackpressureLimit: 0,
    idleTimeout: IDLE_TIMEOUT_S,
    sendPingsAutomatically: true,
    upgrade,
    open: (ws) => {
      const conn = ws.getUserData().conn;
      conn.ws = ws;
      open.add(conn);
      metrics.wsConnections.set(open.size);
    },
    message: protocol.onMessage,
    drain: (ws) => protocol.pump(ws.getUserData().conn),
    close: (ws) => {
      const conn = ws.getUserData().conn;
      // In-flight writes still complete (and stay durable); their acks have nowhere to go.
      protocol.closed(conn);
      open.delete(conn);
      metrics.wsConnections.set(open.size);
    },
  });
  // Same path without an upgrade: say how to use it, in the error format.
  app.any(STREAM_PATH, (res, req) => {
    const started = performance.now();
    const requestId = requestIdOf(req);
    const err = new ApiError(
      426,
      "upgrade_required",
      `${STREAM_PATH} is a WebSocket endpoint: send GET with Upgrade: websocket.`,
      { upgrade: "websocket" },
    );
    metrics.errors(err.code).inc();
    send(res, requestId, errorReply(err, requestId), false, req.getMethod() === "head");
    metrics.recordHttp(req.getMethod(), STREAM_PATH, 426, (performance.now() - started) / 1000);
  });

  return {
    stop() {
      protocol.stop(open);
    },
    closeAll() {
      for (const conn of [...open]) {
        // Frames still in the outbox (last acks) go first; end() then sends the close frame.
        if (conn.outbox.length > 0) protocol.flush(conn);
        conn.ws?.end(CLOSE_GOING_AWAY, "server shutting down");
      }
    },
    get connections() {
      return open.size;
    },
  };
}
