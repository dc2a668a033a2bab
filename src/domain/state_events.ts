// Records that change the state of existing assertions (votes, retractions, quarantine
// decisions) and source records. Both travel through the owning shard's WAL as compact JSON
// (they are far rarer than assertions, which use FlatBuffers) and are applied to LMDB from
// there, so they are durable, replayed after a crash, and ordered by LSN like everything else.
//
// A supersession is not an event: the new assertion's `supersedes` field carries it, so the
// new claim and the old one's change of status are one WAL record and cannot be torn apart.
import type { AssertionStatusName } from "../store/assertion_codec.js";

export type StatusEvent = {
  k: "retract" | "approve" | "reject" | "supersede";
  target: string;
  /** The target's own LSN (the quarantine index is keyed by it). */
  target_lsn: number;
  actor: string;
  reason: string | null;
  /** supersede: the assertion that replaces the target (an escalation's winner). */
  by?: string;
  at: number;
};

export type StateEvent =
  | { k: "vote"; target: string; actor: string; dir: 1 | -1; weight: number; at: number }
  | StatusEvent;

export type StatusEventKind = "retract" | "approve" | "reject" | "supersede";

/** The status an assertion has after a status event. */
export const STATUS_AFTER: Readonly<Record<StatusEventKind, AssertionStatusName>> = {
  retract: "retracted",
  approve: "active",
  reject: "rejected",
  supersede: "superseded",
};

/** The statuses each event may be applied to (checked by the owning shard before the WAL). */
export const ALLOWED_FROM: Readonly<Record<StatusEventKind, readonly AssertionStatusName[]>> = {
  retract: ["active", "quarantined"],
  approve: ["quarantined"],
  reject: ["quarantined"],
  supersede: ["active"],
};

export interface SourceRecord {
  id: string;
  uri: string;
  title: string | null;
  kind: string | null;
  content_hash: string | null;
  published_at: number | null;
  derived_from: string[];
  created_by: string;
  created_at: number;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

export function encodeJsonRecord(value: StateEvent | SourceRecord): Uint8Array {
  return encoder.encode(JSON.stringify(value));
}

export class CorruptEventError extends Error {
  readonly code = "corrupt_record";
}

function parse(bytes: Uint8Array, what: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(decoder.decode(bytes));
  } catch (err) {
    throw new CorruptEventError(`${what} is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value))
    throw new CorruptEventError(`${what} is not a JSON object`);
  return value as Record<string, unknown>;
}

/** Decodes a WAL event payload; throws CorruptEventError when it is not one we wrote. */
export function decodeStateEvent(bytes: Uint8Array): StateEvent {
  const v = parse(bytes, "state event");
  const ok =
    typeof v.target === "string" &&
    typeof v.actor === "string" &&
    typeof v.at === "number" &&
    (v.k === "vote"
      ? (v.dir === 1 || v.dir === -1) && typeof v.weight === "number"
      : (v.k === "retract" || v.k === "approve" || v.k === "reject" || v.k === "supersede") &&
        typeof v.target_lsn === "number" &&
        (v.k !== "supersede" || typeof v.by === "string") &&
        (v.reason === null || typeof v.reason === "string"));
  if (!ok) throw new CorruptEventError(`unknown or malformed state event ${JSON.stringify(v.k)}`);
  return v as unknown as StateEvent;
}

export function decodeSourceRecord(bytes: Uint8Array): SourceRecord {
  const v = parse(bytes, "source record");
  if (typeof v.id !== "string" || typeof v.uri !== "string" || !Array.isArray(v.derived_from))
    throw new CorruptEventError("malformed source record");
  return v as unknown as SourceRecord;
}
