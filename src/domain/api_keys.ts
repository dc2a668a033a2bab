// API key format and the pure parts of key handling (DESIGN §3 "Agent and API key").
//
//   stm_<keyId>_<secret>
//   keyId  = 12 characters of lowercase RFC 4648 base32 (a-z, 2-7): 60 random bits, public,
//            used to find the record (like an access-key id; it appears in logs and audit)
//   secret = 32 random bytes, base64url without padding (43 characters; may contain "_")
//
// Only SHA-256(secret) is stored. The secret has 256 bits of entropy, so a fast hash is
// enough (a slow password hash protects low-entropy passwords, which these are not).
// Comparison is constant-time (crypto.timingSafeEqual) and never throws on length mismatch.

import { hash, randomBytes, timingSafeEqual } from "node:crypto";

export const API_KEY_PREFIX = "stm_";
export const KEY_ID_LENGTH = 12;
export const SECRET_BYTES = 32;
/** base64url length of SECRET_BYTES without padding. */
export const SECRET_LENGTH = 43;
/** Total length of a well-formed key string. */
export const API_KEY_LENGTH = API_KEY_PREFIX.length + KEY_ID_LENGTH + 1 + SECRET_LENGTH;

export const ROLES = ["admin", "agent", "reader"] as const;
export type Role = (typeof ROLES)[number];

/** Agent ids / principals: `[a-zA-Z0-9_.:-]{1,128}`. */
export const PRINCIPAL_PATTERN = "^[a-zA-Z0-9_.:-]{1,128}$";
const PRINCIPAL_RE = new RegExp(PRINCIPAL_PATTERN);

const KEY_ID_RE = /^[a-z2-7]{12}$/;
const SECRET_RE = /^[A-Za-z0-9_-]{43}$/;
const BASE32 = "abcdefghijklmnopqrstuvwxyz234567";

/** A stored key record. `secretHash` must never leave the meta store (not in list(), logs). */
export interface ApiKeyRecord {
  keyId: string;
  role: Role;
  principal: string;
  labels: Record<string, string>;
  createdAtMs: number;
  expiresAtMs: number | null;
  revokedAtMs: number | null;
  /** Lowercase hex SHA-256 of the secret part. */
  secretHash: string;
  /** 1 for a new key, +1 per rotation (records written before rotation existed: 1). */
  secretVersion: number;
  /** When the current secret was made: creation or the last rotation (ms). */
  secretSetAtMs: number;
  /** Hex SHA-256 of the secret before the last rotation, while it is still accepted. */
  previousSecretHash: string | null;
  /** Until when (ms) the previous secret is accepted; null when there is none. */
  previousValidUntilMs: number | null;
}

/** What callers may see of a key: everything except the secret hashes. */
export type ApiKeyInfo = Omit<ApiKeyRecord, "secretHash" | "previousSecretHash">;

export interface ParsedApiKey {
  keyId: string;
  secret: string;
}

export function isRole(s: string): s is Role {
  return (ROLES as readonly string[]).includes(s);
}

export function isValidPrincipal(s: string): boolean {
  return PRINCIPAL_RE.test(s);
}

/** Default principal of a key created without one: `agent-<keyId>`, `reader-<keyId>`, … */
export function defaultPrincipal(role: Role, keyId: string): string {
  return `${role}-${keyId}`;
}

/** A fresh random key id (60 bits). */
export function generateKeyId(): string {
  const bytes = randomBytes(KEY_ID_LENGTH);
  let id = "";
  // 12 independent 5-bit draws from 12 bytes: unbiased because 256 is a multiple of 32.
  for (let i = 0; i < KEY_ID_LENGTH; i++) id += BASE32[(bytes[i] as number) & 31];
  return id;
}

/** A fresh random secret (32 bytes, base64url). */
export function generateSecret(): string {
  return randomBytes(SECRET_BYTES).toString("base64url");
}

export function formatApiKey(keyId: string, secret: string): string {
  return `${API_KEY_PREFIX}${keyId}_${secret}`;
}

/** A complete new key string with a fresh key id and secret. */
export function generateApiKey(): { key: string; keyId: string; secret: string } {
  const keyId = generateKeyId();
  const secret = generateSecret();
  return { key: formatApiKey(keyId, secret), keyId, secret };
}

/**
 * Split a presented key into key id and secret, or null if it is not well-formed.
 * Positional (not split("_")) because base64url secrets may contain "_".
 */
export function parseApiKey(presented: string): ParsedApiKey | null {
  if (typeof presented !== "string" || presented.length !== API_KEY_LENGTH) return null;
  if (!presented.startsWith(API_KEY_PREFIX)) return null;
  const keyId = presented.slice(API_KEY_PREFIX.length, API_KEY_PREFIX.length + KEY_ID_LENGTH);
  const sep = presented.charAt(API_KEY_PREFIX.length + KEY_ID_LENGTH);
  const secret = presented.slice(API_KEY_PREFIX.length + KEY_ID_LENGTH + 1);
  if (sep !== "_" || !KEY_ID_RE.test(keyId) || !SECRET_RE.test(secret)) return null;
  return { keyId, secret };
}

/** SHA-256 of the secret (raw bytes); the one-shot hash, half createHash's cost per call. */
export function hashSecret(secret: string): Buffer {
  return hash("sha256", secret, "buffer");
}

/** SHA-256 of the secret as lowercase hex (the stored form). */
export function hashSecretHex(secret: string): string {
  return hashSecret(secret).toString("hex");
}

/**
 * Constant-time equality of two byte strings. Unlike crypto.timingSafeEqual it accepts
 * inputs of different lengths (returns false, never throws) and then still runs one
 * comparison of `a` against itself so the mismatch costs about the same time.
 */
export function safeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) {
    timingSafeEqual(a, a);
    return false;
  }
  return timingSafeEqual(a, b);
}
