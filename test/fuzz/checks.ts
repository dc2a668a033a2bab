// What every answer must look like (DESIGN §4): never a 5xx, never a hang, every answer from
// the router carries x-request-id, a 4xx body is exactly {"error":{code,message,request_id}}
// with the header's id, a 2xx body has the route's success shape.
import type { FuzzCase } from "./cases.js";
import { type RawOutcome, type RawResponse, responseHeader } from "./raw_http.js";
import { routeOf } from "./route_table.js";

export interface Verdict {
  /** Status per response, or "none" / "hang" / "garbage". */
  outcomes: string[];
  failures: string[];
  /** Answers uWS produced itself (no x-request-id), allowed for protocol-level cases only. */
  engineAnswers: number;
}

const SNAKE = /^[a-z][a-z0-9_]*$/;
const ID32 = /^[0-9a-f]{32}$/;

function parseJson(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString("utf8"));
  } catch {
    return undefined;
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Problems with a 4xx body, or null if it is the documented error format. */
export function errorFormatProblem(res: RawResponse): string | null {
  const rid = responseHeader(res, "x-request-id");
  const body = parseJson(res.body);
  if (!isObject(body)) return "error body is not a JSON object";
  const keys = Object.keys(body);
  if (keys.length !== 1 || keys[0] !== "error") return `error body has keys ${keys.join(",")}`;
  const e = body.error;
  if (!isObject(e)) return "error is not an object";
  const ekeys = Object.keys(e).sort().join(",");
  if (ekeys !== "code,message,request_id") return `error has keys ${ekeys}`;
  if (typeof e.code !== "string" || !SNAKE.test(e.code)) return `bad code ${String(e.code)}`;
  if (typeof e.message !== "string" || e.message.length < 5) return "message missing or too short";
  if (e.message.length > 2000) return `message is ${e.message.length} characters (unbounded echo?)`;
  if (e.request_id !== rid) return `request_id ${String(e.request_id)} != header ${rid}`;
  return null;
}

function writeResultProblem(r: unknown): string | null {
  if (!isObject(r)) return "result is not an object";
  if (typeof r.id !== "string" || !ID32.test(r.id)) return `bad id ${String(r.id)}`;
  // A write may arrive quarantined (gold standards and trust set by other cases): still 201.
  if (r.status !== "active" && r.status !== "quarantined") return `status ${String(r.status)}`;
  if (!Number.isInteger(r.shard) || (r.shard as number) < 0) return "bad shard";
  if (!Number.isInteger(r.lsn) || (r.lsn as number) < 1) return `bad lsn ${String(r.lsn)}`;
  if (typeof r.duplicate !== "boolean") return "duplicate is not a boolean";
  return null;
}

/** Problems with a 2xx body for the route, or null. */
export function successShapeProblem(c: FuzzCase, res: RawResponse): string | null {
  const route = routeOf(c.method, c.target);
  if (route === "metrics") {
    const ct = responseHeader(res, "content-type") ?? "";
    if (!ct.startsWith("text/plain")) return `metrics content-type ${ct}`;
    return res.body.toString("utf8").includes("stemedb_") ? null : "metrics without stemedb_";
  }
  const body = parseJson(res.body);
  if (!isObject(body)) return "2xx body is not a JSON object";
  switch (route) {
    case "assert":
      if (Array.isArray(body.results)) {
        for (const r of body.results) {
          const p = writeResultProblem(r);
          if (p !== null) return `batch item: ${p}`;
        }
        return body.results.length > 0 ? null : "empty results";
      }
      return writeResultProblem(body);
    case "get_assertion":
      return typeof body.id === "string" && ID32.test(body.id) && Number.isInteger(body.lsn)
        ? null
        : "assertion without id/lsn";
    case "query":
      if (typeof body.lens !== "string" || typeof body.concept !== "string")
        return "no lens/concept";
      // One concept's consensus (gold falls back to it) has groups, not items.
      if (body.source === "gold_standard") return isObject(body.gold) ? null : "gold without gold";
      if (body.lens === "consensus" || body.source === "consensus") {
        if (!Array.isArray(body.runners_up)) return "consensus without runners_up";
        return Number.isInteger(body.considered) ? null : "consensus without considered";
      }
      if (!Array.isArray(body.items)) return "items is not an array";
      return body.next_cursor === null || typeof body.next_cursor === "string"
        ? null
        : "bad next_cursor";
    case "health":
      return body.status === "ok" && Array.isArray(body.shards) ? null : "health not ok";
    case "create_key":
      return typeof body.key === "string" &&
        body.key.startsWith("stm_") &&
        typeof body.key_id === "string"
        ? null
        : "key creation without key";
    case "list_keys":
      return Array.isArray(body.items) ? null : "key list without items";
    case "revoke_key":
      return typeof body.key_id === "string" && typeof body.revoked_at === "number"
        ? null
        : "revocation without key_id/revoked_at";
    default:
      return newRouteShapeProblem(route, body);
  }
}

const isArr = (v: unknown) => Array.isArray(v);
const isStr = (v: unknown) => typeof v === "string";
const isNum = (v: unknown) => typeof v === "number" && Number.isFinite(v);
const cursorOk = (v: unknown) => v === null || typeof v === "string";

/** What a 2xx of each route added with the full route table must hold (docs/api.md). */
const SHAPES: Record<string, (b: Record<string, unknown>) => boolean> = {
  openapi: (b) => isStr(b.openapi) && isObject(b.paths),
  vote: (b) => isStr(b.assertion_id) && (b.vote === "up" || b.vote === "down") && isNum(b.lsn),
  supersede: (b) => writeResultProblem(b) === null && isStr(b.supersedes),
  retract: (b) => isStr(b.id) && b.status === "retracted" && typeof b.duplicate === "boolean",
  create_epoch: (b) => Number.isInteger(b.epoch) && isArr(b.lsns),
  list_epochs: (b) => isArr(b.items),
  create_source: (b) => isStr(b.id) && typeof b.duplicate === "boolean",
  get_source: (b) => isStr(b.id),
  provenance: (b) => isObject(b.assertion) && isArr(b.sources),
  alias_post: (b) => isStr(b.alias) && isStr(b.canonical),
  alias_get: (b) => isStr(b.alias) && isStr(b.canonical),
  alias_delete: (b) => isStr(b.alias) && b.deleted === true,
  list_aliases: (b) => isArr(b.items) && cursorOk(b.next_cursor),
  suggest: (b) => isStr(b.q) && isArr(b.items) && typeof b.complete === "boolean",
  parse: (b) => isStr(b.input) && typeof b.valid === "boolean",
  agent: (b) => isStr(b.agent) && isNum(b.trust) && typeof b.known === "boolean",
  decay: (b) => isNum(b.ran_at),
  breakers: (b) => isArr(b.circuit_breakers) && cursorOk(b.next_cursor),
  breaker_reset: (b) => isStr(b.agent) && isObject(b.breaker),
  audit: (b) => isArr(b.items) && cursorOk(b.next_cursor),
  audit_entry: (b) => Number.isInteger(b.seq) && isStr(b.hash),
  audit_verify: (b) => typeof b.ok === "boolean" && Number.isInteger(b.checked),
  gold_post: (b) => isStr(b.concept) && "value" in b,
  gold_delete: (b) => isStr(b.concept),
  gold_get: (b) => (isArr(b.items) && cursorOk(b.next_cursor)) || isStr(b.concept),
  gold_verify: (b) => isStr(b.agent) && Number.isInteger(b.checked),
  quarantine: (b) => isArr(b.items) && cursorOk(b.next_cursor),
  quarantine_decision: (b) => isStr(b.id) && typeof b.duplicate === "boolean",
  escalations: (b) => isArr(b.items) && cursorOk(b.next_cursor),
  escalation_resolve: (b) => Number.isInteger(b.id) && b.status === "resolved",
  backup: (b) => isStr(b.id),
  backup_job: (b) => isStr(b.id) && isStr(b.status),
};

function newRouteShapeProblem(route: string, body: Record<string, unknown>): string | null {
  const ok = SHAPES[route];
  if (ok === undefined || ok(body)) return null;
  return `${route} answer without its documented fields: ${JSON.stringify(body).slice(0, 200)}`;
}

function checkResponse(c: FuzzCase, res: RawResponse, head: boolean, failures: string[]): boolean {
  const rid = responseHeader(res, "x-request-id");
  if (res.status >= 500) {
    failures.push(`${res.status}: ${res.body.subarray(0, 300).toString("utf8")}`);
  }
  if (rid === undefined) {
    // Only uWS itself answers without our header; acceptable for broken HTTP only.
    if (!c.protocolLevel) failures.push(`${res.status} without x-request-id`);
    return false;
  }
  // Broken header syntax may hide the headers after it from uWS (docs/api.md): no echo then.
  if (c.requestId?.echo === true && !c.protocolLevel && rid !== c.requestId.value)
    failures.push(`x-request-id ${rid} does not echo ${c.requestId.value}`);
  if (c.requestId?.echo === false && rid === c.requestId.value)
    failures.push(`invalid x-request-id ${JSON.stringify(rid)} was echoed`);
  if (head) return true;
  if (res.status >= 400 && res.status < 500) {
    const p = errorFormatProblem(res);
    if (p !== null) failures.push(`${res.status} not in error format: ${p}`);
    if (res.status === 401 && responseHeader(res, "www-authenticate") === undefined)
      failures.push("401 without www-authenticate");
    if (res.status === 405 && responseHeader(res, "allow") === undefined)
      failures.push("405 without allow");
    if (res.status === 429 && responseHeader(res, "retry-after") === undefined)
      failures.push("429 without retry-after");
  } else if (res.status >= 200 && res.status < 300) {
    const p = successShapeProblem(c, res);
    if (p !== null) failures.push(`${res.status} bad success shape: ${p}`);
  }
  return true;
}

export function judge(c: FuzzCase, out: RawOutcome): Verdict {
  const failures: string[] = [];
  const outcomes: string[] = [];
  let engineAnswers = 0;
  const head = c.method === "HEAD";
  const aborting =
    c.delivery.kind === "cut" ||
    c.delivery.kind === "hangup" ||
    (c.delivery.kind === "slow" && c.delivery.abortAfter !== null);
  if (out.timedOut) {
    outcomes.push("hang");
    failures.push(`no answer within the timeout (${Math.round(out.elapsedMs)} ms)`);
  }
  out.responses.forEach((res, i) => {
    outcomes.push(String(res.status));
    const sub = c.pipeline?.[i] ?? c;
    const sf: string[] = [];
    if (!checkResponse(sub, res, head, sf)) engineAnswers++;
    for (const f of sf) failures.push(c.pipeline ? `pipelined #${i + 1} (${sub.label}): ${f}` : f);
  });
  if (out.garbage !== null) {
    outcomes.push("garbage");
    if (!c.protocolLevel) failures.push(`unparseable answer: ${out.garbage}`);
  }
  if (out.responses.length === 0 && !out.timedOut && out.garbage === null) outcomes.push("none");
  const wanted = c.pipeline?.length ?? 1;
  // uWS closes a connection when a pipelined request arrives while an earlier answer is still
  // pending (async handler), so pipelines may end early; what does come back must be right.
  if (c.pipeline !== undefined && out.responses.length < wanted) outcomes.push("pipeline_cut");
  else if (!aborting && !c.protocolLevel && !out.timedOut && out.responses.length < wanted)
    failures.push(
      `${out.responses.length} answers, expected ${wanted} (server closed: ${out.closedByServer})`,
    );
  const first = out.responses[0];
  // The agent's circuit breaker may open under a stream of invalid writes (the fuzz server
  // raises its threshold, but a 429 circuit_open is a documented answer wherever it comes).
  const breakerOpen =
    first !== undefined && first.status === 429 && first.body.includes('"circuit_open"');
  if (c.expect !== undefined && first !== undefined && !aborting && !breakerOpen) {
    const fromRouter = responseHeader(first, "x-request-id") !== undefined;
    if ((fromRouter || !c.protocolLevel) && !c.expect.includes(first.status))
      failures.push(
        `status ${first.status}, expected ${c.expect.join("/")}: ${first.body.subarray(0, 200).toString("utf8")}`,
      );
  }
  if (c.pipeline !== undefined) {
    c.pipeline.forEach((sub, i) => {
      const res = out.responses[i];
      if (res === undefined) return;
      if (sub.expect !== undefined && !sub.expect.includes(res.status))
        failures.push(
          `pipelined #${i + 1} (${sub.label}): status ${res.status}, expected ${sub.expect.join("/")}`,
        );
    });
  }
  return { outcomes, failures, engineAnswers };
}
