// A Bloom filter of every assertion id a shard holds, in front of the duplicate check.
//
// Every write asks "does this id exist?" before it is appended. For a new id (nearly all of
// them) the LMDB lookup that answers it was the largest single cost of a shard's write path
// (a B-tree descent per record: measured 10-30 % of WAL + LMDB throughput on one shard). The
// filter answers "certainly not" for almost all new ids, and the shard then skips both its map
// of uncommitted assertions and LMDB; "maybe" still goes to both, so the filter only ever
// saves lookups and never changes an answer.
//
// It is filled from two sides: every id appended from now on (add), and every id already in
// LMDB, read in bounded chunks in the background after open (the warm-up). Until the warm-up
// is done, mightContain() says "maybe" for everything. When more ids were added than it was
// sized for, it is rebuilt twice as large the same way; past MAX_FILTER_BYTES it stays off.

/** Bits per expected id and probes per id: a false-positive rate of about 0.6 %. */
const BITS_PER_ID = 12;
const PROBES = 4;
/** Smallest capacity, in ids (1.5 MB of bits). */
export const MIN_FILTER_IDS = 1 << 20;
/** Largest filter; a shard with more ids than this covers falls back to LMDB lookups. */
export const MAX_FILTER_BYTES = 256 * 1024 * 1024;
/** Ids read from LMDB per warm-up step (one short read; the shard serves between steps). */
export const WARMUP_CHUNK_IDS = 20_000;

/** Where the warm-up reads existing ids: ids after `after` (exclusive), at most `limit`. */
export type IdSource = (after: string | null, limit: number) => string[];
/** Ids appended and not yet committed to the store (the warm-up cannot see them yet). */
export type UncommittedIds = () => Iterable<string>;

export class IdFilter {
  private bits: Uint32Array;
  private capacityIds: number;
  private addedIds = 0;
  private ready = false;
  private disabled = false;
  private warmup: NodeJS.Immediate | null = null;
  private closed = false;
  /** Bumped on every rebuild: a warm-up step of an older generation stops. */
  private generation = 0;
  /** The last id hashed and its hash: add() right after mightContain() of an id hashes once. */
  private lastId = "";
  private lastHash = 0;

  constructor(
    private readonly source: IdSource,
    private readonly uncommitted: UncommittedIds,
    expectedIds: number,
    private readonly minCapacityIds: number = MIN_FILTER_IDS,
  ) {
    this.capacityIds = 0;
    this.bits = new Uint32Array(0);
    this.rebuild(expectedIds * 2); // room to double before the first rebuild
  }

  /** False only for ids certainly never added nor stored; true means "look it up". */
  mightContain(id: string): boolean {
    return !this.ready || this.probe(id, false);
  }

  /** Records an id about to be stored (call for every appended assertion). */
  add(id: string): void {
    if (this.disabled) return;
    this.set(id);
    this.addedIds++;
    if (this.addedIds > this.capacityIds) this.rebuild(this.addedIds * 2);
  }

  /** Whether the warm-up finished (mightContain can say "no"). */
  get isReady(): boolean {
    return this.ready;
  }

  get sizeBytes(): number {
    return this.bits.byteLength;
  }

  close(): void {
    this.closed = true;
    if (this.warmup !== null) clearImmediate(this.warmup);
    this.warmup = null;
  }

  private set(id: string): void {
    this.probe(id, true);
  }

  /**
   * The id's PROBES bits (double hashing): tests them (`set` false: stops at the first clear
   * one) or sets them. Returns whether all were set before.
   */
  private probe(id: string, set: boolean): boolean {
    let h: number;
    if (id === this.lastId) h = this.lastHash;
    else {
      h = fnv1a(id);
      this.lastId = id;
      this.lastHash = h;
    }
    const step = mix32(h) | 1;
    const bits = this.bits;
    const mask = bits.length * 32 - 1;
    let all = true;
    for (let i = 0; i < PROBES; i++) {
      const bit = h & mask;
      const word = bit >>> 5;
      const m = 1 << (bit & 31);
      if (((bits[word] as number) & m) === 0) {
        if (!set) return false;
        all = false;
        bits[word] = (bits[word] as number) | m;
      }
      h = (h + step) | 0;
    }
    return all;
  }

  /** Starts over with room for `ids` (a power of two bits), filled by a fresh warm-up. */
  private rebuild(ids: number): void {
    if (this.warmup !== null) clearImmediate(this.warmup);
    this.warmup = null;
    this.generation++;
    this.ready = false;
    const wantBits = Math.max(this.minCapacityIds, ids) * BITS_PER_ID;
    let totalBits = 32;
    while (totalBits < wantBits) totalBits *= 2;
    if (totalBits / 8 > MAX_FILTER_BYTES) {
      this.disabled = true;
      this.bits = new Uint32Array(0);
      return;
    }
    this.bits = new Uint32Array(totalBits / 32);
    this.capacityIds = Math.floor(totalBits / BITS_PER_ID);
    // Ids added from here on are set by add(); the warm-up sets every id stored before it
    // reads past its key. What is left are ids added earlier and committed after the scan
    // passed them: they are uncommitted now, so set them here.
    this.addedIds = 0;
    for (const id of this.uncommitted()) {
      this.set(id);
      this.addedIds++;
    }
    // A rebuild can start inside add(), on a write's path: the first read waits for the next
    // turn like every other step.
    const generation = this.generation;
    this.warmup = setImmediate(() => this.step(generation, null));
  }

  private step(generation: number, after: string | null): void {
    if (this.closed || generation !== this.generation) return;
    let ids: string[];
    try {
      ids = this.source(after, WARMUP_CHUNK_IDS);
    } catch {
      // The store closed or failed under the warm-up: stay at "maybe" (LMDB answers).
      return;
    }
    for (const id of ids) {
      this.set(id);
      this.addedIds++;
    }
    if (ids.length < WARMUP_CHUNK_IDS) {
      this.ready = true;
      if (this.addedIds > this.capacityIds) this.rebuild(this.addedIds * 2);
      return;
    }
    const last = ids[ids.length - 1] as string;
    this.warmup = setImmediate(() => this.step(generation, last));
  }
}

/** FNV-1a over UTF-16 code units (ids are ASCII hex), 32 bits. */
function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** murmur3's finalizer: the second hash of double hashing, derived from the first. */
function mix32(x: number): number {
  let h = x ^ (x >>> 16);
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}
