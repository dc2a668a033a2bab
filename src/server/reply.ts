// How every HTTP answer is written: the status line, content type, x-request-id and any
// extra headers, in one corked write; request ids; the documented error body as a Reply.
import type { HttpRequest, HttpResponse } from "uWebSockets.js";
import { randomBytes } from "node:crypto";
import { type ApiError, errorBody } from "./errors.js";

export interface Reply {
  status: number;
  body: string;
  contentType?: string;
  headers?: Record<string, string>;
}

const STATUS_TEXT: Record<number, string> = {
  200: "200 OK",
  201: "201 Created",
  202: "202 Accepted",
  204: "204 No Content",
  400: "400 Bad Request",
  401: "401 Unauthorized",
  403: "403 Forbidden",
  404: "404 Not Found",
  405: "405 Method Not Allowed",
  409: "409 Conflict",
  413: "413 Payload Too Large",
  415: "415 Unsupported Media Type",
  422: "422 Unprocessable Entity",
  426: "426 Upgrade Required",
  429: "429 Too Many Requests",
  500: "500 Internal Server Error",
  503: "503 Service Unavailable",
  507: "507 Insufficient Storage",
};

const INCOMING_REQUEST_ID = /^[A-Za-z0-9._-]{1,64}$/;
export const JSON_TYPE = "application/json";

const noop = (): void => {};
const idPrefix = randomBytes(4).toString("hex");
let idCounter = 0;
export function newRequestId(): string {
  idCounter = (idCounter + 1) % Number.MAX_SAFE_INTEGER;
  return `${idPrefix}-${idCounter.toString(36)}`;
}

function statusLine(status: number): string {
  return STATUS_TEXT[status] ?? `${status} Status`;
}

export function send(
  res: HttpResponse,
  requestId: string,
  reply: Reply,
  closeConnection = false,
  head = false,
): void {
  res.writeStatus(statusLine(reply.status));
  res.writeHeader("content-type", reply.contentType ?? JSON_TYPE);
  res.writeHeader("x-request-id", requestId);
  if (reply.headers !== undefined) {
    for (const name in reply.headers) res.writeHeader(name, reply.headers[name] as string);
  }
  // A HEAD answer carries the headers of the GET answer but never a body (RFC 9110 §9.3.2).
  // (uWS 20.30 does not count endWithoutBody as an answer unless an abort handler is set.)
  if (head) res.onAborted(noop).endWithoutBody(Buffer.byteLength(reply.body), closeConnection);
  else res.end(reply.body, closeConnection);
}

export function errorReply(err: ApiError, requestId: string): Reply {
  return {
    status: err.status,
    body: errorBody(err.code, err.message, requestId),
    headers: err.headers,
  };
}

/** The request's valid incoming x-request-id, or a new one. */
export function requestIdOf(req: HttpRequest): string {
  const incoming = req.getHeader("x-request-id");
  return incoming !== "" && INCOMING_REQUEST_ID.test(incoming) ? incoming : newRequestId();
}

export function errorCodeOf(reply: Reply): string {
  const match = /"code":"([a-z0-9_]+)"/.exec(reply.body);
  return match?.[1] ?? `http_${reply.status}`;
}
