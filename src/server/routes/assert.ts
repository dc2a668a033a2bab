// POST /v1/assert and GET /v1/assertions/:id.

import {
  ROUTABLE_ID_PATTERN,
  routableAssertionId,
  shardForAssertionId,
} from "../../domain/routable_id.js";
import { shardForConcept } from "../../domain/shard_hash.js";
import type { WriteResult } from "../../shard/protocol.js";
import { WRITE_DUPLICATE } from "../../shard/shard_core.js";
import { encodeAssertion } from "../../store/assertion_codec.js";
import type { ServerContext } from "../context.js";
import { badRequest, notFound } from "../errors.js";
import type { Reply, Route, RouteContext } from "../router.js";
import { AssertRequest, type NormalizedAssertion, parseAssertRequest } from "../schemas.js";

interface Placed {
  id: string;
  shard: number;
}

/** Encodes every item and groups them per shard, remembering each item's place. */
function encodeItems(
  items: readonly NormalizedAssertion[],
  agent: string,
  shardCount: number,
  nowMs: number,
): { placed: Placed[]; perShard: Map<number, { records: Uint8Array[]; indexes: number[] }> } {
  const placed: Placed[] = new Array(items.length);
  const perShard = new Map<number, { records: Uint8Array[]; indexes: number[] }>();
  for (let i = 0; i < items.length; i++) {
    const item = items[i] as NormalizedAssertion;
    // NormalizedAssertion carries exactly the content fields the id covers (plus `value`).
    const content = { ...item, agent };
    const id = routableAssertionId(content);
    const shard = shardForConcept(item.concept, shardCount);
    const record = encodeAssertion({
      ...content,
      id,
      recordedAtMs: nowMs,
      epoch: 0,
      shard,
      lsn: 0,
      status: "active",
      supersedes: null,
      supersededBy: null,
    });
    placed[i] = { id, shard };
    let group = perShard.get(shard);
    if (group === undefined) {
      group = { records: [], indexes: [] };
      perShard.set(shard, group);
    }
    group.records.push(record);
    group.indexes.push(i);
  }
  return { placed, perShard };
}

function itemResult(p: Placed, lsn: number, flag: number): string {
  const duplicate = (flag & WRITE_DUPLICATE) !== 0;
  return `{"id":"${p.id}","status":"active","shard":${p.shard},"lsn":${lsn},"duplicate":${duplicate}}`;
}

async function assertHandler(server: ServerContext, ctx: RouteContext): Promise<Reply> {
  const { batch, items } = parseAssertRequest(ctx.body as Buffer);
  const agent = (ctx.principal as { principal: string }).principal;
  const { placed, perShard } = encodeItems(items, agent, server.pool.shardCount, Date.now());
  const lsns = new Float64Array(items.length);
  const flags = new Uint8Array(items.length);
  const writes: Promise<void>[] = [];
  for (const [shard, group] of perShard) {
    writes.push(
      server.pool.write(shard, group.records).then((result: WriteResult) => {
        for (let k = 0; k < group.indexes.length; k++) {
          const index = group.indexes[k] as number;
          lsns[index] = result.lsns[k] as number;
          flags[index] = result.flags[k] as number;
        }
      }),
    );
  }
  // Every part must be durable before the answer; the first failure fails the request
  // (parts already written are durable, and a retry reports them as duplicates).
  await Promise.all(writes);
  if (!batch) {
    return {
      status: 201,
      body: itemResult(placed[0] as Placed, lsns[0] as number, flags[0] as number),
    };
  }
  const parts: string[] = new Array(items.length);
  for (let i = 0; i < items.length; i++)
    parts[i] = itemResult(placed[i] as Placed, lsns[i] as number, flags[i] as number);
  return { status: 201, body: `{"results":[${parts.join(",")}]}` };
}

async function getAssertion(server: ServerContext, ctx: RouteContext): Promise<Reply> {
  const id = ctx.params[0] ?? "";
  if (!ROUTABLE_ID_PATTERN.test(id))
    throw badRequest("An assertion id is 32 lowercase hex digits.", "invalid_id");
  const json = await server.pool.get(shardForAssertionId(id, server.pool.shardCount), id);
  if (json === null) throw notFound(`No assertion has id ${id}.`);
  return { status: 200, body: json };
}

export function assertRoutes(server: ServerContext): Route[] {
  return [
    {
      method: "post",
      pattern: "/v1/assert",
      summary:
        "Write one assertion or a batch; 201 once durable, per item id/status/shard/lsn/duplicate",
      bodySchema: AssertRequest,
      role: "agent",
      jsonBody: true,
      breaker: true,
      handler: (ctx) => assertHandler(server, ctx),
    },
    {
      method: "get",
      pattern: "/v1/assertions/:id",
      role: "reader",
      jsonBody: false,
      handler: (ctx) => getAssertion(server, ctx),
    },
  ];
}
