// The shape of one fuzz case and how it becomes bytes on a socket.
//
// Cases are generated before the keys they use exist, so credentials are symbolic (`AuthKind`)
// and resolved when the case runs; that keeps a (seed, index) pair replayable across runs.
// Bodies are built lazily so sampling thousands of cases does not hold megabytes of bytes.

export type AuthKind =
  | "none"
  | "agent"
  | "reader"
  | "admin"
  | "revoked"
  | "unknown"
  | "no_scheme"
  | "basic"
  | "bearer_empty"
  | "bearer_lower"
  | "bearer_upper"
  | "bearer_spaces"
  | "bearer_trailing_junk"
  | "bearer_giant"
  | "bearer_latin1"
  | "double_bad_first"
  | "double_good_first";

export interface FuzzKeys {
  admin: string;
  agent: string;
  reader: string;
  revoked: string;
  /** Ids of assertions written at setup: [0..1] by the fuzz agent, [2..3] by another agent. */
  knownIds: string[];
}

/**
 * Placeholders for `knownIds` in bodies and targets (cases are generated before the ids
 * exist): 32 characters like an id, never hex, replaced when the case is serialized.
 */
export const KNOWN_ID_MARKS: readonly string[] = [0, 1, 2, 3].map((i) => `${"z".repeat(31)}${i}`);
const MARK_PREFIX = Buffer.from("z".repeat(31));

function withKnownIds(bytes: Buffer, keys: FuzzKeys): Buffer {
  if (bytes.indexOf(MARK_PREFIX) < 0) return bytes;
  let s = bytes.toString("latin1"); // byte-exact round trip
  KNOWN_ID_MARKS.forEach((mark, i) => {
    s = s.split(mark).join(keys.knownIds[i] ?? mark);
  });
  return Buffer.from(s, "latin1");
}

export type Delivery =
  /** One write, then wait for the answer(s). */
  | { kind: "whole" }
  /** Split into pieces written with a delay; then wait, or abort after piece `abortAfter`. */
  | { kind: "slow"; pieces: number; delayMs: number; abortAfter: number | null; reset: boolean }
  /** Write only the first part of the request (a fraction of its bytes), then close or reset. */
  | { kind: "cut"; keepFraction: number; reset: boolean }
  /** Write everything, then close before the answer (the handler may still be running). */
  | { kind: "hangup"; reset: boolean }
  /** Write everything, wait a little, close: for requests the server may wait on forever. */
  | { kind: "linger"; lingerMs: number };

/** One WebSocket message of a WS /v1/stream script (ws_fuzz.ts). */
export interface WsMessage {
  label: string;
  binary: boolean;
  build: () => Buffer;
}

/** Bad messages on one connection, then a good one that must be acked. */
export interface WsScript {
  bad: WsMessage[];
  good: { seq: number; assertion: Record<string, unknown> };
  /** Drop the connection right after the bad messages; the good one goes on a new one. */
  abort: boolean;
}

export interface FuzzCase {
  family: string;
  /** Short human description; printed with failures. */
  label: string;
  method: string;
  /** Request target as raw bytes (may hold bytes fetch would refuse). */
  target: Buffer | string;
  /** "HTTP/1.1" unless the case abuses the version. */
  version?: string;
  auth: AuthKind;
  /** Extra header lines, written as given (names and values may be odd). */
  headers: Array<[string, string | Buffer]>;
  /** Content type written as a header unless null (set by the family). */
  contentType: string | null;
  /** Content-Length: "auto" = body length (omitted for bodiless GET-like requests). */
  contentLength: "auto" | "omit" | string;
  body: () => Buffer;
  delivery: Delivery;
  /** Requests that are not valid HTTP/1.1: uWS itself may answer (without our error format) or close. */
  protocolLevel: boolean;
  /** Statuses the case must get, when the family knows (checked in addition to the rules). */
  expect?: readonly number[];
  /** Several requests on one connection, written back to back (this case's own fields unused). */
  pipeline?: FuzzCase[];
  /** Write header names in Title-Case, as curl and browsers do. */
  titleCase?: boolean;
  /** An x-request-id the client sends; `echo` = the server must answer with the same id. */
  requestId?: { value: string; echo: boolean };
  /** A WS /v1/stream script instead of an HTTP request (the HTTP fields are unused). */
  ws?: WsScript;
  /** Raw bytes that replace the whole request (garbage cases). */
  raw?: () => Buffer;
}

function authHeaders(kind: AuthKind, keys: FuzzKeys): Array<[string, string | Buffer]> {
  switch (kind) {
    case "none":
      return [];
    case "agent":
    case "reader":
    case "admin":
    case "revoked":
      return [["authorization", `Bearer ${keys[kind]}`]];
    case "unknown":
      return [
        ["authorization", "Bearer stm_aaaaaaaaaaaa_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"],
      ];
    case "no_scheme":
      return [["authorization", keys.agent]];
    case "basic":
      return [["authorization", `Basic ${Buffer.from(`x:${keys.agent}`).toString("base64")}`]];
    case "bearer_empty":
      return [["authorization", "Bearer"]];
    case "bearer_lower":
      return [["authorization", `bearer ${keys.agent}`]];
    case "bearer_upper":
      return [["authorization", `BEARER ${keys.agent}`]];
    case "bearer_spaces":
      return [["authorization", `Bearer    ${keys.agent}   `]];
    case "bearer_trailing_junk":
      return [["authorization", `Bearer ${keys.agent}x`]];
    case "bearer_giant":
      return [["authorization", `Bearer ${"k".repeat(3000)}`]];
    case "bearer_latin1":
      return [
        ["authorization", Buffer.concat([Buffer.from("Bearer stm_"), Buffer.from([0xe9, 0xff])])],
      ];
    case "double_bad_first":
      return [
        ["authorization", "Bearer nope"],
        ["authorization", `Bearer ${keys.agent}`],
      ];
    case "double_good_first":
      return [
        ["authorization", `Bearer ${keys.agent}`],
        ["authorization", "Bearer nope"],
      ];
  }
}

/** Whether the server should treat this credential as the agent key (or better). */
export function authIsAgentOrBetter(kind: AuthKind): boolean {
  return ["agent", "admin", "bearer_lower", "bearer_spaces"].includes(kind);
}

/** The whole request as bytes. */
export function serialize(c: FuzzCase, keys: FuzzKeys): Buffer {
  if (c.raw !== undefined) return c.raw();
  if (c.pipeline !== undefined) return Buffer.concat(c.pipeline.map((p) => serialize(p, keys)));
  const body = withKnownIds(c.body(), keys);
  const head: Buffer[] = [];
  const line = (s: string | Buffer) => head.push(typeof s === "string" ? Buffer.from(s) : s);
  const name = (n: string) => (c.titleCase === true ? titleCase(n) : n);
  line(c.method);
  line(" ");
  line(withKnownIds(typeof c.target === "string" ? Buffer.from(c.target) : c.target, keys));
  line(` ${c.version ?? "HTTP/1.1"}\r\n`);
  line(`${name("host")}: 127.0.0.1\r\n`);
  const extra: Array<[string, string | Buffer]> = [...authHeaders(c.auth, keys), ...c.headers];
  if (c.requestId !== undefined) extra.push(["x-request-id", c.requestId.value]);
  for (const [n, value] of extra) {
    line(`${name(n)}: `);
    line(value);
    line("\r\n");
  }
  if (c.contentType !== null) line(`${name("content-type")}: ${c.contentType}\r\n`);
  if (c.contentLength === "auto") {
    if (body.length > 0 || c.method === "POST")
      line(`${name("content-length")}: ${body.length}\r\n`);
  } else if (c.contentLength !== "omit") {
    line(`${name("content-length")}: ${c.contentLength}\r\n`);
  }
  line("\r\n");
  return Buffer.concat([...head, body]);
}

function titleCase(n: string): string {
  return n.replace(/(^|-)([a-z])/g, (_m, dash: string, ch: string) => dash + ch.toUpperCase());
}

/** Splits bytes into `pieces` parts at evenly spread cut points (deterministic). */
export function splitBytes(bytes: Buffer, pieces: number): Buffer[] {
  const n = Math.max(1, Math.min(pieces, bytes.length));
  const out: Buffer[] = [];
  for (let i = 0; i < n; i++) {
    const from = Math.floor((bytes.length * i) / n);
    const to = Math.floor((bytes.length * (i + 1)) / n);
    out.push(bytes.subarray(from, to));
  }
  return out;
}

/** Bounded printable excerpt of a request for failure reports. */
export function excerpt(bytes: Buffer, max = 300): string {
  const text = JSON.stringify(bytes.subarray(0, max).toString("latin1"));
  return bytes.length > max ? `${text}… (${bytes.length} bytes)` : text;
}
