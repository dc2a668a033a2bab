// Loads uWebSockets.js and tells whether its native binary loaded. The package silently
// falls back to a slow pure-JS server when the binary does not match this Node; that must
// be visible in /v1/health and refuse to start unless explicitly allowed.

import type * as UwsTypes from "uWebSockets.js";
import { createRequire } from "node:module";
import type { Socket } from "node:net";
import { errorBody } from "./errors.js";
import { newRequestId } from "./reply.js";
import { STREAM_PATH } from "./stream_protocol.js";

export interface HttpEngineInfo {
  engine: "native" | "fallback";
  detail: string;
}

const require = createRequire(import.meta.url);

export function loadUws(): { uws: typeof UwsTypes; info: HttpEngineInfo } {
  const warn = console.warn;
  const log = console.log;
  const captured: string[] = [];
  // The package prints its fallback notice with console.warn/log: capture it for the report.
  console.warn = (...args: unknown[]) => captured.push(args.map(String).join(" "));
  console.log = (...args: unknown[]) => captured.push(args.map(String).join(" "));
  let uws: typeof UwsTypes;
  try {
    uws = require("uWebSockets.js") as typeof UwsTypes;
  } finally {
    console.warn = warn;
    console.log = log;
  }
  const nativeLoaded = Object.keys(require.cache).some((p) => /uws_[a-z0-9_]+\.node$/.test(p));
  const nativeApp = Function.prototype.toString.call(uws.App).includes("[native code]");
  if (nativeLoaded && nativeApp) {
    return {
      uws,
      info: { engine: "native", detail: `uWS native binary for ABI ${process.versions.modules}` },
    };
  }
  patchFallback();
  return {
    uws,
    info: {
      engine: "fallback",
      detail: captured.join(" ").slice(0, 500) || "native uWS binary did not load",
    },
  };
}

interface FallbackRequest {
  url?: string;
  /** The query string the shim took off `url` (without "?"). */
  stemedbQuery?: string;
}

/**
 * Mends two faults of the pure-JS fallback (the pinned 20.30.0-unofficial.0 package). It routes
 * on the whole URL, query included, so no route with a query string matches, and its
 * getQuery() throws: route on the path and answer getQuery() from what was taken off, as the
 * native one does. And see handleHttpUpgrade below.
 */
function patchFallback(): void {
  const context = require("uWebSockets.js/dist/http-context.js") as {
    HttpContext: {
      prototype: {
        handleRequest(req: FallbackRequest, res: unknown): unknown;
        handleHttpUpgrade(req: FallbackRequest, socket: Socket, head: Buffer): unknown;
      };
    };
  };
  const request = require("uWebSockets.js/dist/http-request.js") as {
    HttpRequest: { prototype: { getQuery(this: { request: FallbackRequest }): string } };
  };
  const handleRequest = context.HttpContext.prototype.handleRequest;
  context.HttpContext.prototype.handleRequest = function (req, res) {
    const url = req.url ?? "";
    const mark = url.indexOf("?");
    if (mark !== -1) {
      req.stemedbQuery = url.slice(mark + 1);
      req.url = url.slice(0, mark);
    }
    return handleRequest.call(this, req, res);
  };
  request.HttpRequest.prototype.getQuery = function () {
    return this.request.stemedbQuery ?? "";
  };
  // Its WebSocket upgrade cannot serve WS /v1/stream (it throws on a route's upgrade handler,
  // outside any request) and leaves any other upgrade hanging. Answer every upgrade: 503
  // `websocket_unavailable` on the stream's path, 404 elsewhere, then close.
  context.HttpContext.prototype.handleHttpUpgrade = (req, socket) => {
    // Node took its own error listener off the socket before the upgrade event.
    socket.on("error", () => socket.destroy());
    const path = (req.url ?? "").split("?")[0];
    const requestId = newRequestId();
    const [status, body] =
      path === STREAM_PATH
        ? [
            "503 Service Unavailable",
            errorBody(
              "websocket_unavailable",
              "WS /v1/stream needs the native uWS engine; this server runs the JS fallback. Use POST /v1/assert.",
              requestId,
            ),
          ]
        : ["404 Not Found", errorBody("not_found", `No WebSocket route at ${path}.`, requestId)];
    socket.end(
      `HTTP/1.1 ${status}\r\ncontent-type: application/json\r\nx-request-id: ${requestId}\r\n` +
        `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
      () => socket.destroy(),
    );
    return null;
  };
}
