// Canonical JSON: one byte-exact text per JSON value, so equal values hash equally
// (assertion ids, consensus grouping by value, gold-standard comparison).
//
// Rules (a subset of RFC 8785 / JCS that is exact for everything JSON.parse produces):
// - object keys sorted by UTF-16 code units (JavaScript's default string order), no whitespace;
// - numbers as ECMAScript Number→String (what JSON.stringify prints; -0 prints as 0);
// - strings as JSON.stringify prints them (lone surrogates come out as \u escapes);
// - only null, booleans, finite numbers, strings, arrays and plain objects are accepted.
// Anything else (undefined, functions, symbols, BigInt, NaN/±Infinity, Dates, Maps, class
// instances, sparse array holes, cycles or nesting deeper than the bound) throws, rather than
// being silently dropped or converted the way JSON.stringify would.

import { MAX_JSON_DEPTH } from "./limits.js";

export class CanonicalJsonError extends Error {
  /** JSON pointer of the offending value ("" = the root). */
  readonly path: string;
  constructor(message: string, path: string) {
    super(path === "" ? message : `${message} at ${path}`);
    this.name = "CanonicalJsonError";
    this.path = path;
  }
}

function pointerToken(key: string | number): string {
  return String(key).replace(/~/g, "~0").replace(/\//g, "~1");
}

function isPlainObject(value: object): boolean {
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function write(value: unknown, depth: number, maxDepth: number, path: string, out: string[]): void {
  switch (typeof value) {
    case "string":
      out.push(JSON.stringify(value));
      return;
    case "boolean":
      out.push(value ? "true" : "false");
      return;
    case "number":
      if (!Number.isFinite(value)) {
        throw new CanonicalJsonError(`${value} is not a JSON number`, path);
      }
      out.push(JSON.stringify(value));
      return;
    case "object": {
      if (value === null) {
        out.push("null");
        return;
      }
      if (depth >= maxDepth) {
        throw new CanonicalJsonError(`value is nested deeper than ${maxDepth} levels`, path);
      }
      if (Array.isArray(value)) {
        out.push("[");
        for (let i = 0; i < value.length; i++) {
          if (i > 0) out.push(",");
          if (!(i in value)) throw new CanonicalJsonError("sparse array hole", `${path}/${i}`);
          write(value[i], depth + 1, maxDepth, `${path}/${i}`, out);
        }
        out.push("]");
        return;
      }
      if (!isPlainObject(value)) {
        const name = (value as { constructor?: { name?: string } }).constructor?.name ?? "object";
        throw new CanonicalJsonError(`${name} is not a plain JSON object`, path);
      }
      const obj = value as Record<string, unknown>;
      const keys = Object.keys(obj).sort();
      out.push("{");
      for (let i = 0; i < keys.length; i++) {
        const key = keys[i] as string;
        if (i > 0) out.push(",");
        out.push(JSON.stringify(key), ":");
        write(obj[key], depth + 1, maxDepth, `${path}/${pointerToken(key)}`, out);
      }
      out.push("}");
      return;
    }
    default:
      throw new CanonicalJsonError(`${typeof value} is not a JSON value`, path);
  }
}

/**
 * The canonical JSON text of `value`. Throws CanonicalJsonError for non-JSON values or
 * nesting deeper than `maxDepth` containers (default MAX_JSON_DEPTH).
 */
export function canonicalJson(value: unknown, maxDepth: number = MAX_JSON_DEPTH): string {
  const out: string[] = [];
  write(value, 0, maxDepth, "", out);
  return out.join("");
}

/**
 * Nesting depth of a JSON value: scalars are 0, `[]`/`{}` are 1, `[[1]]` is 2.
 * Iterative (explicit stack) so a hostile, very deep value cannot overflow the call stack.
 * Exact up to `stopAt`; beyond it returns stopAt + 1, which bounds the work and also makes a
 * cyclic object terminate (it reads as "too deep").
 */
export function jsonDepth(value: unknown, stopAt: number = 1024): number {
  let max = 0;
  const stack: Array<{ v: unknown; d: number }> = [{ v: value, d: 0 }];
  while (stack.length > 0) {
    const { v, d } = stack.pop() as { v: unknown; d: number };
    if (v === null || typeof v !== "object") continue;
    const depth = d + 1;
    if (depth > max) {
      max = depth;
      if (max > stopAt) return stopAt + 1;
    }
    const children = Array.isArray(v) ? v : Object.values(v as Record<string, unknown>);
    for (const child of children) {
      if (child !== null && typeof child === "object") stack.push({ v: child, d: depth });
    }
  }
  return max;
}

/**
 * Nesting depth of JSON *text*, found by a linear scan that skips string contents.
 * Used before JSON.parse so a hostile body cannot make the parser or later recursive code
 * walk thousands of levels. Returns as soon as `limit` is exceeded (value limit + 1).
 * Malformed text gives some number; JSON.parse reports the actual syntax error afterwards.
 */
export function jsonTextDepth(text: string, limit: number): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c /* \ */) i++;
      else if (c === 0x22 /* " */) inString = false;
      continue;
    }
    if (c === 0x22) inString = true;
    else if (c === 0x5b /* [ */ || c === 0x7b /* { */) {
      depth++;
      if (depth > max) {
        max = depth;
        if (max > limit) return limit + 1;
      }
    } else if (c === 0x5d /* ] */ || c === 0x7d /* } */) depth--;
  }
  return max;
}
