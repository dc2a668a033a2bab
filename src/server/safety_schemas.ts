// Request schemas of the trust, circuit breaker, audit and test-clock routes (same pattern as
// schemas.ts: one TypeBox schema → validator, TS type and OpenAPI), plus their query parsing.

import { type Static, Type } from "@sinclair/typebox";
import { TypeCompiler } from "@sinclair/typebox/compiler";
import { isValidPrincipal, PRINCIPAL_PATTERN } from "../domain/api_keys.js";
import { MAX_TEST_CLOCK_ADVANCE_MS } from "../domain/clock.js";
import { badRequest, unprocessable } from "./errors.js";
import { parseJsonBody, validate } from "./schemas.js";

export const ResetBreakerRequest = Type.Object(
  { agent: Type.String({ pattern: PRINCIPAL_PATTERN, description: "Agent id (key principal)" }) },
  { additionalProperties: false },
);
export type ResetBreakerRequest = Static<typeof ResetBreakerRequest>;

export const AdvanceClockRequest = Type.Object(
  {
    advance_ms: Type.Integer({
      minimum: 1,
      maximum: MAX_TEST_CLOCK_ADVANCE_MS,
      description: "Milliseconds to move the server's test clock forward",
    }),
  },
  { additionalProperties: false },
);
export type AdvanceClockRequest = Static<typeof AdvanceClockRequest>;

const ResetBreakerCheck = TypeCompiler.Compile(ResetBreakerRequest);
const AdvanceClockCheck = TypeCompiler.Compile(AdvanceClockRequest);

export function parseResetBreakerRequest(bytes: Uint8Array): ResetBreakerRequest {
  const checked = validate(ResetBreakerCheck, parseJsonBody(bytes));
  if (!checked.ok) throw unprocessable(checked.message);
  return checked.value;
}

export function parseAdvanceClockRequest(bytes: Uint8Array): AdvanceClockRequest {
  const checked = validate(AdvanceClockCheck, parseJsonBody(bytes));
  if (!checked.ok) throw unprocessable(checked.message);
  return checked.value;
}

/** An agent id from the path; 400 `invalid_agent_id` if it cannot be one. */
export function agentParam(raw: string): string {
  if (!isValidPrincipal(raw)) {
    throw badRequest(`An agent id matches ${PRINCIPAL_PATTERN}.`, "invalid_agent_id");
  }
  return raw;
}
