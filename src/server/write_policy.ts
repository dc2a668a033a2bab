// Which new assertions go to quarantine (DESIGN §3), decided on the main thread before the
// record is encoded, from state it holds in memory: the author's trust, the concept's gold
// standard and the author's circuit breaker. Quarantined writes are stored durably like any
// other, invisible to every lens but history, and listed for admins.
import { agreesWithGold } from "../domain/gold.js";
import type { ServerContext } from "./context.js";

export type QuarantineReason = "gold_contradiction" | "low_trust" | "probation";

/** null: the write is active. Checked in this order; the first that applies is the reason. */
export function quarantineReason(
  server: ServerContext,
  agent: string,
  concept: string,
  valueJson: string,
): QuarantineReason | null {
  const gold = server.gold.get(concept);
  if (gold !== undefined && !agreesWithGold(valueJson, gold)) return "gold_contradiction";
  const safety = server.config.safety;
  if (server.trust.trust(agent) < safety.quarantineMinTrust) return "low_trust";
  if (
    safety.probationMs > 0 &&
    server.breakers.onProbation(agent, server.clock.nowMs(), safety.probationMs)
  ) {
    return "probation";
  }
  return null;
}
