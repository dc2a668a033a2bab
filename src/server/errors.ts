// HTTP errors (DESIGN §4). Handlers throw ApiError; the router turns it into
//   {"error":{"code":"snake_case_code","message":"human sentence","request_id":"…"}}
// with `status` and any extra `headers` (Retry-After, WWW-Authenticate).
// Anything that is not an ApiError is a bug and becomes a 500 `internal_error` whose
// message reveals nothing about the internals.

export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly headers?: Record<string, string>;

  constructor(status: number, code: string, message: string, headers?: Record<string, string>) {
    super(message);
    this.name = "ApiError";
    if (!Number.isInteger(status) || status < 400 || status > 599) {
      throw new RangeError(`ApiError status must be a 4xx/5xx integer, got ${status}`);
    }
    if (!/^[a-z][a-z0-9_]*$/.test(code)) {
      throw new RangeError(`ApiError code must be snake_case, got ${JSON.stringify(code)}`);
    }
    this.status = status;
    this.code = code;
    if (headers !== undefined) this.headers = headers;
  }
}

export function isApiError(e: unknown): e is ApiError {
  return e instanceof ApiError;
}

/** The exact error body of DESIGN §4. JSON.stringify does the escaping. */
export function errorBody(code: string, message: string, requestId: string): string {
  return JSON.stringify({ error: { code, message, request_id: requestId } });
}

/** Retry-After in whole seconds, at least 1 (a 0 invites an immediate retry storm). */
function retryAfterHeader(retryAfterS: number): Record<string, string> {
  const s = Number.isFinite(retryAfterS) ? Math.max(1, Math.ceil(retryAfterS)) : 1;
  return { "retry-after": String(s) };
}

/** 400: the request cannot be parsed (bad JSON, bad query string). */
export function badRequest(message: string, code = "bad_request"): ApiError {
  return new ApiError(400, code, message);
}

/** 401: no key, malformed key, unknown, revoked or expired key. */
export function unauthorized(
  message = "A valid API key is required.",
  code = "unauthorized",
): ApiError {
  return new ApiError(401, code, message, { "www-authenticate": 'Bearer realm="stemedb"' });
}

/** 403: the key is valid but its role may not do this. */
export function forbidden(message: string, code = "forbidden"): ApiError {
  return new ApiError(403, code, message);
}

export function notFound(message: string, code = "not_found"): ApiError {
  return new ApiError(404, code, message);
}

/** 409: the request conflicts with current state (e.g. superseding a non-active assertion). */
export function conflict(message: string, code = "conflict"): ApiError {
  return new ApiError(409, code, message);
}

/** 413: body larger than MAX_BODY_BYTES (or a batch above MAX_BATCH_ITEMS). */
export function payloadTooLarge(message: string, code = "payload_too_large"): ApiError {
  return new ApiError(413, code, message);
}

/** 415: the body is not `application/json`. */
export function unsupportedMediaType(
  message = "Request body must be application/json.",
  code = "unsupported_media_type",
): ApiError {
  return new ApiError(415, code, message);
}

/** 422: well-formed JSON that is semantically invalid (schema, bounds, rules). */
export function unprocessable(message: string, code = "invalid_request"): ApiError {
  return new ApiError(422, code, message);
}

/** 429: rate limit or open circuit breaker, with Retry-After. */
export function tooManyRequests(
  retryAfterS: number,
  message = "Too many requests; retry later.",
  code = "rate_limited",
): ApiError {
  return new ApiError(429, code, message, retryAfterHeader(retryAfterS));
}

/** 503: overloaded (a shard queue bound reached) or a shard not accepting writes. */
export function unavailable(
  retryAfterS: number,
  message = "The server is overloaded; retry later.",
  code = "overloaded",
): ApiError {
  return new ApiError(503, code, message, retryAfterHeader(retryAfterS));
}

/** 507: disk full; reads keep working. */
export function insufficientStorage(
  message = "The server is out of disk space; writes are refused, reads keep working.",
  code = "insufficient_storage",
): ApiError {
  return new ApiError(507, code, message);
}

/** 500: a bug. The message must not leak internals; log the cause with the request id. */
export function internalError(
  message = "Internal error; the server log has details under this request id.",
): ApiError {
  return new ApiError(500, "internal_error", message);
}

/** Longest piece of client input an error message repeats (messages stay short and safe). */
const MAX_ECHO_CHARS = 120;

/** `value` as JSON for an error message, cut to MAX_ECHO_CHARS with "…" when longer. */
export function echo(value: string): string {
  const cut = value.length > MAX_ECHO_CHARS ? `${value.slice(0, MAX_ECHO_CHARS)}…` : value;
  return JSON.stringify(cut);
}
