// GET /v1/openapi.json: OpenAPI 3.1 built from the route table. Request bodies are the very
// TypeBox schemas the router validates with, so the document cannot drift from the checks.
import type { Route } from "./router.js";

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

export function buildOpenApi(routes: readonly Route[], version: string): string {
  const paths: Record<string, Record<string, unknown>> = {};
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
