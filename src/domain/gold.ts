// Gold standards: the true value of a concept, pinned by an admin. An assertion agrees when
// its canonical value equals the gold value, or, when a tolerance is set and both are
// finite numbers, when they differ by at most the tolerance.
export interface GoldStandard {
  concept: string;
  /** Canonical JSON of the true value. */
  value_json: string;
  /** Numeric tolerance (absolute), or null for exact equality. */
  tolerance: number | null;
  set_by: string;
  set_at: number;
}

export function agreesWithGold(valueJson: string, gold: GoldStandard): boolean {
  if (valueJson === gold.value_json) return true;
  if (gold.tolerance === null) return false;
  const v: unknown = JSON.parse(valueJson);
  const g: unknown = JSON.parse(gold.value_json);
  return typeof v === "number" && typeof g === "number" && Math.abs(v - g) <= gold.tolerance;
}
