// Concept aliases (DESIGN §3): admin-managed, one alias path → one canonical path, resolved on
// the main thread before routing, so a write or query via an alias uses the canonical path for
// the assertion id and the shard (an alias and its canonical always land on the same shard).
//
// Stored in the meta LMDB environment (db `aliases`, key = alias path, JSON value), written
// durably (put, then `flushed`) before the caller answers. Resolution is on every write and
// query, so it reads an in-memory Map and never LMDB or another thread.
//
// Rules (docs/api.md): no chains, so resolution is exactly one lookup: a canonical path may not
// itself be an alias, and an alias path may not be the canonical of another alias. Creating the
// same alias → canonical again is idempotent; another canonical for an existing alias is a
// conflict. At most MAX_ALIASES.
//
// The Maps are updated in place once LMDB has the change, not copied: the main thread is
// single-threaded, so a synchronous resolve() sees the state before or after a change, never a
// half of it, and copying 100,000 entries per admin write would make bulk creation quadratic.
// Mutations are serialized (one at a time) so their rule checks cannot interleave.
import type { Database, RootDatabase } from "lmdb";
import { MAX_ALIASES } from "../domain/limits.js";

export interface AliasRecord {
  alias: string;
  canonical: string;
  createdAtMs: number;
  /** Principal of the admin key that created it. */
  createdBy: string;
}

export type AliasRuleCode = "alias_is_canonical" | "alias_exists" | "alias_chain" | "alias_limit";

/** A create that breaks a rule; `code` is the documented error code. */
export class AliasRuleError extends Error {
  constructor(
    readonly code: AliasRuleCode,
    message: string,
  ) {
    super(message);
    this.name = "AliasRuleError";
  }
}

export const ALIASES_DB = "aliases";

export class AliasStore {
  private readonly db: Database<AliasRecord, string>;
  /** alias → record. */
  private readonly byAlias = new Map<string, AliasRecord>();
  /** canonical → number of aliases naming it. */
  private readonly targets = new Map<string, number>();
  private tail: Promise<unknown> = Promise.resolve();

  private constructor(root: RootDatabase) {
    this.db = root.openDB<AliasRecord, string>({ name: ALIASES_DB, encoding: "json" });
    for (const { key, value } of this.db.getRange()) {
      if (value.alias !== key || typeof value.canonical !== "string") {
        throw new Error(`meta store: alias record ${JSON.stringify(key)} is malformed`);
      }
      this.add(value);
    }
  }

  /** Opens (creating if needed) the `aliases` database of the meta environment. */
  static open(root: RootDatabase): AliasStore {
    return new AliasStore(root);
  }

  get size(): number {
    return this.byAlias.size;
  }

  /** The canonical path for `path` (itself when it is not an alias). No I/O. */
  resolve(path: string): string {
    return this.byAlias.get(path)?.canonical ?? path;
  }

  /**
   * `items` with every concept resolved; the same array when none is an alias (the common
   * case allocates nothing).
   */
  resolveConcepts<T extends { concept: string }>(items: T[]): T[] {
    if (this.byAlias.size === 0) return items;
    let out: T[] | null = null;
    for (let i = 0; i < items.length; i++) {
      const item = items[i] as T;
      const canonical = this.byAlias.get(item.concept)?.canonical;
      if (canonical === undefined) continue;
      out ??= items.slice();
      out[i] = { ...item, concept: canonical };
    }
    return out ?? items;
  }

  get(alias: string): AliasRecord | undefined {
    return this.byAlias.get(alias);
  }

  /** True if some alias names `path` as its canonical. */
  isTarget(path: string): boolean {
    return this.targets.has(path);
  }

  /** Alias records in no particular order (the live Map: do not hold across awaits). */
  aliases(): IterableIterator<AliasRecord> {
    return this.byAlias.values();
  }

  /** Canonical paths named by at least one alias. */
  canonicals(): IterableIterator<string> {
    return this.targets.keys();
  }

  /**
   * Creates alias → canonical (both canonical concept paths). Resolves with created: false
   * when exactly this alias already exists. Throws AliasRuleError when a rule is broken.
   */
  create(
    alias: string,
    canonical: string,
    createdBy: string,
    nowMs: number = Date.now(),
  ): Promise<{ created: boolean; record: AliasRecord }> {
    return this.serialize(async () => {
      const existing = this.check(alias, canonical);
      if (existing !== null) return { created: false, record: existing };
      const record: AliasRecord = { alias, canonical, createdAtMs: nowMs, createdBy };
      await this.db.put(alias, record);
      await this.db.flushed;
      this.add(record);
      return { created: true, record };
    });
  }

  /** Deletes an alias; resolves with its record, or null when there was none. */
  remove(alias: string): Promise<AliasRecord | null> {
    return this.serialize(async () => {
      const existing = this.byAlias.get(alias);
      if (existing === undefined) return null;
      await this.db.remove(alias);
      await this.db.flushed;
      this.byAlias.delete(alias);
      const n = (this.targets.get(existing.canonical) ?? 1) - 1;
      if (n === 0) this.targets.delete(existing.canonical);
      else this.targets.set(existing.canonical, n);
      return existing;
    });
  }

  /** Up to `limit` aliases after `after` (exclusive), in path order; `more` if others follow. */
  page(after: string | null, limit: number): { items: AliasRecord[]; more: boolean } {
    const range = after === null ? {} : { start: after, exclusiveStart: true };
    const items: AliasRecord[] = [];
    for (const { value } of this.db.getRange({ ...range, limit: limit + 1 })) items.push(value);
    const more = items.length > limit;
    if (more) items.length = limit;
    return { items, more };
  }

  /**
   * The rules of create() without creating: the existing record when exactly this alias
   * exists, null when it may be created; throws AliasRuleError otherwise. (create() checks
   * again, serialized; this lets a caller refuse before slower checks of its own.)
   */
  check(alias: string, canonical: string): AliasRecord | null {
    const existing = this.byAlias.get(alias);
    if (existing !== undefined) {
      if (existing.canonical === canonical) return existing;
      throw new AliasRuleError(
        "alias_exists",
        `${JSON.stringify(alias)} is already an alias of ${JSON.stringify(existing.canonical)}; delete it first to change its target.`,
      );
    }
    if (alias === canonical) {
      throw new AliasRuleError(
        "alias_is_canonical",
        `An alias cannot name itself (${JSON.stringify(alias)}).`,
      );
    }
    const targetAlias = this.byAlias.get(canonical);
    if (targetAlias !== undefined) {
      throw new AliasRuleError(
        "alias_chain",
        `${JSON.stringify(canonical)} is itself an alias of ${JSON.stringify(targetAlias.canonical)}; point the alias at that canonical path (aliases do not chain).`,
      );
    }
    if (this.targets.has(alias)) {
      throw new AliasRuleError(
        "alias_chain",
        `${JSON.stringify(alias)} is the canonical path of other aliases, so it cannot become an alias (aliases do not chain).`,
      );
    }
    if (this.byAlias.size >= MAX_ALIASES) {
      throw new AliasRuleError(
        "alias_limit",
        `The server holds the maximum of ${MAX_ALIASES} aliases; delete some first.`,
      );
    }
    return null;
  }

  private add(record: AliasRecord): void {
    this.byAlias.set(record.alias, record);
    this.targets.set(record.canonical, (this.targets.get(record.canonical) ?? 0) + 1);
  }

  /** Runs mutations one at a time, in call order, whatever each one's outcome. */
  private serialize<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.tail.then(fn);
    this.tail = run.catch(() => undefined);
    return run;
  }
}
