// GET /v1/openapi.json: OpenAPI 3.1 built from the route table. Request bodies are the very
// TypeBox schemas the router validates with, so the document cannot drift from the checks.
import type { Route } from "./router.js";
import { StreamMessage } from "./schemas.js";
import { STREAM_PATH } from "./stream.js";

const METHOD: Record<Route["method"], string> = {
  get: "get",
  post: "post",
  patch: "patch",
  del: "delete",
};

const ErrorBody = {
  type: "object",
  required: ["error"],
  properties: {
    error: {
      type: "object",
      required: ["code", "message", "request_id"],
      properties: {
        code: { type: "string", pattern: "^[a-z][a-z0-9_]*$" },
        message: { type: "string" },
        request_id: { type: "string" },
      },
    },
  },
};

/** `/v1/assertions/:id` -> `/v1/assertions/{id}` plus its path parameters. */
function openapiPath(pattern: string): { path: string; params: string[] } {
  const params: string[] = [];
  const path = pattern.replace(/:([a-z_]+)/g, (_m, name: string) => {
    params.push(name);
    return `{${name}}`;
  });
  return { path, params };
}

const AckFrame = {
  type: "object",
  required: ["seq", "id", "status", "shard", "lsn", "duplicate"],
  properties: {
    seq: { type: "integer", minimum: 0 },
    id: { type: "string", pattern: "^[0-9a-f]{32}$" },
    status: { type: "string" },
    shard: { type: "integer" },
    lsn: { type: "integer" },
    duplicate: { type: "boolean" },
  },
};

const ErrorFrame = {
  type: "object",
  required: ["seq", "error"],
  properties: {
    seq: { type: ["integer", "null"], minimum: 0 },
    error: {
      type: "object",
      required: ["code", "message"],
      properties: {
        code: { type: "string", pattern: "^[a-z][a-z0-9_]*$" },
        message: { type: "string" },
      },
    },
  },
};

/**
 * WS /v1/stream as an OpenAPI GET (OpenAPI has no WebSocket messages): the upgrade's answers,
 * and the frame schemas under `x-stemedb-websocket` (the client frame schema is the one the
 * server validates with).
 */
function streamOperation(): Record<string, unknown> {
  return {
    get: {
      summary:
        "WebSocket streaming ingest: one assertion per text frame, acked after fsync (docs/api.md)",
      description:
        'Upgrade with Authorization: Bearer <agent key>. Send text frames {"seq": n, "assertion": {…}} ' +
        "(assertion = the body of a single POST /v1/assert); each gets one ack frame after fsync or one " +
        "error frame, matched by seq, in any order. Keep at most x-stemedb-max-inflight messages " +
        "unacknowledged; beyond twice that, messages get error frames with code window_full.",
      security: [{ bearer: [] }],
      "x-stemedb-role": "agent",
      responses: {
        "101": {
          description: "Switching Protocols",
          headers: {
            "x-stemedb-max-inflight": {
              description: "Messages the connection may have in flight (the window)",
              schema: { type: "integer" },
            },
          },
        },
        "4XX": {
          description: "401/403 auth, 426 not an upgrade",
          content: { "application/json": { schema: ErrorBody } },
        },
        "5XX": {
          description: "503 too_many_connections or shutting_down",
          content: { "application/json": { schema: ErrorBody } },
        },
      },
      "x-stemedb-websocket": {
        clientFrame: StreamMessage,
        ackFrame: AckFrame,
        errorFrame: ErrorFrame,
      },
    },
  };
}

export function buildOpenApi(routes: readonly Route[], version: string): string {
  const paths: Record<string, Record<string, unknown>> = { [STREAM_PATH]: streamOperation() };
  for (const route of routes) {
    const { path, params } = openapiPath(route.pattern);
    const operation: Record<string, unknown> = {
      summary: route.summary ?? `${METHOD[route.method].toUpperCase()} ${path}`,
      security: route.role === null ? [] : [{ bearer: [] }],
      "x-stemedb-role": route.role ?? "none",
      parameters: [
        ...params.map((name) => ({
          name,
          in: "path",
          required: true,
          schema: { type: "string" },
        })),
        ...(route.queryParams ?? []).map((p) => ({ ...p, in: "query" })),
      ],
      responses: {
        "2XX": { description: "success" },
        "4XX": {
          description: "client error",
          content: { "application/json": { schema: ErrorBody } },
        },
        "5XX": {
          description: "server unavailable or out of space",
          content: { "application/json": { schema: ErrorBody } },
        },
      },
    };
    if (route.jsonBody) {
      operation.requestBody = {
        required: true,
        content: { "application/json": { schema: route.bodySchema ?? { type: "object" } } },
      };
    }
    paths[path] = { ...(paths[path] ?? {}), [METHOD[route.method]]: operation };
  }
  return JSON.stringify({
    openapi: "3.1.0",
    info: {
      title: "StemeDB",
      version,
      description: "Assertions by AI agent fleets: durable, attributed, queried through lenses.",
    },
    components: { securitySchemes: { bearer: { type: "http", scheme: "bearer" } } },
    paths,
  });
}
