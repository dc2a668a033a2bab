// Reads the shard answers for lenses, provenance and sources. Live reads first wait for
// LMDB to commit acknowledged status changes (stateBarrier); reads at an epoch boundary wait
// for every applied write (settled), since they read LMDB only.
import { MAX_LENS_SCAN_ASSERTIONS, MAX_VOTES_PER_ASSERTION } from "../domain/limits.js";
import type { AssertionRecord } from "../store/assertion_codec.js";
import {
  activeAsOf,
  conceptsUnder,
  historyAsOf,
  historyUnderAsOf,
  LIVE_LSN,
  latestAsOf,
  latestUnderAsOf,
  recordAsOf,
  statusAsOf,
  tallyVotes,
  votesAsOf,
} from "../store/state_reads.js";
import type {
  ActiveItem,
  ActiveList,
  AgentAssertion,
  HeldItem,
  LensRequest,
  RenderedPage,
} from "./protocol.js";
import { renderAssertion } from "./render.js";
import type { ShardCore } from "./shard_core.js";
import { facts } from "./state_ops.js";

/** Most active assertions per concept a subtree consensus looks at. */
const MAX_ACTIVE_PER_CONCEPT_IN_SUBTREE = 100;

function activeItem(
  core: ShardCore,
  rec: AssertionRecord,
  asOfLsn: number,
  render: boolean,
): ActiveItem {
  const tally = tallyVotes(core.store.dbs, rec.id, asOfLsn, MAX_VOTES_PER_ASSERTION);
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
  core: ShardCore,
  concept: string,
  asOfLsn: number,
  limit: number,
  render: boolean,
): ActiveList {
  const { items, truncated } = activeAsOf(
    core.store.dbs,
    concept,
    asOfLsn,
    limit,
    MAX_LENS_SCAN_ASSERTIONS,
  );
  return { concept, items: items.map((r) => activeItem(core, r, asOfLsn, render)), truncated };
}

async function barrier(core: ShardCore, asOfLsn: number | null): Promise<number> {
  if (asOfLsn === null) {
    await core.stateBarrier();
    await core.settled();
    return LIVE_LSN;
  }
  await core.settled();
  return asOfLsn;
}

export async function handleLens(core: ShardCore, msg: LensRequest): Promise<unknown> {
  switch (msg.t) {
    case "lens_latest": {
      if (msg.asOfLsn === null) {
        await core.stateBarrier();
        const rec = core.latest(msg.concept);
        return rec === undefined ? null : renderAssertion(rec);
      }
      await core.settled();
      const rec = latestAsOf(core.store.dbs, msg.concept, msg.asOfLsn);
      return rec === undefined ? null : renderAssertion(rec);
    }
    case "lens_history": {
      const asOf = await barrier(core, msg.asOfLsn);
      const page = historyAsOf(core.store.dbs, msg.concept, asOf, msg.limit, msg.cursor);
      const out: RenderedPage = {
        items: page.items.map(renderAssertion),
        keys: [],
        nextCursor: page.nextCursor,
      };
      return out;
    }
    case "lens_active": {
      const asOf = await barrier(core, msg.asOfLsn);
      return activeList(core, msg.concept, asOf, msg.limit, msg.render);
    }
    case "lens_under": {
      const asOf = await barrier(core, msg.asOfLsn);
      if (msg.mode === "history") {
        const after = msg.after === null ? null : { concept: msg.after, lsn: msg.afterLsn ?? 0 };
        const { items, lastScanned } = historyUnderAsOf(
          core.store.dbs,
          msg.prefix,
          after,
          msg.limit,
          asOf,
        );
        return {
          items: items.map(renderAssertion),
          keys: items.map((r) => r.concept),
          lsns: items.map((r) => r.lsn),
          lastScanned,
        };
      }
      if (msg.mode === "latest") {
        const { items, lastScanned } = latestUnderAsOf(
          core.store.dbs,
          msg.prefix,
          msg.after,
          msg.limit,
          asOf,
        );
        return {
          items: items.map(renderAssertion),
          keys: items.map((r) => r.concept),
          lastScanned: items.length < msg.limit ? lastScanned : null,
        };
      }
      const concepts = conceptsUnder(core.store.dbs, msg.prefix, msg.after, msg.limit);
      const lists: ActiveList[] = [];
      for (const concept of concepts) {
        const list = activeList(core, concept, asOf, MAX_ACTIVE_PER_CONCEPT_IN_SUBTREE, true);
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
  }
}

/** get / record / votes / source_get. */
export async function handleRead(
  core: ShardCore,
  msg:
    | { t: "get"; id: string }
    | { t: "record"; id: string }
    | { t: "votes"; id: string; asOfLsn: number | null; limit: number }
    | { t: "source_get"; id: string }
    | {
        t: "held_list";
        after: number | null;
        limit: number;
        agent: string | null;
        concept: string | null;
      }
    | { t: "agent_assertions"; agent: string; limit: number },
): Promise<unknown> {
  switch (msg.t) {
    case "get": {
      await core.stateBarrier();
      const rec = core.getAssertion(msg.id);
      return rec === undefined ? null : renderAssertion(rec);
    }
    case "record": {
      await core.stateBarrier();
      const rec = core.getAssertion(msg.id);
      return rec === undefined ? null : facts(rec);
    }
    case "votes": {
      const asOf = await barrier(core, msg.asOfLsn);
      if (recordAsOf(core.store.dbs, msg.id, asOf) === undefined) return null;
      const { byVoter, truncated } = votesAsOf(
        core.store.dbs,
        msg.id,
        asOf,
        MAX_VOTES_PER_ASSERTION,
      );
      const votes = [...byVoter.values()].sort((a, b) => b.lsn - a.lsn).slice(0, msg.limit);
      return { votes, truncated: truncated || byVoter.size > msg.limit };
    }
    case "source_get": {
      await core.stateBarrier();
      await core.settled();
      return core.store.dbs.sources.get(msg.id) ?? null;
    }
    case "held_list": {
      await core.stateBarrier();
      await core.settled();
      return heldList(core, msg.after, msg.limit, msg.agent, msg.concept);
    }
    case "agent_assertions": {
      await core.stateBarrier();
      await core.settled();
      const page = core.store.byAgent(msg.agent, { limit: msg.limit });
      const out: AgentAssertion[] = page.items.map((r) => {
        const s = statusAsOf(core.store.dbs, r, LIVE_LSN);
        return { id: r.id, concept: r.concept, valueJson: r.valueJson, status: s.status };
      });
      return out;
    }
  }
}

/** Most held entries one page request looks at (filters may skip many). */
const MAX_HELD_SCAN = 100_000;

function heldList(
  core: ShardCore,
  after: number | null,
  limit: number,
  agent: string | null,
  concept: string | null,
): { items: HeldItem[]; exhausted: boolean; lastScanned: number | null } {
  const items: HeldItem[] = [];
  let scanned = 0;
  let lastScanned: number | null = null;
  for (const { key, value: id } of core.store.dbs.held.getRange({
    start: after ?? -1,
    exclusiveStart: after !== null,
  })) {
    if (++scanned > MAX_HELD_SCAN) return { items, exhausted: false, lastScanned };
    lastScanned = key;
    const rec = recordAsOf(core.store.dbs, id, LIVE_LSN);
    if (rec === undefined || rec.status !== "quarantined") continue;
    if (agent !== null && rec.agent !== agent) continue;
    if (concept !== null && rec.concept !== concept) continue;
    items.push({ json: renderAssertion(rec), lsn: key, recordedAtMs: rec.recordedAtMs });
    if (items.length >= limit) return { items, exhausted: false, lastScanned };
  }
  return { items, exhausted: true, lastScanned };
}
