import { Type } from "@sinclair/typebox";
import { EpochLimitError, type EpochRecord } from "../../store/epoch_store.js";
import type { ServerContext } from "../context.js";
import { conflict } from "../errors.js";
import { LIMIT_RULE, limitSchema } from "../params.js";
import { queryParams } from "../query_params.js";
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

const ListParams = queryParams(
  Type.Object({
    limit: limitSchema(),
    after: Type.Optional(
      Type.Integer({ minimum: 0, description: "next_after of the previous page (an epoch)" }),
    ),
  }),
  { limit: LIMIT_RULE, after: { code: "invalid_after", emptyIsAbsent: true } },
);

function listEpochs(server: ServerContext, ctx: RouteContext): Reply {
  const { limit, after = 0 } = ListParams.parse(ctx.query);
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
      queryParams: ListParams.docs,
      handler: (ctx) => listEpochs(server, ctx),
    },
  ];
}
