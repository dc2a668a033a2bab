import { EpochLimitError, type EpochRecord } from "../../store/epoch_store.js";
import type { ServerContext } from "../context.js";
import { conflict, unprocessable } from "../errors.js";
import { limitParam } from "../params.js";
import type { Reply, Route, RouteContext } from "../router.js";
import { EpochRequest, parseBody } from "../state_schemas.js";

/** Epoch creation is serialized: each one must see the previous one's boundary. */
let creating: Promise<unknown> = Promise.resolve();

function render(e: EpochRecord): string {
  return JSON.stringify({
    epoch: e.epoch,
    created_at: e.created_at,
    created_by: e.created_by,
    label: e.label,
    lsns: e.lsns,
    trust_agents: e.agents,
  });
}

async function createEpoch(server: ServerContext, ctx: RouteContext): Promise<Reply> {
  const req = parseBody(EpochRequest, ctx.body as Buffer);
  const actor = (ctx.principal as { principal: string }).principal;
  const run = creating.then(async () => {
    // Every shard reports the LSN it reached (once durable); trust is snapshotted right
    // after. A write racing with the epoch lands on one side of the boundary by its LSN.
    const lsns = await Promise.all(
      Array.from({ length: server.pool.shardCount }, (_, shard) =>
        server.pool.request<number>(shard, { t: "epoch_mark" }),
      ),
    );
    return server.epochs.create(
      { created_at: Date.now(), created_by: actor, label: req.label ?? null, lsns },
      server.trust.entries(),
    );
  });
  creating = run.catch(() => {});
  try {
    const rec = await run;
    return { status: 201, body: render(rec) };
  } catch (err) {
    if (err instanceof EpochLimitError) throw conflict(err.message, "epoch_limit");
    throw err;
  }
}

function listEpochs(server: ServerContext, ctx: RouteContext): Reply {
  const limit = limitParam(ctx.query.get("limit"));
  const rawAfter = ctx.query.get("after");
  const after = rawAfter === null ? 0 : Number(rawAfter);
  if (!Number.isSafeInteger(after) || after < 0)
    throw unprocessable("after must be an epoch number.", "invalid_after");
  const items = server.epochs.list(after, limit + 1);
  const more = items.length > limit;
  if (more) items.length = limit;
  const last = items[items.length - 1];
  return {
    status: 200,
    body: `{"open_epoch":${server.epochs.open},"items":[${items.map(render).join(",")}],"next_after":${
      more && last !== undefined ? last.epoch : "null"
    }}`,
  };
}

export function epochRoutes(server: ServerContext): Route[] {
  return [
    {
      method: "post",
      pattern: "/v1/epoch",
      role: "admin",
      jsonBody: true,
      summary: "Close the open epoch: record every shard's LSN and every agent's trust",
      bodySchema: EpochRequest,
      handler: (ctx) => createEpoch(server, ctx),
    },
    {
      method: "get",
      pattern: "/v1/epochs",
      role: "reader",
      jsonBody: false,
      summary: "Epochs, oldest first (limit, after)",
      handler: (ctx) => listEpochs(server, ctx),
    },
  ];
}
