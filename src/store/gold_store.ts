// Gold standards (global state in the meta environment, owned by the main thread) with an
// in-memory copy for the write path, and the record of which assertions a verify run has
// already counted as trust evidence (so running verify twice does not count them twice).
import type { Database, RootDatabase } from "lmdb";
import type { GoldStandard } from "../domain/gold.js";

/** Most gold standards; all are held in memory for the write path. */
export const MAX_GOLD_STANDARDS = 100_000;

export class GoldLimitError extends Error {}

export class GoldStore {
  private readonly db: Database<GoldStandard, string>;
  private readonly checks: Database<number, [string, string]>;
  private readonly byConcept = new Map<string, GoldStandard>();

  constructor(root: RootDatabase) {
    this.db = root.openDB<GoldStandard, string>({ name: "gold_standards", encoding: "json" });
    this.checks = root.openDB<number, [string, string]>({
      name: "gold_checks",
      encoding: "ordered-binary",
    });
    for (const { key, value } of this.db.getRange()) this.byConcept.set(key, value);
  }

  get size(): number {
    return this.byConcept.size;
  }

  get(concept: string): GoldStandard | undefined {
    return this.byConcept.get(concept);
  }

  /** In concept order, after `after`, at most `limit`. */
  list(after: string | null, limit: number): GoldStandard[] {
    const out: GoldStandard[] = [];
    const range = after === null ? { limit } : { start: after, exclusiveStart: true, limit };
    for (const { value } of this.db.getRange(range)) out.push(value);
    return out;
  }

  all(): IterableIterator<GoldStandard> {
    return this.byConcept.values();
  }

  /** Durable before it resolves; returns the previous standard of the concept, if any. */
  async put(gold: GoldStandard): Promise<GoldStandard | undefined> {
    const previous = this.byConcept.get(gold.concept);
    if (previous === undefined && this.byConcept.size >= MAX_GOLD_STANDARDS) {
      throw new GoldLimitError(`at most ${MAX_GOLD_STANDARDS} gold standards can exist`);
    }
    await this.db.put(gold.concept, gold);
    await this.db.flushed;
    this.byConcept.set(gold.concept, gold);
    return previous;
  }

  async remove(concept: string): Promise<GoldStandard | undefined> {
    const previous = this.byConcept.get(concept);
    if (previous === undefined) return undefined;
    await this.db.remove(concept);
    await this.db.flushed;
    this.byConcept.delete(concept);
    return previous;
  }

  /** Whether a verify run already counted this assertion of this agent. */
  counted(agent: string, assertionId: string): boolean {
    return this.checks.doesExist([agent, assertionId]);
  }

  /**
   * Marks assertions as counted. Call inside a meta-env transaction: the verify route passes
   * it to TrustBook.addEvidence, so the evidence and these marks commit together.
   */
  putCounted(agent: string, outcomes: ReadonlyArray<[string, boolean]>): void {
    for (const [id, agreed] of outcomes) this.checks.put([agent, id], agreed ? 1 : 0);
  }
}
