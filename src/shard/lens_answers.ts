// The lens answers computed from a shard's LMDB databases alone, as of an LSN: what the shard
// answers once LMDB is current for the read (lens_handlers.ts waits for that), and what the
// main thread answers from its own snapshot when LMDB already holds everything the shard has
// shown (server/shard_reads.ts). One function for both, so the two paths cannot drift.
import { MAX_LENS_SCAN_ASSERTIONS, MAX_VOTES_PER_ASSERTION } from "../domain/limits.js";
import type { AssertionRecord } from "../store/assertion_codec.js";
import type { StateDbs } from "../store/shard_dbs.js";
import {
  activeAsOf,
  conceptsUnder,
  historyAsOf,
  historyUnderAsOf,
  latestUnderAsOf,
  tallyVotes,
} from "../store/state_reads.js";
import type { ActiveItem, ActiveList, LensRequest, RenderedPage } from "./protocol.js";
import { renderAssertion } from "./render.js";

/** Most active assertions per concept a subtree consensus looks at. */
const MAX_ACTIVE_PER_CONCEPT_IN_SUBTREE = 100;

/** A lens request without the shard protocol's request number. */
export type LensQuery = LensRequest extends infer Q
  ? Q extends LensRequest
    ? Omit<Q, "req">
    : never
  : never;

function activeItem(
  dbs: StateDbs,
  rec: AssertionRecord,
  asOfLsn: number,
  render: boolean,
): ActiveItem {
  const tally = tallyVotes(dbs, rec.id, asOfLsn, MAX_VOTES_PER_ASSERTION);
  return {
    json: render ? renderAssertion(rec) : null,
    id: rec.id,
    agent: rec.agent,
    valueJson: rec.valueJson,
    confidence: rec.confidence,
    lsn: rec.lsn,
    voteScore: tally.weighted,
    votesUp: tally.up,
    votesDown: tally.down,
  };
}

function activeList(
  dbs: StateDbs,
  concept: string,
  asOfLsn: number,
  limit: number,
  render: boolean,
): ActiveList {
  // One more than asked for tells whether more exist (docs/semantics.md: `truncated`).
  const found = activeAsOf(dbs, concept, asOfLsn, limit + 1, MAX_LENS_SCAN_ASSERTIONS);
  const items = found.items.length > limit ? found.items.slice(0, limit) : found.items;
  const truncated = found.truncated || found.items.length > limit;
  return { concept, items: items.map((r) => activeItem(dbs, r, asOfLsn, render)), truncated };
}

/** answerLens's answer when `latest` looked at `maxLatestScan` entries without finding one. */
export const SCAN_BOUND_REACHED: unique symbol = Symbol("scan bound reached");

/**
 * The answer to `msg` from LMDB as of `asOfLsn` (LIVE_LSN: everything LMDB holds). A
 * `latest` read looks at up to `maxLatestScan` index entries (the lenses' bound by default);
 * past a smaller bound it answers SCAN_BOUND_REACHED instead of guessing.
 */
export function answerLens(
  dbs: StateDbs,
  msg: LensQuery,
  asOfLsn: number,
  maxLatestScan: number = MAX_LENS_SCAN_ASSERTIONS,
): unknown {
  switch (msg.t) {
    case "lens_latest": {
      const { items, truncated } = activeAsOf(dbs, msg.concept, asOfLsn, 1, maxLatestScan);
      const rec = items[0];
      if (rec === undefined && truncated && maxLatestScan < MAX_LENS_SCAN_ASSERTIONS)
        return SCAN_BOUND_REACHED;
      return rec === undefined ? null : renderAssertion(rec);
    }
    case "lens_history": {
      const page = historyAsOf(dbs, msg.concept, asOfLsn, msg.limit, msg.cursor);
      const out: RenderedPage = {
        items: page.items.map(renderAssertion),
        keys: [],
        nextCursor: page.nextCursor,
      };
      return out;
    }
    case "lens_active":
      return activeList(dbs, msg.concept, asOfLsn, msg.limit, msg.render);
    case "lens_under":
      return answerUnder(dbs, msg, asOfLsn);
  }
}

function answerUnder(
  dbs: StateDbs,
  msg: Extract<LensQuery, { t: "lens_under" }>,
  asOf: number,
): unknown {
  if (msg.mode === "history") {
    const after = msg.after === null ? null : { concept: msg.after, lsn: msg.afterLsn ?? 0 };
    const { items, lastScanned } = historyUnderAsOf(dbs, msg.prefix, after, msg.limit, asOf);
    return {
      items: items.map(renderAssertion),
      keys: items.map((r) => r.concept),
      lsns: items.map((r) => r.lsn),
      lastScanned,
    };
  }
  if (msg.mode === "latest") {
    const { items, lastScanned } = latestUnderAsOf(dbs, msg.prefix, msg.after, msg.limit, asOf);
    return {
      items: items.map(renderAssertion),
      keys: items.map((r) => r.concept),
      lastScanned: items.length < msg.limit ? lastScanned : null,
    };
  }
  const concepts = conceptsUnder(dbs, msg.prefix, msg.after, msg.limit);
  const lists: ActiveList[] = [];
  for (const concept of concepts) {
    const list = activeList(dbs, concept, asOf, MAX_ACTIVE_PER_CONCEPT_IN_SUBTREE, true);
    if (list.items.length > 0) lists.push(list);
  }
  // Concepts without an active assertion still count toward the page, so a page ends at
  // the last concept looked at; `lastScanned` lets the main thread merge shards safely.
  const last = concepts[concepts.length - 1];
  return {
    lists,
    lastScanned: concepts.length === msg.limit && last !== undefined ? last : null,
  };
}
