// The API-key routes (DESIGN §4): create, list, update, rotate, revoke. Keys are shown once
// (at creation and at rotation); every change is audited.
import type { ApiKeyInfo } from "../../domain/api_keys.js";
import { replaceAdminKeyFile } from "../../store/admin_key.js";
import { KeyRuleError } from "../../store/meta_store.js";
import type { ServerContext } from "../context.js";
import { conflict, notFound } from "../errors.js";
import {
  CreateApiKeyRequest,
  KEY_ID_PATTERN,
  parseCreateApiKeyRequest,
  parseRotateApiKeyRequest,
  parseUpdateApiKeyRequest,
  RotateApiKeyRequest,
  UpdateApiKeyRequest,
} from "../key_schemas.js";
import type { Reply, Route, RouteContext } from "../router.js";
import { auditWho } from "./audit.js";

const KEY_ID_RE = new RegExp(KEY_ID_PATTERN);

/** A refused key change as the API's 409; anything else as it is. */
function keyRuleToApiError(err: unknown): never {
  if (err instanceof KeyRuleError) throw conflict(err.message, err.code);
  throw err;
}

function unknownKey(keyId: string): never {
  throw notFound(`No API key has id ${JSON.stringify(keyId.slice(0, 40))}.`);
}

function keyJson(r: ApiKeyInfo): Record<string, unknown> {
  return {
    key_id: r.keyId,
    role: r.role,
    principal: r.principal,
    labels: r.labels,
    created_at: r.createdAtMs,
    expires_at: r.expiresAtMs,
    revoked_at: r.revokedAtMs,
    secret_version: r.secretVersion,
    secret_set_at: r.secretSetAtMs,
    previous_secret_expires_at: r.previousValidUntilMs,
  };
}

async function createKey(server: ServerContext, ctx: RouteContext): Promise<Reply> {
  const input = parseCreateApiKeyRequest(ctx.body as Buffer, Date.now());
  const { key, record } = await server.meta
    .createKey({
      role: input.role,
      principal: input.principal,
      labels: input.labels,
      expiresAtMs: input.expiresAtMs,
    })
    .catch(keyRuleToApiError);
  server.logger.info(
    { request_id: ctx.requestId, key_id: record.keyId, role: record.role },
    "api key created",
  );
  await server.audit.append({
    ...auditWho(ctx),
    action: "api_key.create",
    target: record.keyId,
    outcome: "ok",
    details: { role: record.role, principal: record.principal },
  });
  return { status: 201, body: JSON.stringify({ key, ...keyJson(record) }) };
}

async function updateKey(server: ServerContext, ctx: RouteContext): Promise<Reply> {
  const { keyId, ...change } = parseUpdateApiKeyRequest(ctx.body as Buffer, Date.now());
  const updated = await server.meta.update(keyId, change).catch(keyRuleToApiError);
  if (updated === null) unknownKey(keyId);
  const { before, after } = updated;
  server.logger.info({ request_id: ctx.requestId, key_id: keyId }, "api key updated");
  const details: Record<string, unknown> = {};
  if (change.role !== undefined) details.role = { before: before.role, after: after.role };
  if (change.labels !== undefined) details.labels = after.labels;
  if (change.expiresAtMs !== undefined)
    details.expires_at = { before: before.expiresAtMs, after: after.expiresAtMs };
  await server.audit.append({
    ...auditWho(ctx),
    action: "api_key.update",
    target: keyId,
    outcome: "ok",
    details,
  });
  return { status: 200, body: JSON.stringify(keyJson(after)) };
}

async function rotateKey(server: ServerContext, ctx: RouteContext): Promise<Reply> {
  const { keyId, graceS } = parseRotateApiKeyRequest(ctx.body as Buffer);
  const rotated = await server.meta.rotate(keyId, graceS * 1000).catch(keyRuleToApiError);
  if (rotated === null) unknownKey(keyId);
  // The new secret exists only in this answer: nothing after the commit may keep it from
  // the client, so a failure here is logged, not answered.
  let adminKeyFile = false;
  try {
    adminKeyFile = replaceAdminKeyFile(server.config.dataDir, keyId, rotated.key);
  } catch (err) {
    server.logger.error({ err, request_id: ctx.requestId, key_id: keyId }, "admin.key rewrite");
  }
  server.logger.info(
    {
      request_id: ctx.requestId,
      key_id: keyId,
      grace_period_s: graceS,
      admin_key_file: adminKeyFile,
    },
    "api key rotated",
  );
  try {
    await server.audit.append({
      ...auditWho(ctx),
      action: "api_key.rotate",
      target: keyId,
      outcome: "ok",
      details: { grace_period_s: graceS, secret_version: rotated.record.secretVersion },
    });
  } catch (err) {
    server.logger.error({ err, request_id: ctx.requestId, key_id: keyId }, "api key rotate audit");
  }
  return { status: 200, body: JSON.stringify({ key: rotated.key, ...keyJson(rotated.record) }) };
}

async function revokeKey(server: ServerContext, ctx: RouteContext): Promise<Reply> {
  const keyId = ctx.params[0] ?? "";
  // Anything but a key id is unknown without touching the store.
  const existed =
    KEY_ID_RE.test(keyId) && (await server.meta.revoke(keyId).catch(keyRuleToApiError));
  if (!existed) unknownKey(keyId);
  server.logger.info({ request_id: ctx.requestId, key_id: keyId }, "api key revoked");
  await server.audit.append({
    ...auditWho(ctx),
    action: "api_key.revoke",
    target: keyId,
    outcome: "ok",
  });
  return { status: 200, body: JSON.stringify(keyJson(server.meta.get(keyId) as ApiKeyInfo)) };
}

export function apiKeyRoutes(server: ServerContext): Route[] {
  return [
    {
      method: "post",
      pattern: "/v1/admin/api_keys",
      summary: "Create an API key (shown once)",
      bodySchema: CreateApiKeyRequest,
      role: "admin",
      jsonBody: true,
      handler: (ctx) => createKey(server, ctx),
    },
    {
      method: "get",
      pattern: "/v1/admin/api_keys",
      role: "admin",
      jsonBody: false,
      handler: () => ({
        status: 200,
        body: JSON.stringify({ items: server.meta.list().map(keyJson) }),
      }),
    },
    {
      method: "patch",
      pattern: "/v1/admin/api_keys",
      summary: "Change a key's role, labels or expiry",
      bodySchema: UpdateApiKeyRequest,
      role: "admin",
      jsonBody: true,
      handler: (ctx) => updateKey(server, ctx),
    },
    {
      method: "post",
      pattern: "/v1/admin/api_keys/rotate",
      summary: "Give a key a new secret (shown once); the old one works for a grace period",
      bodySchema: RotateApiKeyRequest,
      role: "admin",
      jsonBody: true,
      handler: (ctx) => rotateKey(server, ctx),
    },
    {
      method: "del",
      pattern: "/v1/admin/api_keys/:id",
      role: "admin",
      jsonBody: false,
      handler: (ctx) => revokeKey(server, ctx),
    },
  ];
}
