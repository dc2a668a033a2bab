// Checks after each restart of the server crash loop (server_crash_harness.ts): every
// acknowledged write readable with the LSN and shard its ack reported, stored once; every
// acknowledged retraction, vote and supersession still in force; per shard, the LSNs of
// everything stored (writes, retractions, votes) run 1..durable LSN without repeat, a gap
// only where a retraction landed whose answer the crash swallowed (its LSN no answer reported).
import type { ServerProcess } from "../helpers/server_process.js";
import type { StateChangeLog } from "./state_changes.js";

const REQUEST_TIMEOUT_MS = 30_000;
const VERIFY_CONCURRENCY = 16;
const PAGE_LIMIT = 1000;

export interface Acked {
  id: string;
  concept: string;
  lsn: number;
  shard: number;
  /** Iteration that acked it (history is re-checked for the newest ones every iteration). */
  iteration: number;
}

export async function http(
  baseUrl: string,
  key: string,
  method: string,
  urlPath: string,
  body?: unknown,
): Promise<{ status: number; json: unknown }> {
  const res = await fetch(baseUrl + urlPath, {
    method,
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  });
  const text = await res.text();
  let json: unknown = null;
  try {
    json = JSON.parse(text);
  } catch {
    json = text;
  }
  return { status: res.status, json };
}

export async function pool<T>(
  items: readonly T[],
  n: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: n }, async () => {
      while (next < items.length) await fn(items[next++] as T);
    }),
  );
}

/** Distinct problems over all verifications (an id lost once stays lost; count it once). */
export interface Seen {
  lost: Set<string>;
  duplicated: Set<string>;
  lsnMismatches: Set<string>;
  gaps: number;
  tornTails: number;
  /** Retractions acknowledged (or found landed) that a restart undid. */
  retractsLost: Set<string>;
  /** Votes acknowledged that a restart undid or changed. */
  votesLost: Set<string>;
  /** Supersessions acknowledged that a restart undid. */
  supersedesLost: Set<string>;
}

export interface Verification {
  lost: number;
  duplicated: number;
  gaps: number;
  tornTails: number;
  maxLsn: number[];
  problems: string[];
}

/** Checks every acked id; the history of items acked in `fromIteration` or later. */
export async function verify(
  server: ServerProcess,
  key: string,
  acked: Map<string, Acked>,
  changes: StateChangeLog,
  fromIteration: number,
  seen: Seen,
  full: boolean,
): Promise<Verification> {
  const out: Verification = {
    lost: 0,
    duplicated: 0,
    gaps: 0,
    tornTails: 0,
    maxLsn: [],
    problems: [],
  };
  const health = await http(server.baseUrl, key, "GET", "/v1/health");
  const shardInfo = (
    health.json as {
      shards: Array<{
        shard: number;
        status: string;
        last_lsn: number;
        recovery: { torn_tail_truncations: number };
      }>;
    }
  ).shards;
  if (health.status !== 200)
    out.problems.push(`health ${health.status}: ${JSON.stringify(health.json).slice(0, 300)}`);
  for (const s of shardInfo) out.tornTails += s.recovery?.torn_tail_truncations ?? 0;
  seen.tornTails += out.tornTails;

  // Every active assertion, via the subtree lens (a concept holds one assertion, or two when
  // the first was superseded).
  const stored = new Map<string, { lsn: number; shard: number; concept: string }>();
  let cursor: string | null = null;
  for (let page = 0; full && page < 100_000; page++) {
    const q: string = `/v1/query?concept=crash/*&limit=${PAGE_LIMIT}${cursor ? `&cursor=${cursor}` : ""}`;
    const res = await http(server.baseUrl, key, "GET", q);
    if (res.status !== 200) {
      out.problems.push(`subtree query ${res.status}: ${JSON.stringify(res.json).slice(0, 300)}`);
      break;
    }
    const body = res.json as {
      items: Array<{ id: string; lsn: number; shard: number; concept: string }>;
      next_cursor: string | null;
    };
    for (const it of body.items) {
      if (stored.has(it.id)) out.problems.push(`subtree listed ${it.id} twice`);
      stored.set(it.id, { lsn: it.lsn, shard: it.shard, concept: it.concept });
    }
    cursor = body.next_cursor;
    if (cursor === null) break;
  }

  // State changes: a full pass checks every one; in between only those without an answer
  // (at most one per client), so long loops do not grow quadratically.
  // Every retraction acknowledged (or found landed) is still in force; of those without an
  // answer yet, the ones that landed hold an LSN no answer reported.
  const unknownLsns: number[] = [];
  const retractedNow = new Set([...changes.retracted.keys(), ...changes.retractedUnanswered]);
  const targets = full
    ? [...changes.retracted.keys(), ...changes.retractedUnanswered, ...changes.retractsPending]
    : [...changes.retractsPending];
  await pool(targets, VERIFY_CONCURRENCY, async (id) => {
    const res = await http(server.baseUrl, key, "GET", `/v1/assertions/${id}`);
    const status = (res.json as { status?: string }).status;
    const shard = acked.get(id)?.shard ?? -1;
    if (changes.retractsPending.has(id)) {
      if (status === "retracted") {
        retractedNow.add(id);
        unknownLsns[shard] = (unknownLsns[shard] ?? 0) + 1;
      }
      return;
    }
    if (changes.retractedUnanswered.has(id)) unknownLsns[shard] = (unknownLsns[shard] ?? 0) + 1;
    if (res.status !== 200 || status !== "retracted") {
      seen.retractsLost.add(id);
      out.problems.push(`RETRACTION LOST: ${id} is ${status ?? `GET ${res.status}`}`);
    }
  });

  // Every acknowledged vote is listed in the target's provenance, as acknowledged; a vote
  // without an answer is there or not, and when there its LSN is known from the listing.
  const voteLsns: Array<{ shard: number; lsn: number }> = [];
  const voteTargets = full
    ? [...changes.voted.keys(), ...changes.votesUnanswered.keys()]
    : [...changes.votesUnanswered.keys()];
  await pool(voteTargets, VERIFY_CONCURRENCY, async (id) => {
    const res = await http(server.baseUrl, key, "GET", `/v1/source/provenance?assertion_id=${id}`);
    const votes = (res.json as { votes?: Array<{ voter: string; vote: string; lsn: number }> })
      .votes;
    const mine = votes?.find((v) => v.voter === changes.voter);
    const shard = acked.get(id)?.shard ?? -1;
    const expected = changes.voted.get(id);
    if (expected === undefined) {
      if (mine !== undefined) voteLsns.push({ shard, lsn: mine.lsn });
      return;
    }
    if (res.status !== 200 || mine?.vote !== expected.vote || mine.lsn !== expected.lsn) {
      seen.votesLost.add(id);
      out.problems.push(
        `VOTE LOST: ${id} acked ${expected.vote} at LSN ${expected.lsn}, provenance ${res.status} ${JSON.stringify(mine ?? null)}`,
      );
      return;
    }
    voteLsns.push({ shard, lsn: expected.lsn });
  });

  // Every acknowledged supersession holds: the old assertion points at the new one, which is
  // active at its acknowledged LSN. One without an answer yet shows on the old assertion.
  const supersededNow = new Set(changes.superseded.keys());
  const supersedeTargets = full
    ? [...changes.superseded.keys(), ...changes.supersedesPending]
    : [...changes.supersedesPending];
  await pool(supersedeTargets, VERIFY_CONCURRENCY, async (id) => {
    const old = await http(server.baseUrl, key, "GET", `/v1/assertions/${id}`);
    const oldBody = old.json as { status?: string; superseded_by?: string | null };
    const expected = changes.superseded.get(id);
    if (expected === undefined) {
      if (oldBody.status === "superseded") supersededNow.add(id);
      return;
    }
    const replacing = await http(server.baseUrl, key, "GET", `/v1/assertions/${expected.id}`);
    const newBody = replacing.json as { status?: string; lsn?: number };
    if (
      oldBody.status !== "superseded" ||
      oldBody.superseded_by !== expected.id ||
      newBody.status !== "active" ||
      newBody.lsn !== expected.lsn
    ) {
      seen.supersedesLost.add(id);
      out.problems.push(
        `SUPERSESSION LOST: ${id} is ${oldBody.status ?? old.status} (by ${oldBody.superseded_by}), ` +
          `${expected.id} is ${newBody.status ?? replacing.status} at LSN ${newBody.lsn} (acked ${expected.lsn})`,
      );
    }
  });
  /** Acknowledged writes the subtree (active assertions only) no longer lists. */
  const replacedNow = new Set([...retractedNow, ...supersededNow]);

  const missing: Acked[] = [];
  for (const a of acked.values()) {
    if (!full && a.iteration < fromIteration) continue; // checked by an earlier full pass
    const s = stored.get(a.id);
    // The subtree lists the latest active assertion of each concept: not a retracted or
    // superseded one.
    if (s === undefined) {
      if (!(full && replacedNow.has(a.id))) missing.push(a);
    } else if (replacedNow.has(a.id)) {
      (retractedNow.has(a.id) ? seen.retractsLost : seen.supersedesLost).add(a.id);
      out.problems.push(`${a.id}: retracted or superseded, but listed as active`);
    } else if (s.lsn !== a.lsn || s.shard !== a.shard) {
      seen.lsnMismatches.add(a.id);
      out.problems.push(`${a.id}: acked lsn ${a.shard}:${a.lsn}, stored ${s.shard}:${s.lsn}`);
    }
  }
  await pool(missing, VERIFY_CONCURRENCY, async (a) => {
    const res = await http(server.baseUrl, key, "GET", `/v1/assertions/${a.id}`);
    if (res.status !== 200) {
      out.lost++;
      seen.lost.add(a.id);
      out.problems.push(
        `LOST ${a.id} (${a.concept}, acked at ${a.shard}:${a.lsn}): GET ${res.status}`,
      );
    } else if (full) {
      out.problems.push(`${a.id} readable by id but missing from the subtree query`);
    } else {
      const got = res.json as { lsn?: number; shard?: number };
      if (got.lsn !== a.lsn || got.shard !== a.shard) {
        seen.lsnMismatches.add(a.id);
        out.problems.push(`${a.id}: acked lsn ${a.shard}:${a.lsn}, stored ${got.shard}:${got.lsn}`);
      }
    }
  });

  const recent = [...acked.values()].filter((a) => a.iteration >= fromIteration);
  await pool(recent, VERIFY_CONCURRENCY, async (a) => {
    const res = await http(
      server.baseUrl,
      key,
      "GET",
      `/v1/query?concept=${a.concept}&lens=history`,
    );
    const items = (res.json as { items?: Array<{ id: string }> }).items ?? [];
    // A superseded write's concept also holds the assertion that replaced it.
    const expectedItems = supersededNow.has(a.id) ? 2 : 1;
    if (
      res.status !== 200 ||
      items.length !== expectedItems ||
      !items.some((it) => it.id === a.id)
    ) {
      out.duplicated++;
      seen.duplicated.add(a.id);
      out.problems.push(`${a.concept}: history ${res.status} with ${items.length} items`);
    }
  });

  // Per shard, the known LSNs (active writes as listed, retracted and superseded writes and
  // retractions as acknowledged, votes as listed) are distinct, at most the durable LSN the shard reports, and leave exactly
  // as many LSNs unaccounted for as retractions landed unanswered.
  if (!full) {
    for (const sh of shardInfo) out.maxLsn.push(sh.last_lsn);
    seen.gaps += out.gaps;
    return out;
  }
  const byShard: number[][] = Array.from({ length: shardInfo.length }, () => []);
  for (const s of stored.values()) byShard[s.shard]?.push(s.lsn);
  for (const id of replacedNow) {
    const a = acked.get(id);
    if (a !== undefined && !stored.has(id)) byShard[a.shard]?.push(a.lsn);
  }
  for (const [id, lsn] of changes.retracted) {
    const shard = acked.get(id)?.shard;
    if (shard !== undefined) byShard[shard]?.push(lsn);
  }
  for (const { shard, lsn } of voteLsns) byShard[shard]?.push(lsn);
  byShard.forEach((lsns, shard) => {
    lsns.sort((a, b) => a - b);
    for (let i = 1; i < lsns.length; i++) {
      if (lsns[i] === lsns[i - 1]) {
        out.gaps++;
        out.problems.push(`shard ${shard}: LSN ${lsns[i]} holds two acknowledged writes`);
        break;
      }
    }
    const max = lsns.length === 0 ? 0 : (lsns[lsns.length - 1] as number);
    out.maxLsn.push(max);
    const durable = shardInfo[shard]?.last_lsn ?? 0;
    const unknown = unknownLsns[shard] ?? 0;
    if (max > durable || durable - lsns.length !== unknown) {
      out.gaps++;
      out.problems.push(
        `shard ${shard}: ${lsns.length} known LSNs up to ${max}, durable LSN ${durable}, ` +
          `${unknown} landed retractions unanswered (the run breaks)`,
      );
    }
  });
  seen.gaps += out.gaps;
  return out;
}
