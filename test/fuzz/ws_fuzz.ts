// WS /v1/stream under bad messages (docs/api.md, "WS /v1/stream"): a connection gets a few
// malformed, mistyped, deep, big or binary frames, then one good message. Every message must
// get exactly one answer frame (an error frame, or an ack when the "bad" message happened to
// be valid), every frame must be well formed, no answer may be `internal_error`, and the good
// message must be acked on the same connection. Some scripts drop the connection right after
// their bad frames instead; the good message then goes on a new connection.
import { isUtf8 } from "node:buffer";
import fc from "fast-check";
import WebSocket from "ws";
import type { FuzzCase, WsMessage, WsScript } from "./cases.js";
import type { Verdict } from "./checks.js";
import {
  assertionBody,
  damagedBody,
  type Nest,
  nesting,
  nestText,
  validAssertion,
  weirdString,
  wrongTypeValue,
} from "./json_arbs.js";

const SNAKE = /^[a-z][a-z0-9_]*$/;
const ID32 = /^[0-9a-f]{32}$/;
/** Seqs of the good messages: far above the bad messages' small ones. */
const GOOD_SEQ_BASE = 9_000_000_000;

const text = (label: string, build: () => Buffer): WsMessage => ({ label, binary: false, build });

const seqValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.integer({ min: 0, max: 1000 }),
  fc.constantFrom(-1, 1.5, 2 ** 53, Number.MAX_SAFE_INTEGER, "1", null, true, [], {}),
  wrongTypeValue,
);

const badMessage: fc.Arbitrary<WsMessage> = fc.oneof(
  // A POST /v1/assert body (valid or not, maybe byte-damaged) wrapped with a seq.
  fc
    .record({ seq: seqValue, body: fc.oneof(assertionBody, damagedBody(assertionBody)) })
    .map(({ seq, body }) =>
      text(`seq ${JSON.stringify(seq)} + ${body.label}`, () =>
        Buffer.concat([
          Buffer.from(`{"seq":${JSON.stringify(seq) ?? "null"},"assertion":`),
          body.build(),
          Buffer.from("}"),
        ]),
      ),
    ),
  // The envelope itself wrong: missing or extra fields, wrong types, not an object.
  fc
    .record({
      seq: seqValue,
      assertion: fc.oneof(validAssertion, wrongTypeValue),
      extra: fc.option(fc.tuple(weirdString, wrongTypeValue), { nil: undefined }),
      dropSeq: fc.boolean(),
    })
    .map(({ seq, assertion, extra, dropSeq }) => {
      const m: Record<string, unknown> = { assertion };
      if (!dropSeq) m.seq = seq;
      if (extra !== undefined) m[extra[0]] = extra[1];
      return text(`envelope ${JSON.stringify(m).slice(0, 80)}`, () =>
        Buffer.from(JSON.stringify(m)),
      );
    }),
  fc
    .oneof(wrongTypeValue, fc.constantFrom("", " ", "{", "[]", "nul", '{"seq":1', "\uFEFF{}"))
    .map((v) => {
      // Strings go as they are (not JSON text); anything else as its JSON text.
      const t = typeof v === "string" ? v : (JSON.stringify(v) ?? "null");
      return text(`not an envelope ${JSON.stringify(t).slice(0, 60)}`, () => Buffer.from(t));
    }),
  nesting
    .filter((n: Nest) => n.depth <= 5000)
    .map((n) =>
      text(`depth ${n.depth} ${n.kind}`, () =>
        Buffer.from(
          `{"seq":1,"assertion":{"concept":"fuzz/ws","value":${nestText(n)},"confidence":1}}`,
        ),
      ),
    ),
  fc.constantFrom(0xff, 0x80, 0xc0).map((b) => ({
    label: `binary frame 0x${b.toString(16)}`,
    binary: true,
    build: () => Buffer.from([b, 0x7b, 0x7d]),
  })),
  fc
    .integer({ min: 100_000, max: 1_000_000 })
    .map((n) =>
      text(`value of ${n} bytes`, () =>
        Buffer.from(
          `{"seq":2,"assertion":{"concept":"fuzz/ws","value":"${"v".repeat(n)}","confidence":1}}`,
        ),
      ),
    ),
);

export const wsFamily: fc.Arbitrary<FuzzCase> = fc
  .record({
    bad: fc.array(badMessage, { minLength: 1, maxLength: 4 }),
    goodSeq: fc.integer({ min: 0, max: 1_000_000 }),
    nonce: fc.stringMatching(/^[a-z0-9]{8}$/),
    abort: fc.constantFrom(false, false, false, true),
  })
  .map(({ bad, goodSeq, nonce, abort }) => {
    const ws: WsScript = {
      bad,
      good: {
        seq: GOOD_SEQ_BASE + goodSeq,
        assertion: { concept: `fuzz/ws/${nonce}`, value: nonce, confidence: 0.5, nonce },
      },
      abort,
    };
    return {
      family: "ws",
      label: `${abort ? "abort after " : ""}${bad.map((m) => m.label).join(" | ")}`.slice(0, 300),
      method: "GET",
      target: "/v1/stream",
      auth: "agent",
      headers: [],
      contentType: null,
      contentLength: "omit",
      body: () => Buffer.alloc(0),
      delivery: { kind: "whole" },
      protocolLevel: false,
      ws,
    };
  });

/** Problems with one answer frame, or null. */
function frameProblem(raw: Buffer, isBinary: boolean): string | null {
  if (isBinary) return "binary answer frame";
  let f: unknown;
  try {
    f = JSON.parse(raw.toString("utf8"));
  } catch {
    return `answer is not JSON: ${raw.subarray(0, 100).toString("utf8")}`;
  }
  if (typeof f !== "object" || f === null || Array.isArray(f)) return "answer is not an object";
  const o = f as Record<string, unknown>;
  if ("error" in o) {
    const e = o.error as Record<string, unknown> | null;
    if (!(o.seq === null || Number.isSafeInteger(o.seq))) return `error frame seq ${String(o.seq)}`;
    if (typeof e !== "object" || e === null) return "error is not an object";
    if (typeof e.code !== "string" || !SNAKE.test(e.code)) return `bad code ${String(e.code)}`;
    if (e.code === "internal_error") return `internal_error: ${String(e.message).slice(0, 200)}`;
    if (typeof e.message !== "string" || e.message.length < 5) return "message missing";
    if (e.message.length > 2000) return `message is ${e.message.length} characters`;
    return null;
  }
  if (!Number.isSafeInteger(o.seq)) return `ack seq ${String(o.seq)}`;
  if (typeof o.id !== "string" || !ID32.test(o.id)) return `ack id ${String(o.id)}`;
  if (o.status !== "active" && o.status !== "quarantined") return `ack status ${String(o.status)}`;
  return null;
}

interface Conn {
  ws: WebSocket;
  frames: Array<Record<string, unknown>>;
  failures: string[];
  closed: boolean;
  wake: () => void;
}

function connect(port: number, key: string, timeoutMs: number): Promise<Conn | string> {
  return new Promise((resolve) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/stream`, {
      headers: { authorization: `Bearer ${key}` },
      handshakeTimeout: timeoutMs,
    });
    const conn: Conn = { ws, frames: [], failures: [], closed: false, wake: () => {} };
    ws.on("message", (data: Buffer, isBinary: boolean) => {
      const p = frameProblem(data, isBinary);
      if (p !== null) conn.failures.push(p);
      else conn.frames.push(JSON.parse(data.toString("utf8")) as Record<string, unknown>);
      conn.wake();
    });
    ws.on("close", () => {
      conn.closed = true;
      conn.wake();
    });
    ws.on("error", (err) => {
      if (ws.readyState === WebSocket.CONNECTING) resolve(`connect failed: ${err.message}`);
    });
    ws.on("unexpected-response", (_req, res) => resolve(`upgrade refused: ${res.statusCode}`));
    ws.on("open", () => resolve(conn));
  });
}

async function until(conn: Conn, done: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!done() && !conn.closed && Date.now() < deadline) {
    await new Promise<void>((r) => {
      const t = setTimeout(r, Math.max(1, deadline - Date.now()));
      conn.wake = () => {
        clearTimeout(t);
        r();
      };
    });
  }
  return done();
}

/** Runs one script; the verdict has the same meaning as an HTTP case's. */
export async function runWsScript(
  s: WsScript,
  port: number,
  agentKey: string,
  timeoutMs: number,
): Promise<Verdict> {
  const failures: string[] = [];
  const outcomes: string[] = [];
  let conn = await connect(port, agentKey, timeoutMs);
  if (typeof conn === "string")
    return { outcomes: ["ws_refused"], failures: [conn], engineAnswers: 0 };
  const frames = s.bad.map((m) => ({ bytes: m.build(), binary: m.binary }));
  // A text frame that is not UTF-8 is a protocol error (RFC 6455 §8.1): the server may close
  // the connection (1007) instead of answering; the good message then needs a new one.
  const mayClose = frames.some((f) => !f.binary && !isUtf8(f.bytes));
  for (const f of frames) conn.ws.send(f.bytes, { binary: f.binary });
  if (s.abort) {
    conn.ws.terminate();
    outcomes.push("ws_aborted");
    conn = await connect(port, agentKey, timeoutMs);
    if (typeof conn === "string")
      return { outcomes, failures: [`after an aborted connection: ${conn}`], engineAnswers: 0 };
  } else {
    const c = conn;
    const answered = await until(
      c,
      () => c.frames.length + c.failures.length >= s.bad.length,
      timeoutMs,
    );
    for (const f of c.frames) outcomes.push(f.error !== undefined ? "ws_error" : "ws_ack");
    if (!answered && mayClose && c.closed) {
      outcomes.push("ws_closed_invalid_utf8");
      conn = await connect(port, agentKey, timeoutMs);
      if (typeof conn === "string")
        return { outcomes, failures: [`after an invalid UTF-8 close: ${conn}`], engineAnswers: 0 };
    } else if (!answered) {
      failures.push(
        `${c.frames.length} answers to ${s.bad.length} bad messages (closed: ${c.closed})`,
      );
    }
  }
  const c = conn;
  const before = c.frames.length;
  c.ws.send(JSON.stringify(s.good));
  const acked = () =>
    c.frames.slice(before).some((f) => f.seq === s.good.seq && f.error === undefined);
  if (!(await until(c, acked, timeoutMs))) {
    const got = c.frames.slice(before).map((f) => JSON.stringify(f).slice(0, 200));
    failures.push(`good message not acked (closed: ${c.closed}): ${got.join(" ")}`);
  } else outcomes.push("ws_good_ack");
  failures.push(...c.failures);
  c.ws.close();
  return { outcomes, failures, engineAnswers: 0 };
}

/** The script's frames, for the failure report. */
export function wsBytes(s: WsScript): Buffer {
  const parts = s.bad.map((m) => m.build().subarray(0, 400));
  return Buffer.concat(parts.flatMap((p) => [p, Buffer.from(" | ")]));
}
