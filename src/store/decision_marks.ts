// Which quarantine decisions already gave their author trust evidence (meta db
// `decision_marks`: assertion id -> the decision). The mark is written in the same LMDB
// transaction as the evidence (TrustBook.addEvidence's `alongside`), so a decision whose
// evidence a crash lost is recognised, and counted, when the decision is retried.
import type { Database, RootDatabase } from "lmdb";

export type DecisionKind = "approve" | "reject";

/** Holds when marking began: decisions made before it were counted, marks or not. */
const SINCE_KEY = "since_ms";

export class DecisionMarks {
  private readonly db: Database<DecisionKind | number, string>;
  /** Decisions made before this time (ms) predate the marks (and were counted). */
  readonly sinceMs: number;

  constructor(root: RootDatabase, nowMs: number) {
    this.db = root.openDB<DecisionKind | number, string>({
      name: "decision_marks",
      encoding: "json",
    });
    const since = this.db.get(SINCE_KEY);
    if (typeof since === "number") this.sinceMs = since;
    else {
      this.db.putSync(SINCE_KEY, nowMs);
      this.sinceMs = nowMs;
    }
  }

  /**
   * Whether the evidence of the decision on `assertionId`, made at `decidedAtMs`, was counted:
   * it has a mark, or it was made before marking began.
   */
  counted(assertionId: string, decidedAtMs: number): boolean {
    return decidedAtMs < this.sinceMs || this.db.doesExist(assertionId);
  }

  /** Marks it counted. Call inside the meta transaction that adds the evidence. */
  putCounted(assertionId: string, kind: DecisionKind): void {
    this.db.put(assertionId, kind);
  }
}
