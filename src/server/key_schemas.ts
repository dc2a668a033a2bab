// Request schemas of the API-key routes (create, update, rotate). As in schemas.ts, one
// TypeBox schema per request gives validation, the TS type and the OpenAPI document; rules
// a schema cannot express (an expiry in the future, at least one change) are checked after.
import { type Static, Type } from "@sinclair/typebox";
import { TypeCompiler } from "@sinclair/typebox/compiler";
import { PRINCIPAL_PATTERN, type Role } from "../domain/api_keys.js";
import {
  DEFAULT_KEY_ROTATION_GRACE_S,
  MAX_API_KEY_LABELS,
  MAX_KEY_ROTATION_GRACE_S,
  MAX_LABEL_KEY_LENGTH,
  MAX_LABEL_VALUE_LENGTH,
} from "../domain/limits.js";
import { unprocessable } from "./errors.js";
import { parseJsonBody, TimeMs, validate } from "./schemas.js";
import { parseBody } from "./state_schemas.js";

export const KEY_ID_PATTERN = "^[a-z2-7]{12}$";

const RoleSchema = Type.Union([
  Type.Literal("agent"),
  Type.Literal("reader"),
  Type.Literal("admin"),
]);

const Labels = Type.Record(
  Type.String({ pattern: `^[a-zA-Z0-9_.:-]{1,${MAX_LABEL_KEY_LENGTH}}$` }),
  Type.String({ maxLength: MAX_LABEL_VALUE_LENGTH }),
  { maxProperties: MAX_API_KEY_LABELS, additionalProperties: false },
);

const KeyId = Type.String({
  pattern: KEY_ID_PATTERN,
  description: "The key's id (the 12 characters after `stm_`)",
});

export const CreateApiKeyRequest = Type.Object(
  {
    role: RoleSchema,
    principal: Type.Optional(
      Type.String({
        pattern: PRINCIPAL_PATTERN,
        description: "Agent id the key acts as; default `<role>-<keyId>`",
      }),
    ),
    labels: Type.Optional(Labels),
    expires_at: Type.Optional(TimeMs("Expiry, ms since the epoch (UTC); must be in the future")),
  },
  { additionalProperties: false },
);
export type CreateApiKeyRequest = Static<typeof CreateApiKeyRequest>;

export const UpdateApiKeyRequest = Type.Object(
  {
    key_id: KeyId,
    role: Type.Optional(RoleSchema),
    labels: Type.Optional(Labels),
    expires_at: Type.Optional(
      Type.Union([
        TimeMs("New expiry, ms since the epoch (UTC); must be in the future"),
        Type.Null({ description: "Never expires" }),
      ]),
    ),
  },
  { additionalProperties: false },
);
export type UpdateApiKeyRequest = Static<typeof UpdateApiKeyRequest>;

export const RotateApiKeyRequest = Type.Object(
  {
    key_id: KeyId,
    grace_period_s: Type.Optional(
      Type.Integer({
        minimum: 0,
        maximum: MAX_KEY_ROTATION_GRACE_S,
        description: `How long the old secret keeps working, in seconds (default ${DEFAULT_KEY_ROTATION_GRACE_S}; 0: not at all)`,
      }),
    ),
  },
  { additionalProperties: false },
);
export type RotateApiKeyRequest = Static<typeof RotateApiKeyRequest>;

export const CreateApiKeyRequestCheck = TypeCompiler.Compile(CreateApiKeyRequest);

function checkFuture(expiresAtMs: number, nowMs: number): void {
  if (expiresAtMs <= nowMs) {
    throw unprocessable(
      `Field /expires_at (${expiresAtMs}) is not in the future (now is ${nowMs}).`,
      "invalid_expiry",
    );
  }
}

export interface CreateApiKeyInput {
  role: Role;
  principal: string | null;
  labels: Record<string, string>;
  expiresAtMs: number | null;
}

/** Parse and validate a POST /v1/admin/api_keys body. Throws ApiError 400/413/422. */
export function parseCreateApiKeyRequest(bytes: Uint8Array, nowMs: number): CreateApiKeyInput {
  const checked = validate(CreateApiKeyRequestCheck, parseJsonBody(bytes));
  if (!checked.ok) throw unprocessable(checked.message);
  const req = checked.value;
  if (req.expires_at !== undefined) checkFuture(req.expires_at, nowMs);
  return {
    role: req.role,
    principal: req.principal ?? null,
    labels: req.labels ?? {},
    expiresAtMs: req.expires_at ?? null,
  };
}

export interface UpdateApiKeyInput {
  keyId: string;
  role?: Role;
  labels?: Record<string, string>;
  expiresAtMs?: number | null;
}

/** Parse and validate a PATCH /v1/admin/api_keys body: a key id and at least one change. */
export function parseUpdateApiKeyRequest(bytes: Uint8Array, nowMs: number): UpdateApiKeyInput {
  const req = parseBody(UpdateApiKeyRequest, bytes);
  if (req.role === undefined && req.labels === undefined && req.expires_at === undefined) {
    throw unprocessable("Give at least one of role, labels and expires_at to change.", "no_change");
  }
  const out: UpdateApiKeyInput = { keyId: req.key_id };
  if (req.role !== undefined) out.role = req.role;
  if (req.labels !== undefined) out.labels = req.labels;
  if (req.expires_at !== undefined) {
    if (req.expires_at !== null) checkFuture(req.expires_at, nowMs);
    out.expiresAtMs = req.expires_at;
  }
  return out;
}

/** Parse and validate a POST /v1/admin/api_keys/rotate body. */
export function parseRotateApiKeyRequest(bytes: Uint8Array): { keyId: string; graceS: number } {
  const req = parseBody(RotateApiKeyRequest, bytes);
  return { keyId: req.key_id, graceS: req.grace_period_s ?? DEFAULT_KEY_ROTATION_GRACE_S };
}
