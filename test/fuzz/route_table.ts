// The server's route table as the fuzzer sees it (src/server/routes/*.ts, `grep -rn "pattern:"
// src/server`): one example target per (method, path) with the least role it needs and a
// harmless valid-ish body, the methods each concrete path allows (for 405), and the
// classifier that names the route of any request target (for the success-shape checks).
// POST /v1/admin/test/clock is left out: it exists only with STEMEDB_TEST_CLOCK=on, which the
// fuzz server does not set (so it is a plain 404 like any unknown path).
import type { AuthKind } from "./cases.js";

const ZERO_ID = "00000000000000000000000000000000";

export interface RouteExample {
  method: string;
  /** Target with a harmless example query or id. */
  path: string;
  /** Least role that may call it; null = no key needed. */
  role: AuthKind | null;
  /** JSON text of a body that passes or nearly passes validation (null = no body). */
  body: string | null;
}

/** Every registered route with an example request (auth and role family). */
export const ROUTES: readonly RouteExample[] = [
  { method: "POST", path: "/v1/assert", role: "agent", body: "ASSERTION" },
  { method: "GET", path: `/v1/assertions/${ZERO_ID}`, role: "reader", body: null },
  { method: "GET", path: "/v1/query?concept=fuzz/a", role: "reader", body: null },
  { method: "POST", path: "/v1/admin/api_keys", role: "admin", body: '{"role":"reader"}' },
  { method: "GET", path: "/v1/admin/api_keys", role: "admin", body: null },
  { method: "DELETE", path: "/v1/admin/api_keys/aaaaaaaaaaaa", role: "admin", body: null },
  // An unknown key id: never changes a key the fuzzer authenticates with.
  {
    method: "PATCH",
    path: "/v1/admin/api_keys",
    role: "admin",
    body: '{"key_id":"aaaaaaaaaaaa","role":"reader"}',
  },
  {
    method: "POST",
    path: "/v1/admin/api_keys/rotate",
    role: "admin",
    body: '{"key_id":"aaaaaaaaaaaa"}',
  },
  { method: "GET", path: "/v1/health", role: null, body: null },
  { method: "GET", path: "/v1/openapi.json", role: null, body: null },
  {
    method: "POST",
    path: "/v1/vote",
    role: "agent",
    body: `{"assertion_id":"${ZERO_ID}","vote":"up"}`,
  },
  {
    method: "POST",
    path: "/v1/supersede",
    role: "agent",
    body: `{"supersedes":"${ZERO_ID}","assertion":{"concept":"fuzz/s","value":1,"confidence":0.5}}`,
  },
  { method: "POST", path: "/v1/retract", role: "agent", body: `{"assertion_id":"${ZERO_ID}"}` },
  { method: "POST", path: "/v1/epoch", role: "admin", body: '{"label":"fuzz"}' },
  { method: "GET", path: "/v1/epochs?limit=5", role: "reader", body: null },
  { method: "POST", path: "/v1/source", role: "agent", body: '{"uri":"https://fuzz.example/a"}' },
  { method: "GET", path: `/v1/source/${ZERO_ID}`, role: "reader", body: null },
  {
    method: "GET",
    path: `/v1/source/provenance?assertion_id=${ZERO_ID}`,
    role: "reader",
    body: null,
  },
  {
    method: "POST",
    path: "/v1/concepts/alias",
    role: "admin",
    body: '{"alias":"alias/fuzz/a","canonical":"alias/fuzz/b"}',
  },
  { method: "GET", path: "/v1/concepts/alias?path=alias/fuzz/x", role: "reader", body: null },
  { method: "DELETE", path: "/v1/concepts/alias?path=alias/fuzz/x", role: "admin", body: null },
  { method: "GET", path: "/v1/concepts/aliases?limit=3", role: "reader", body: null },
  { method: "GET", path: "/v1/concepts/suggest?q=fuzz", role: "reader", body: null },
  { method: "GET", path: "/v1/concepts/parse?path=fuzz/a", role: "reader", body: null },
  { method: "GET", path: "/v1/agents/fuzz-agent", role: "reader", body: null },
  { method: "POST", path: "/v1/admin/decay_trust_ranks", role: "admin", body: null },
  { method: "GET", path: "/v1/admin/circuit_breakers", role: "admin", body: null },
  {
    method: "POST",
    path: "/v1/admin/circuit_breaker/reset",
    role: "admin",
    body: '{"agent":"fuzz-nobody"}',
  },
  { method: "GET", path: "/v1/audit?limit=2", role: "admin", body: null },
  { method: "GET", path: "/v1/audit/verify", role: "admin", body: null },
  { method: "GET", path: "/v1/audit/1", role: "admin", body: null },
  {
    method: "POST",
    path: "/v1/gold_standard",
    role: "admin",
    body: '{"concept":"gold/fuzz/auth","value":1}',
  },
  { method: "DELETE", path: "/v1/gold_standard?concept=gold/fuzz/none", role: "admin", body: null },
  { method: "GET", path: "/v1/gold_standard?limit=2", role: "reader", body: null },
  {
    method: "POST",
    path: "/v1/gold_standard/verify",
    role: "admin",
    body: '{"agent":"fuzz-nobody"}',
  },
  { method: "GET", path: "/v1/admin/quarantine", role: "admin", body: null },
  {
    method: "POST",
    path: "/v1/admin/quarantine/approve",
    role: "admin",
    body: `{"assertion_id":"${ZERO_ID}"}`,
  },
  {
    method: "POST",
    path: "/v1/admin/quarantine/reject",
    role: "admin",
    body: `{"assertion_id":"${ZERO_ID}"}`,
  },
  { method: "GET", path: "/v1/admin/escalations", role: "admin", body: null },
  {
    method: "POST",
    path: "/v1/admin/escalation/resolve",
    role: "admin",
    body: '{"escalation_id":999999999,"value":1}',
  },
  // A relative target is refused before anything is written (never start a real backup).
  { method: "POST", path: "/v1/admin/backup", role: "admin", body: '{"to":"relative/dir"}' },
  { method: "GET", path: "/v1/admin/backups/nope", role: "admin", body: null },
];

/** Methods each concrete path answers (anything else standard → 405 with Allow). */
export const ALLOWED: Record<string, readonly string[]> = {
  "/v1/health": ["GET"],
  "/metrics": ["GET"],
  "/v1/openapi.json": ["GET"],
  "/v1/assert": ["POST"],
  [`/v1/assertions/${ZERO_ID}`]: ["GET"],
  "/v1/query": ["GET"],
  "/v1/admin/api_keys": ["POST", "GET", "PATCH"],
  "/v1/admin/api_keys/rotate": ["POST"],
  "/v1/admin/api_keys/aaaaaaaaaaaa": ["DELETE"],
  "/v1/vote": ["POST"],
  "/v1/supersede": ["POST"],
  "/v1/retract": ["POST"],
  "/v1/epoch": ["POST"],
  "/v1/epochs": ["GET"],
  "/v1/source": ["POST"],
  [`/v1/source/${ZERO_ID}`]: ["GET"],
  "/v1/source/provenance": ["GET"],
  "/v1/concepts/alias": ["POST", "GET", "DELETE"],
  "/v1/concepts/aliases": ["GET"],
  "/v1/concepts/suggest": ["GET"],
  "/v1/concepts/parse": ["GET"],
  "/v1/agents/fuzz-agent": ["GET"],
  "/v1/admin/decay_trust_ranks": ["POST"],
  "/v1/admin/circuit_breakers": ["GET"],
  "/v1/admin/circuit_breaker/reset": ["POST"],
  "/v1/audit": ["GET"],
  "/v1/audit/verify": ["GET"],
  "/v1/audit/7": ["GET"],
  "/v1/gold_standard": ["POST", "DELETE", "GET"],
  "/v1/gold_standard/verify": ["POST"],
  "/v1/admin/quarantine": ["GET"],
  "/v1/admin/quarantine/approve": ["POST"],
  "/v1/admin/quarantine/reject": ["POST"],
  "/v1/admin/escalations": ["GET"],
  "/v1/admin/escalation/resolve": ["POST"],
  "/v1/admin/backup": ["POST"],
  "/v1/admin/backups/nope": ["GET"],
};

/** Route name per exact path (method-independent unless the table below says otherwise). */
const EXACT: Record<string, string> = {
  "/v1/assert": "assert",
  "/v1/query": "query",
  "/v1/health": "health",
  "/metrics": "metrics",
  "/v1/openapi.json": "openapi",
  "/v1/vote": "vote",
  "/v1/supersede": "supersede",
  "/v1/retract": "retract",
  "/v1/epoch": "create_epoch",
  "/v1/epochs": "list_epochs",
  "/v1/source": "create_source",
  "/v1/source/provenance": "provenance",
  "/v1/concepts/aliases": "list_aliases",
  "/v1/concepts/suggest": "suggest",
  "/v1/concepts/parse": "parse",
  "/v1/admin/decay_trust_ranks": "decay",
  "/v1/admin/circuit_breakers": "breakers",
  "/v1/admin/circuit_breaker/reset": "breaker_reset",
  "/v1/audit": "audit",
  "/v1/audit/verify": "audit_verify",
  "/v1/gold_standard/verify": "gold_verify",
  "/v1/admin/quarantine": "quarantine",
  "/v1/admin/quarantine/approve": "quarantine_decision",
  "/v1/admin/quarantine/reject": "quarantine_decision",
  "/v1/admin/escalations": "escalations",
  "/v1/admin/escalation/resolve": "escalation_resolve",
  "/v1/admin/backup": "backup",
};

const PREFIXES: ReadonlyArray<[string, string]> = [
  ["/v1/assertions/", "get_assertion"],
  ["/v1/admin/api_keys/", "revoke_key"],
  ["/v1/source/", "get_source"],
  ["/v1/agents/", "agent"],
  ["/v1/audit/", "audit_entry"],
  ["/v1/admin/backups/", "backup_job"],
];

/** The route a request reaches, by method and target ("other" when none). */
export function routeOf(method: string, target: string | Buffer): string {
  const t = typeof target === "string" ? target : target.toString("latin1");
  const p = t.split("?")[0] ?? "";
  const exact = EXACT[p];
  if (exact !== undefined) return exact;
  if (p === "/v1/admin/api_keys") return method === "POST" ? "create_key" : "list_keys";
  if (p === "/v1/concepts/alias") return `alias_${method.toLowerCase()}`;
  if (p === "/v1/gold_standard") return `gold_${method.toLowerCase()}`;
  for (const [prefix, name] of PREFIXES) {
    if (p.startsWith(prefix) && p.length > prefix.length && !p.slice(prefix.length).includes("/"))
      return name;
  }
  return "other";
}
