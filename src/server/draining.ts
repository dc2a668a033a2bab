// Requests that arrive while the server drains for shutdown (on keep-alive connections opened
// before the listening socket closed): 503 `shutting_down`, and the connection is closed.
import type { HttpRequest, HttpResponse } from "uWebSockets.js";
import { drainBody, MAX_DRAIN_BYTES } from "./body_reader.js";
import { unavailable } from "./errors.js";
import { errorReply, send } from "./reply.js";
import type { RouterDeps } from "./router.js";

/** Retry-After of the 503 answered while draining: a restart takes about this long. */
const DRAINING_RETRY_AFTER_S = 2;

/**
 * 503 `shutting_down`, then the connection is closed. A declared body (within the drain bound)
 * is read first, so the client reads the answer instead of a reset.
 */
export function refuseWhileDraining(
  res: HttpResponse,
  req: HttpRequest,
  requestId: string,
  label: string,
  deps: RouterDeps,
  started: number,
): void {
  const reply = errorReply(
    unavailable(
      DRAINING_RETRY_AFTER_S,
      "The server is shutting down; retry on a new connection.",
      "shutting_down",
    ),
    requestId,
  );
  deps.metrics.recordHttp(
    req.getMethod().toUpperCase(),
    label,
    reply.status,
    (performance.now() - started) / 1000,
  );
  deps.metrics.errors("shutting_down").inc();
  const head = req.getMethod() === "head";
  const declaredBytes = Number(req.getHeader("content-length") || "0");
  if (
    !(Number.isSafeInteger(declaredBytes) && declaredBytes > 0 && declaredBytes <= MAX_DRAIN_BYTES)
  ) {
    res.cork(() => send(res, requestId, reply, true, head));
    return;
  }
  // Counted in flight while its body is read, so the shutdown waits to answer it.
  deps.inflight.count++;
  let settled = false;
  const settle = (answer: boolean) => {
    if (settled) return;
    settled = true;
    deps.inflight.count--;
    if (answer) res.cork(() => send(res, requestId, reply, true, head));
  };
  res.onAborted(() => settle(false));
  drainBody(res, true, () => settle(true));
}
