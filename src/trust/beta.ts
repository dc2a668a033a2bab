// Beta reputation (DESIGN §3 "Trust rank"): an agent's trust is the mean of Beta(α, β), where
// α − 1 and β − 1 are the (possibly fractional) weights of agreeing and disagreeing evidence
// and the prior Beta(1, 1) gives an unknown agent 0.5. Decay moves evidence back toward the
// prior with a half-life, continuously: after Δt, α' = 1 + (α − 1)·2^(−Δt/half_life), the same
// for β. That is a semigroup (decaying by a then b equals decaying by a + b), so the result
// does not depend on how often decay runs, only on the time elapsed.

export const PRIOR_ALPHA = 1;
export const PRIOR_BETA = 1;
/** Evidence weight one call may add per side; bounds the damage of a caller bug. */
export const MAX_EVIDENCE_WEIGHT = 1_000_000;

export interface BetaEvidence {
  alpha: number;
  beta: number;
}

export function trustOf(e: BetaEvidence): number {
  return e.alpha / (e.alpha + e.beta);
}

/** Factor 2^(−Δt/half_life) for a non-negative Δt (a negative Δt — clock moved back — is 0). */
export function decayFactor(elapsedMs: number, halfLifeMs: number): number {
  if (!(halfLifeMs > 0)) throw new RangeError(`half-life must be > 0 ms, got ${halfLifeMs}`);
  if (!(elapsedMs > 0)) return 1;
  return 2 ** (-elapsedMs / halfLifeMs);
}

/** Evidence after `elapsedMs` of decay toward the prior. */
export function decayed(e: BetaEvidence, elapsedMs: number, halfLifeMs: number): BetaEvidence {
  const f = decayFactor(elapsedMs, halfLifeMs);
  if (f === 1) return { alpha: e.alpha, beta: e.beta };
  return {
    alpha: PRIOR_ALPHA + (e.alpha - PRIOR_ALPHA) * f,
    beta: PRIOR_BETA + (e.beta - PRIOR_BETA) * f,
  };
}

/** Whether a weight is acceptable evidence: finite, ≥ 0, ≤ MAX_EVIDENCE_WEIGHT. */
export function isEvidenceWeight(w: number): boolean {
  return Number.isFinite(w) && w >= 0 && w <= MAX_EVIDENCE_WEIGHT;
}
