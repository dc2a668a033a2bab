// Concept suggestions (GET /v1/concepts/suggest): how close a known concept path or alias is to
// what a client typed. Pure functions, used by every shard thread on its own concepts and by
// the main thread on the alias snapshot, so both rank with exactly the same numbers.
//
// score(q, c) = max(edit, TOKEN_WEIGHT × token), rounded to SCORE_DECIMALS, in [0, 1]:
//   edit  = 1 − osa(q, c) / max(|q|, |c|)         typos, missing/extra letters, transpositions
//   token = fuzzy token-set similarity            reordered words ("population/paris/cities")
// where osa is the optimal-string-alignment Damerau-Levenshtein distance (insert, delete,
// substitute, swap two adjacent characters: each costs 1) and tokens are the words of a path
// split on "/", "_", "-", "." (and whitespace in the query). Two tokens match with their own
// edit similarity when it is at least TOKEN_MATCH_MIN; the token score is the mean, over the
// tokens of both sides, of each token's best match on the other side (a symmetric fuzzy Dice).
// TOKEN_WEIGHT < 1 ranks an exact path above the same words in another order, and a one-letter
// typo in a long path above a reordering. Candidates scoring below MIN_SUGGEST_SCORE are dropped.
// Ranking: score descending, then path ascending (byte order), so answers are deterministic.

import { MAX_SUGGEST_QUERY_CHARS } from "./limits.js";

export const MIN_SUGGEST_SCORE = 0.5;
export const TOKEN_WEIGHT = 0.9;
export const TOKEN_MATCH_MIN = 0.7;
export const SCORE_DECIMALS = 4;
/** Tokens considered per side; keeps the token matrix (and its cost) bounded. */
export const MAX_SUGGEST_TOKENS = 24;

export interface ScoredPath {
  path: string;
  score: number;
}

export type SuggestQueryResult =
  | { ok: true; q: string }
  | { ok: false; code: "missing_query" | "query_too_long"; message: string };

/**
 * The query as it is compared: NFC, lowercase, trimmed, without leading/trailing "/". Unlike a
 * concept path it may contain anything (a typo is the point), only its length is bounded.
 */
export function normalizeSuggestQuery(raw: string | null): SuggestQueryResult {
  if (raw === null || raw.trim() === "") {
    return { ok: false, code: "missing_query", message: "The q query parameter is required." };
  }
  if (raw.length > 4 * MAX_SUGGEST_QUERY_CHARS) {
    return tooLong(raw.length);
  }
  const q = raw
    .normalize("NFC")
    .toLowerCase()
    .trim()
    .replace(/^\/+|\/+$/g, "");
  if (q.length === 0) return { ok: false, code: "missing_query", message: "q is empty." };
  if (q.length > MAX_SUGGEST_QUERY_CHARS) return tooLong(q.length);
  return { ok: true, q };
}

function tooLong(chars: number): SuggestQueryResult {
  return {
    ok: false,
    code: "query_too_long",
    message: `q is ${chars} characters long; at most ${MAX_SUGGEST_QUERY_CHARS} are allowed.`,
  };
}

const TOKEN_SPLIT = /[/_.\-\s]+/;

/** The words of a path or query, at most MAX_SUGGEST_TOKENS, empty ones dropped. */
export function tokenize(s: string): string[] {
  const out: string[] = [];
  for (const t of s.split(TOKEN_SPLIT)) {
    if (t.length === 0) continue;
    out.push(t);
    if (out.length === MAX_SUGGEST_TOKENS) break;
  }
  return out;
}

// Three reused rows: osa() runs for every candidate of every scan, so no allocation per call.
let rowPrev2 = new Int32Array(0);
let rowPrev = new Int32Array(0);
let rowCur = new Int32Array(0);

/**
 * Optimal-string-alignment distance between a and b, or maxDistance + 1 as soon as it is
 * certain to exceed maxDistance (length gap, or a whole row above the bound).
 */
export function osaDistance(a: string, b: string, maxDistance: number): number {
  const n = a.length;
  const m = b.length;
  if (Math.abs(n - m) > maxDistance) return maxDistance + 1;
  if (n === 0 || m === 0) return Math.max(n, m);
  if (rowCur.length < m + 1) {
    rowPrev2 = new Int32Array(m + 1);
    rowPrev = new Int32Array(m + 1);
    rowCur = new Int32Array(m + 1);
  }
  let p2 = rowPrev2;
  let p1 = rowPrev;
  let cur = rowCur;
  for (let j = 0; j <= m; j++) p1[j] = j;
  for (let i = 1; i <= n; i++) {
    const ai = a.charCodeAt(i - 1);
    const aPrev = i > 1 ? a.charCodeAt(i - 2) : -1;
    cur[0] = i;
    let rowMin = i;
    let left = i; // cur[j - 1]
    let diag = i - 1; // p1[j - 1]
    for (let j = 1; j <= m; j++) {
      const bj = b.charCodeAt(j - 1);
      const up = p1[j] as number;
      let d = ai === bj ? diag : diag + 1;
      if (up + 1 < d) d = up + 1;
      if (left + 1 < d) d = left + 1;
      if (ai !== bj && j > 1 && aPrev === bj && ai === b.charCodeAt(j - 2)) {
        const swap = (p2[j - 2] as number) + 1;
        if (swap < d) d = swap;
      }
      cur[j] = d;
      left = d;
      diag = up;
      if (d < rowMin) rowMin = d;
    }
    if (rowMin > maxDistance) return maxDistance + 1;
    const t = p2;
    p2 = p1;
    p1 = cur;
    cur = t;
  }
  return p1[m] as number;
}

/** Longest query the bit-parallel distance handles (one 32-bit word per column). */
export const BIT_PARALLEL_MAX_CHARS = 32;

/** Per-character position masks of a pattern of at most 32 characters. */
export interface PatternMasks {
  length: number;
  ascii: Int32Array;
  other: Map<number, number>;
}

export function patternMasks(pattern: string): PatternMasks {
  if (pattern.length > BIT_PARALLEL_MAX_CHARS) {
    throw new RangeError(`pattern longer than ${BIT_PARALLEL_MAX_CHARS} characters`);
  }
  const ascii = new Int32Array(128);
  const other = new Map<number, number>();
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern.charCodeAt(i);
    if (c < 128) ascii[c] = (ascii[c] as number) | (1 << i);
    else other.set(c, (other.get(c) ?? 0) | (1 << i));
  }
  return { length: pattern.length, ascii, other };
}

/**
 * The same optimal-string-alignment distance as osaDistance, in O(|text|) word operations:
 * Hyyrö's bit-vector algorithm with the transposition term ("A bit-vector algorithm for
 * computing Levenshtein and Damerau edit distances", 2003). The pattern is the query; the
 * property test in test/concepts_domain.test.ts checks it against the table above.
 */
export function osaDistanceBits(p: PatternMasks, text: string): number {
  const m = p.length;
  if (m === 0) return text.length;
  const high = 1 << (m - 1);
  let vp = m === 32 ? -1 : (1 << m) - 1;
  let vn = 0;
  let d0Prev = 0;
  let pmPrev = 0;
  let score = m;
  for (let j = 0; j < text.length; j++) {
    const c = text.charCodeAt(j);
    const pm = c < 128 ? (p.ascii[c] as number) : (p.other.get(c) ?? 0);
    const tr = (((~d0Prev & pm) << 1) & pmPrev) | 0;
    // The sum may carry past bit 31; `^` truncates it back to 32 bits exactly.
    const d0 = (((pm & vp) + vp) ^ vp) | pm | vn | tr | 0;
    let hp = vn | ~(d0 | vp);
    let hn = d0 & vp;
    if ((hp & high) !== 0) score++;
    else if ((hn & high) !== 0) score--;
    hp = (hp << 1) | 1;
    hn = hn << 1;
    vp = hn | ~(d0 | hp);
    vn = hp & d0;
    d0Prev = d0;
    pmPrev = pm;
  }
  return score;
}

/** 1 − distance / longer length, or 0 when below `min` (computed with that cutoff). */
export function editSimilarity(a: string, b: string, min: number): number {
  if (a === b) return 1;
  const longer = Math.max(a.length, b.length);
  const maxDistance = Math.floor((1 - min) * longer + 1e-9);
  const d = osaDistance(a, b, maxDistance);
  if (d > maxDistance) return 0;
  return 1 - d / longer;
}

/** Symmetric fuzzy token-set similarity in [0, 1] (see the file header). */
export function tokenSimilarity(qTokens: readonly string[], cTokens: readonly string[]): number {
  const nq = qTokens.length;
  const nc = cTokens.length;
  if (nq === 0 || nc === 0) return 0;
  const bestC = new Float64Array(nc);
  let sumQ = 0;
  for (let i = 0; i < nq; i++) {
    const t = qTokens[i] as string;
    let best = 0;
    for (let j = 0; j < nc; j++) {
      const s = editSimilarity(t, cTokens[j] as string, TOKEN_MATCH_MIN);
      if (s > best) best = s;
      if (s > (bestC[j] as number)) bestC[j] = s;
    }
    sumQ += best;
  }
  let sumC = 0;
  for (let j = 0; j < nc; j++) sumC += bestC[j] as number;
  return (sumQ + sumC) / (nq + nc);
}

/** Distinct candidate tokens whose similarities to the query tokens are remembered. */
const MAX_TOKEN_MEMO = 65_536;
/** Character histogram buckets: ASCII, plus one shared bucket for everything else. */
const HIST_BUCKETS = 128;

/**
 * A prepared query: normalize once, score many candidates. Two shortcuts keep a scan cheap
 * without changing any score: a character-histogram lower bound on the edit distance (each
 * edit changes the histogram's L1 distance by at most 2) skips most hopeless candidates before
 * the O(|q|·|c|) distance, and token similarities are memoized per distinct candidate token
 * (real paths reuse few words: "hosts", "prod", "cpu"…).
 */
export class SuggestScorer {
  readonly q: string;
  private readonly qTokens: string[];
  private readonly qHist = new Int32Array(HIST_BUCKETS);
  private readonly diff = new Int32Array(HIST_BUCKETS);
  private readonly tokenMemo = new Map<string, Float64Array>();
  private readonly masks: PatternMasks | null;

  constructor(normalizedQuery: string) {
    this.q = normalizedQuery;
    this.masks =
      normalizedQuery.length <= BIT_PARALLEL_MAX_CHARS ? patternMasks(normalizedQuery) : null;
    this.qTokens = tokenize(normalizedQuery);
    for (let i = 0; i < normalizedQuery.length; i++) {
      const b = Math.min(normalizedQuery.charCodeAt(i), HIST_BUCKETS - 1);
      this.qHist[b] = (this.qHist[b] as number) + 1;
    }
  }

  /** The candidate's score, rounded; 0 when below MIN_SUGGEST_SCORE. */
  score(candidate: string): number {
    if (candidate === this.q) return 1;
    const edit = this.edit(candidate);
    // The token score is at most TOKEN_WEIGHT; skip it when it cannot win.
    let best = edit;
    if (TOKEN_WEIGHT > edit) {
      const token = TOKEN_WEIGHT * this.token(candidate);
      if (token > best) best = token;
    }
    if (best < MIN_SUGGEST_SCORE) return 0;
    return roundScore(best);
  }

  /** editSimilarity(q, candidate, MIN_SUGGEST_SCORE), with the histogram shortcut. */
  private edit(c: string): number {
    const q = this.q;
    const longer = Math.max(q.length, c.length);
    const maxDistance = Math.floor((1 - MIN_SUGGEST_SCORE) * longer + 1e-9);
    if (Math.abs(q.length - c.length) > maxDistance) return 0;
    const diff = this.diff;
    diff.set(this.qHist);
    for (let i = 0; i < c.length; i++) {
      const b = Math.min(c.charCodeAt(i), HIST_BUCKETS - 1);
      diff[b] = (diff[b] as number) - 1;
    }
    let l1 = 0;
    for (let i = 0; i < HIST_BUCKETS; i++) {
      const v = diff[i] as number;
      l1 += v < 0 ? -v : v;
    }
    if (Math.ceil(l1 / 2) > maxDistance) return 0;
    const d = this.masks !== null ? osaDistanceBits(this.masks, c) : osaDistance(q, c, maxDistance);
    return d > maxDistance ? 0 : 1 - d / longer;
  }

  /** tokenSimilarity(qTokens, tokenize(c)), with per-token memoization. */
  private token(c: string): number {
    const qTokens = this.qTokens;
    const nq = qTokens.length;
    const cTokens = tokenize(c);
    const nc = cTokens.length;
    if (nq === 0 || nc === 0) return 0;
    const bestQ = new Float64Array(nq);
    let sumC = 0;
    for (let j = 0; j < nc; j++) {
      const u = cTokens[j] as string;
      let sims = this.tokenMemo.get(u);
      if (sims === undefined) {
        sims = new Float64Array(nq);
        for (let i = 0; i < nq; i++)
          sims[i] = editSimilarity(qTokens[i] as string, u, TOKEN_MATCH_MIN);
        if (this.tokenMemo.size >= MAX_TOKEN_MEMO) this.tokenMemo.clear();
        this.tokenMemo.set(u, sims);
      }
      let best = 0;
      for (let i = 0; i < nq; i++) {
        const s = sims[i] as number;
        if (s > best) best = s;
        if (s > (bestQ[i] as number)) bestQ[i] = s;
      }
      sumC += best;
    }
    let sumQ = 0;
    for (let i = 0; i < nq; i++) sumQ += bestQ[i] as number;
    return (sumQ + sumC) / (nq + nc);
  }
}

const SCALE = 10 ** SCORE_DECIMALS;
export function roundScore(x: number): number {
  return Math.round(x * SCALE) / SCALE;
}

/** Ranking order: score descending, then path ascending. */
export function compareScored(a: ScoredPath, b: ScoredPath): number {
  if (a.score !== b.score) return b.score - a.score;
  return a.path < b.path ? -1 : a.path > b.path ? 1 : 0;
}

/** The best `k` items offered, in ranking order. Insertion into a sorted array: k ≤ 50. */
export class TopK<T extends ScoredPath> {
  readonly items: T[] = [];
  constructor(readonly k: number) {
    if (!Number.isInteger(k) || k < 1)
      throw new RangeError(`k must be a positive integer, got ${k}`);
  }

  offer(item: T): void {
    const items = this.items;
    if (items.length === this.k && compareScored(item, items[items.length - 1] as T) >= 0) return;
    let i = items.length;
    while (i > 0 && compareScored(item, items[i - 1] as T) < 0) i--;
    items.splice(i, 0, item);
    if (items.length > this.k) items.pop();
  }
}
