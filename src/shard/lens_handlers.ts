// Reads the shard answers for lenses, provenance and sources. Live reads first wait for
// LMDB to commit acknowledged status changes (stateBarrier); reads at an epoch boundary wait
// for every applied write (settled), since they read LMDB only.
import { MAX_VOTES_PER_ASSERTION } from "../domain/limits.js";
import { LIVE_LSN, recordAsOf, statusAsOf, votesAsOf } from "../store/state_reads.js";
import { answerLens } from "./lens_answers.js";
import type { AgentAssertion, HeldItem, LensRequest } from "./protocol.js";
import { renderAssertion } from "./render.js";
import type { ShardCore } from "./shard_core.js";
import { facts } from "./state_ops.js";

async function barrier(core: ShardCore, asOfLsn: number | null): Promise<number> {
  if (asOfLsn === null) {
    await core.stateBarrier();
    await core.settledForRangeRead();
    return LIVE_LSN;
  }
  await core.settledForRangeRead();
  return asOfLsn;
}

export async function handleLens(core: ShardCore, msg: LensRequest): Promise<unknown> {
  if (msg.t === "lens_latest" && msg.asOfLsn === null) {
    // The one live lens served from the overlay too: no wait for LMDB's commit.
    await core.stateBarrier();
    const rec = core.latest(msg.concept);
    return rec === undefined ? null : renderAssertion(rec);
  }
  return answerLens(core.store.dbs, msg, await barrier(core, msg.asOfLsn));
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
      await core.settledForRangeRead();
      return core.store.dbs.sources.get(msg.id) ?? null;
    }
    case "held_list": {
      await core.stateBarrier();
      await core.settledForRangeRead();
      return heldList(core, msg.after, msg.limit, msg.agent, msg.concept);
    }
    case "agent_assertions": {
      await core.stateBarrier();
      await core.settledForRangeRead();
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
