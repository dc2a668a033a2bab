// Wires trust ranks, circuit breakers, the audit log and the clock onto the meta store, and
// owns their background work (the decay schedule). Built once by app.ts; see
// docs/trust-and-safety.md for the contract.

import type { Logger } from "pino";
import { AuditLog } from "../audit/audit_log.js";
import type { SafetyConfig } from "../config.js";
import { type Clock, systemClock, TestClock } from "../domain/clock.js";
import type { MainMetrics } from "../metrics/main_metrics.js";
import type { MetaStore } from "../store/meta_store.js";
import { DecayScheduler } from "../trust/decay_scheduler.js";
import { type DecayResult, TrustBook } from "../trust/trust_book.js";
import { BreakerStore } from "./breaker_store.js";
import { CircuitBreakers } from "./circuit_breaker.js";

/** Most agents whose breaker windows are kept in memory. */
export const MAX_TRACKED_BREAKERS = 100_000;
/** Actor of audit entries written by the server itself (schedules, breaker trips). */
export const SYSTEM_ACTOR = "system";

export interface Safety {
  /** A TestClock when STEMEDB_TEST_CLOCK=on, else the system clock. */
  clock: Clock;
  trust: TrustBook;
  breakers: CircuitBreakers;
  audit: AuditLog;
  /** Decays now and audits the run (the schedule and the admin route both use this). */
  decayNow(who: { actor: string; requestId: string | null }): Promise<DecayResult>;
  /** Stops the schedule and waits for pending breaker writes. Call before meta.close(). */
  close(): Promise<void>;
}

export function openSafety(deps: {
  meta: MetaStore;
  config: SafetyConfig;
  metrics: MainMetrics;
  logger: Logger;
}): Safety {
  const { meta, config, metrics, logger } = deps;
  const clock: Clock = config.testClock ? new TestClock() : systemClock;
  if (config.testClock)
    logger.warn("STEMEDB_TEST_CLOCK=on: the clock can be moved by an admin (test only)");
  const audit = new AuditLog(meta.root, clock);
  const trust = new TrustBook(meta.root, {
    clock,
    halfLifeMs: config.trustHalfLifeMs,
    onDecay: (r) => metrics.setTrustDecayLastRun(r.ranAtMs),
  });
  const lastDecay = trust.lastDecay;
  if (lastDecay !== null) metrics.setTrustDecayLastRun(lastDecay.ranAtMs);

  const breakerStore = new BreakerStore(meta.root, (err, agent) =>
    logger.error({ err, agent }, "could not persist a circuit breaker transition"),
  );
  const breakers = new CircuitBreakers(
    {
      windowMs: config.breakerWindowMs,
      threshold: config.breakerThreshold,
      minVolume: config.breakerMinVolume,
      minBadRatio: config.breakerMinBadRatio,
      cooldownMs: config.breakerCooldownMs,
      halfOpenProbes: config.breakerHalfOpenProbes,
      maxTrackedAgents: MAX_TRACKED_BREAKERS,
    },
    breakerStore,
    breakerStore.load(),
    {
      onTrip: (s) => {
        metrics.circuitBreakerTrips.inc();
        logger.warn(
          { agent: s.agent, retry_at: s.retry_at, trips: s.trips },
          "circuit breaker open",
        );
        audit
          .append({
            actor: SYSTEM_ACTOR,
            action: "circuit_breaker.trip",
            target: s.agent,
            outcome: "ok",
            details: {
              bad_in_window: s.bad_in_window,
              total_in_window: s.total_in_window,
              retry_at: s.retry_at,
            },
          })
          .catch((err: unknown) => logger.error({ err }, "could not audit a circuit breaker trip"));
      },
    },
  );
  metrics.setCircuitBreakerSource(() => breakers.counts(clock.nowMs()));

  const decayNow = async (who: {
    actor: string;
    requestId: string | null;
  }): Promise<DecayResult> => {
    try {
      const result = await trust.decay();
      await audit.append({
        actor: who.actor,
        action: "trust.decay",
        outcome: "ok",
        requestId: who.requestId,
        details: { agents: result.agents, ran_at: result.ranAtMs, half_life_ms: trust.halfLifeMs },
      });
      logger.info({ agents: result.agents, request_id: who.requestId }, "trust ranks decayed");
      return result;
    } catch (err) {
      await audit
        .append({
          actor: who.actor,
          action: "trust.decay",
          outcome: "failed",
          requestId: who.requestId,
        })
        .catch(() => undefined);
      throw err;
    }
  };
  const scheduler = new DecayScheduler(
    clock,
    config.trustDecayIntervalMs,
    () => trust.lastDecay?.ranAtMs ?? null,
    () =>
      decayNow({ actor: SYSTEM_ACTOR, requestId: null }).then(
        () => undefined,
        (err: unknown) => logger.error({ err }, "scheduled trust decay failed"),
      ),
  );
  scheduler.start();

  return {
    clock,
    trust,
    breakers,
    audit,
    decayNow,
    async close() {
      await scheduler.stop();
      await breakers.flushed();
    },
  };
}
