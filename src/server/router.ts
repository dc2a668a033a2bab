// The one place every HTTP request passes: request id, auth and role, body bound and media
// type, error mapping to the documented error body, and the HTTP metrics (recorded here once
// per request with the route pattern, never by hand in a handler).

import type { HttpRequest, HttpResponse, TemplatedApp } from "uWebSockets.js";
import type { TSchema } from "@sinclair/typebox";
import type { ApiKeyInfo, Role } from "../domain/api_keys.js";
import { MAX_BODY_BYTES } from "../domain/limits.js";
import type { MainMetrics } from "../metrics/main_metrics.js";
import type { StageTrace } from "../metrics/stage_trace.js";
import { isLmdbCommitFailure, lmdbFailureCause } from "../store/lmdb_failure.js";
import { drainBody, MAX_DRAIN_BYTES, readBody } from "./body_reader.js";
import { refuseWhileDraining } from "./draining.js";
import {
  ApiError,
  badRequest,
  forbidden,
  internalError,
  payloadTooLarge,
  tooManyRequests,
  unauthorized,
  unsupportedMediaType,
} from "./errors.js";
import { errorCodeOf, errorReply, JSON_TYPE, type Reply, requestIdOf, send } from "./reply.js";
import { metaCommitError, toApiError } from "./shard_errors.js";

export type { Reply } from "./reply.js";

export type HttpMethod = "get" | "post" | "patch" | "del";

export interface RouteContext {
  readonly requestId: string;
  readonly params: readonly string[];
  readonly query: URLSearchParams;
  readonly principal: ApiKeyInfo | null;
  readonly body: Buffer | null;
  readonly headers: { readonly accept: string };
  /**
   * On a `breaker: true` route: counts `count` items of this request as bad for the agent's
   * circuit breaker (e.g. quarantined assertions), on top of the outcome the router records
   * from the status. A no-op on other routes.
   */
  reportBad(count: number): void;
  /** The request's row in the stage trace (`traced` routes with the trace on), else 0. */
  readonly traceSeq: number;
}

export interface Route {
  method: HttpMethod;
  pattern: string;
  /** Least role allowed; null = no key needed. admin > agent > reader. */
  role: Role | null;
  /** Whether the route reads a JSON body. */
  jsonBody: boolean;
  /**
   * An agent write route guarded by the agent's circuit breaker: refused with 429 before the
   * body is read while the breaker is open; its outcome is recorded from the status (2xx ok;
   * 400, 409, 413, 415, 422 bad; anything else neutral).
   */
  breaker?: boolean;
  /** A write route whose stages STEMEDB_STAGE_TRACE records (src/metrics/stage_trace.ts). */
  traced?: boolean;
  handler: (ctx: RouteContext) => Reply | Promise<Reply>;
  /** For the OpenAPI document: one line, and the body's schema (the same one that validates). */
  summary?: string;
  bodySchema?: TSchema;
  /** For the OpenAPI document: the query parameters the handler reads. */
  queryParams?: readonly QueryParamDoc[];
}

export interface QueryParamDoc {
  name: string;
  required: boolean;
  description: string;
  /** JSON Schema of the value, e.g. { type: "integer", minimum: 1, maximum: 50 }. */
  schema: Record<string, unknown>;
  /** `name=` is accepted (it means the default, or the first page) though the schema says no. */
  allowEmptyValue?: boolean;
}

/** What the router needs of the circuit breakers (src/safety/circuit_breaker.ts). */
export interface RouteBreakers {
  admit(agent: string, nowMs: number): { ok: true } | { ok: false; retryAfterS: number };
  /** A promise when the state changed: resolves once that is on disk. */
  record(agent: string, outcome: "ok" | "bad", nowMs: number, count?: number): Promise<void> | null;
  release(agent: string): void;
}

export interface RouterDeps {
  metrics: MainMetrics;
  verifyKey: (presented: string, nowMs: number) => ApiKeyInfo | null;
  onError: (err: unknown, requestId: string, route: string) => void;
  /** The meta env's directory: whether a failed meta commit means "disk full" depends on it. */
  metaDir: string;
  /**
   * In-flight request count, and whether the server is draining for shutdown: from then on
   * a new request (on a keep-alive connection; the listen socket is closed) gets 503
   * `shutting_down` and its connection is closed.
   */
  inflight: { count: number; draining: boolean };
  /** Circuit breakers for `breaker: true` routes, and the clock they run on. */
  breakers?: { table: RouteBreakers; nowMs: () => number };
  /** On with STEMEDB_STAGE_TRACE: stamps of `traced` routes' requests. */
  stageTrace?: StageTrace | null;
}

/** Statuses that count against an agent's circuit breaker (its own fault). */
const BREAKER_BAD_STATUSES: ReadonlySet<number> = new Set([400, 409, 413, 415, 422]);

const ROLE_RANK: Record<Role, number> = { reader: 1, agent: 2, admin: 3 };
const METHOD_NAME: Record<HttpMethod, string> = {
  get: "GET",
  post: "POST",
  patch: "PATCH",
  del: "DELETE",
};

/**
 * Checks an Authorization header for a route open to `role` and above (null: any valid key).
 * Throws ApiError 401/403 and counts the failure. Also used at the WS /v1/stream upgrade.
 */
export function authenticate(
  header: string,
  role: Role | null,
  deps: Pick<RouterDeps, "metrics" | "verifyKey">,
): ApiKeyInfo {
  if (header === "") {
    deps.metrics.authFailures("missing").inc();
    throw unauthorized(
      "This route needs an API key: send Authorization: Bearer <key>.",
      "missing_api_key",
    );
  }
  if (!header.startsWith("Bearer ") && !header.startsWith("bearer ")) {
    deps.metrics.authFailures("malformed").inc();
    throw unauthorized("The Authorization header must be 'Bearer <key>'.", "invalid_api_key");
  }
  const principal = deps.verifyKey(header.slice(7).trim(), Date.now());
  if (principal === null) {
    deps.metrics.authFailures("invalid").inc();
    throw unauthorized("The API key is unknown, revoked or expired.", "invalid_api_key");
  }
  if (role !== null && ROLE_RANK[principal.role] < ROLE_RANK[role]) {
    throw forbidden(`This route needs the ${role} role; the key has the ${principal.role} role.`);
  }
  return principal;
}

export function registerRoutes(
  app: TemplatedApp,
  routes: readonly Route[],
  deps: RouterDeps,
): void {
  const methodsByPattern = new Map<string, HttpMethod[]>();
  for (const route of routes) {
    const list = methodsByPattern.get(route.pattern) ?? [];
    list.push(route.method);
    methodsByPattern.set(route.pattern, list);
    app[route.method](route.pattern, (res, req) => handle(res, req, route, deps));
  }
  // Known path, wrong method: 405 with Allow; anything else: 404. Both in the error format.
  for (const [pattern, methods] of methodsByPattern) {
    const allow = methods.map((m) => METHOD_NAME[m]).join(", ");
    const label = `${pattern} (other methods)`;
    app.any(pattern, (res, req) => {
      const started = performance.now();
      const requestId = requestIdOf(req);
      if (deps.inflight.draining) {
        refuseWhileDraining(res, req, requestId, label, deps, started);
        return;
      }
      const err = new ApiError(
        405,
        "method_not_allowed",
        `${req.getMethod().toUpperCase()} is not allowed here; use ${allow}.`,
        {
          allow,
        },
      );
      send(res, requestId, errorReply(err, requestId), false, req.getMethod() === "head");
      deps.metrics.recordHttp(
        req.getMethod().toUpperCase(),
        label,
        405,
        (performance.now() - started) / 1000,
      );
    });
  }
  app.any("/*", (res, req) => {
    const started = performance.now();
    const requestId = requestIdOf(req);
    if (deps.inflight.draining) {
      refuseWhileDraining(res, req, requestId, "unmatched", deps, started);
      return;
    }
    const err = new ApiError(
      404,
      "not_found",
      `No route matches ${req.getMethod().toUpperCase()} ${req.getUrl()}.`,
    );
    send(res, requestId, errorReply(err, requestId), false, req.getMethod() === "head");
    deps.metrics.recordHttp(
      req.getMethod().toUpperCase(),
      "unmatched",
      404,
      (performance.now() - started) / 1000,
    );
  });
}

function handle(res: HttpResponse, req: HttpRequest, route: Route, deps: RouterDeps): void {
  const started = performance.now();
  const requestId = requestIdOf(req);
  if (deps.inflight.draining) {
    refuseWhileDraining(res, req, requestId, route.pattern, deps, started);
    return;
  }
  // HttpRequest is only valid in this synchronous part: copy what the handler needs.
  const authHeader = route.role === null ? "" : req.getHeader("authorization");
  const params: string[] = [];
  let badParam = false;
  for (let i = 0; route.pattern.indexOf(":", i) !== -1; ) {
    i = route.pattern.indexOf(":", i) + 1;
    const raw = req.getParameter(params.length);
    try {
      params.push(decodeURIComponent(raw));
    } catch {
      badParam = true; // malformed percent-encoding: answered with 400 below
      params.push(raw);
    }
  }
  const rawQuery = req.getQuery() ?? "";
  const contentType = route.jsonBody ? req.getHeader("content-type") : "";
  const contentLength = route.jsonBody ? req.getHeader("content-length") : "";
  const accept = req.getHeader("accept");
  let aborted = false;
  let finished = false;
  /** The handler has started: its work (a write) goes on even if the client goes away. */
  let handlerRunning = false;
  const trace = route.traced === true ? (deps.stageTrace ?? null) : null;
  /** Set once the body is in: refused requests take no row of the trace. */
  let traceSeq = 0;
  /** Set once the breaker admitted this request: its outcome must then be recorded. */
  let breakerAgent: string | null = null;
  /** A breaker state change this request caused; its answer waits until that is durable. */
  let breakerWrite: Promise<void> | null = null;
  const breakers = route.breaker === true ? deps.breakers : undefined;
  const recordBreaker = (agent: string, outcome: "ok" | "bad", count = 1) => {
    const write = breakers?.table.record(agent, outcome, breakers.nowMs(), count) ?? null;
    if (write !== null)
      breakerWrite = breakerWrite === null ? write : breakerWrite.then(() => write);
  };
  const settleBreaker = (status: number) => {
    if (breakerAgent === null || breakers === undefined) return;
    const agent = breakerAgent;
    breakerAgent = null;
    if (status >= 200 && status < 300) recordBreaker(agent, "ok");
    else if (BREAKER_BAD_STATUSES.has(status)) recordBreaker(agent, "bad");
    else breakers.table.release(agent);
  };
  deps.inflight.count++;

  const finish = (reply: Reply, closeConnection = false) => {
    if (finished) return;
    finished = true;
    deps.inflight.count--;
    settleBreaker(reply.status);
    deps.metrics.recordHttp(
      METHOD_NAME[route.method],
      route.pattern,
      aborted ? 499 : reply.status,
      (performance.now() - started) / 1000,
    );
    if (reply.status >= 400) deps.metrics.errors(errorCodeOf(reply)).inc();
    if (aborted) return;
    // An error answer leaves its row incomplete, so only acknowledged writes are summarised.
    if (reply.status < 400) trace?.stamp(traceSeq, "handler_done");
    if (breakerWrite === null) {
      res.cork(() => send(res, requestId, reply, closeConnection));
      trace?.stamp(traceSeq, "response_written");
      return;
    }
    breakerWrite.then(() => {
      if (aborted) return;
      res.cork(() => send(res, requestId, reply, closeConnection));
      trace?.stamp(traceSeq, "response_written");
    });
  };
  const fail = (err: unknown) => {
    if (isLmdbCommitFailure(err)) {
      // A commit of the meta env (keys, agents, audit) failed; its cause says which answer.
      void lmdbFailureCause(err).then((cause) => {
        finish(errorReply(metaCommitError(cause, deps.metaDir), requestId));
        deps.onError(cause, requestId, route.pattern);
      });
      return;
    }
    const apiError = err instanceof ApiError ? err : toApiError(err);
    if (apiError === null || apiError.status >= 500) deps.onError(err, requestId, route.pattern);
    finish(errorReply(apiError ?? internalError(), requestId));
  };
  res.onAborted(() => {
    aborted = true;
    // A running handler still ends in finish(): its outcome (quarantined writes included)
    // counts for the breaker, and the request counts in flight until then.
    if (!finished && !handlerRunning) {
      finished = true;
      deps.inflight.count--;
      settleBreaker(499);
      deps.metrics.recordHttp(
        METHOD_NAME[route.method],
        route.pattern,
        499,
        (performance.now() - started) / 1000,
      );
    }
  });

  let principal: ApiKeyInfo | null = null;
  const declaredBytes = contentLength === "" ? 0 : Number(contentLength);
  try {
    if (badParam) throw badRequest("The path has malformed percent-encoding.", "malformed_path");
    if (route.role !== null) principal = authenticate(authHeader, route.role, deps);
    if (breakers !== undefined && principal !== null) {
      // Before the body is read or any shard work: an open breaker costs the server nothing.
      const admitted = breakers.table.admit(principal.principal, breakers.nowMs());
      if (!admitted.ok) {
        throw tooManyRequests(
          admitted.retryAfterS,
          `The circuit breaker of agent ${principal.principal} is open after too many rejected, invalid or quarantined writes; retry after ${admitted.retryAfterS} s.`,
          "circuit_open",
        );
      }
      breakerAgent = principal.principal;
    }
    if (route.jsonBody) {
      const mediaType = contentType.split(";")[0]?.trim().toLowerCase() ?? "";
      if (mediaType !== JSON_TYPE) {
        throw unsupportedMediaType(
          `Send the body as ${JSON_TYPE} (got ${mediaType === "" ? "no content-type" : mediaType}).`,
        );
      }
      if (declaredBytes > MAX_BODY_BYTES) {
        throw payloadTooLarge(
          `Request body is ${declaredBytes} bytes; at most ${MAX_BODY_BYTES} bytes are allowed.`,
        );
      }
    }
  } catch (err) {
    const reply = errorReply(err as ApiError, requestId);
    if (!route.jsonBody) {
      finish(reply);
      return;
    }
    // Answer after the body is drained (bounded) so the client can read the error; past the
    // drain bound the connection is closed instead of reading on.
    drainBody(res, declaredBytes <= MAX_DRAIN_BYTES, (close) => finish(reply, close));
    return;
  }

  const run = (body: Buffer | null) => {
    if (trace !== null) {
      traceSeq = trace.begin(started);
      trace.stamp(traceSeq, "body_read");
    }
    handlerRunning = true;
    const ctx: RouteContext = {
      requestId,
      params,
      query: new URLSearchParams(rawQuery),
      principal,
      body,
      headers: { accept },
      reportBad: (count) => {
        if (breakerAgent !== null && Number.isSafeInteger(count) && count > 0)
          recordBreaker(breakerAgent, "bad", count);
      },
      traceSeq,
    };
    try {
      const out = route.handler(ctx);
      if (out instanceof Promise) out.then(finish, fail);
      else finish(out);
    } catch (err) {
      fail(err);
    }
  };

  if (!route.jsonBody) {
    run(null);
    return;
  }
  readBody(
    res,
    (body) => run(body),
    (closeConnection) =>
      finish(
        errorReply(payloadTooLarge(`Request body exceeds ${MAX_BODY_BYTES} bytes.`), requestId),
        closeConnection,
      ),
  );
}
