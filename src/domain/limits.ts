// Every upper bound StemeDB enforces, in one place, with its unit in the name or comment.
// Why: bounds that live next to the code that checks them drift apart; documentation,
// OpenAPI schemas, config validation and tests all import these constants instead.

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

// ---- HTTP requests -------------------------------------------------------------------

/** Largest accepted request body, in bytes (413 beyond). */
export const MAX_BODY_BYTES = 4 * MiB;
/** Most assertions in one `{"assertions":[…]}` batch. */
export const MAX_BATCH_ITEMS = 10_000;
/** Deepest nesting of arrays/objects in a request body (422 `too_deep` beyond). */
export const MAX_JSON_DEPTH = 32;

// ---- WebSocket ingest (WS /v1/stream) -------------------------------------------------

/** Largest accepted WebSocket message, in bytes: the HTTP body bound (uWS closes beyond). */
export const MAX_WS_MESSAGE_BYTES = MAX_BODY_BYTES;
/** Default of STEMEDB_WS_MAX_INFLIGHT: messages a connection may have written and unacked. */
export const DEFAULT_WS_MAX_INFLIGHT = 256;
/** Largest configurable STEMEDB_WS_MAX_INFLIGHT. */
export const MAX_WS_MAX_INFLIGHT = 65_536;
/** Default of STEMEDB_WS_MAX_CONNECTIONS: open WebSocket connections per server. */
export const DEFAULT_WS_MAX_CONNECTIONS = 1024;
/** Largest configurable STEMEDB_WS_MAX_CONNECTIONS. */
export const MAX_WS_MAX_CONNECTIONS = 65_536;

// ---- Assertions ----------------------------------------------------------------------

/** Largest assertion value, measured as UTF-8 bytes of its canonical JSON. */
export const MAX_VALUE_JSON_BYTES = 16 * KiB;
/** Most source ids cited by one assertion. */
export const MAX_SOURCES = 32;
/** Longest opaque identifier (source ids, assertion ids, agent ids), in UTF-16 code units. */
export const MAX_ID_LENGTH = 128;
/** Longest client nonce, in UTF-16 code units. */
export const MAX_NONCE_LENGTH = 128;
/**
 * Largest accepted time value in ms since the epoch (the ECMAScript Date range, year 275760).
 * Keeps every time exactly representable as a double and as an int64.
 */
export const MAX_TIME_MS = 8_640_000_000_000_000;

// ---- Concept paths ----------------------------------------------------------------------

/** Longest canonical concept path, in UTF-8 bytes. */
export const MAX_CONCEPT_PATH_BYTES = 512;
/** Most `/`-separated segments in a concept path. */
export const MAX_CONCEPT_SEGMENTS = 16;
/**
 * Longest raw (not yet normalized) concept string we even try to normalize, in UTF-16 code
 * units. A valid canonical path is ASCII, and ASCII characters have no decompositions, so an
 * accepted raw string is never longer than its canonical form; the slack only lets error
 * messages report the real size of moderately long inputs. Rejecting early bounds the work.
 */
export const MAX_RAW_CONCEPT_LENGTH = 4 * MAX_CONCEPT_PATH_BYTES;

// ---- Queries ----------------------------------------------------------------------------

/** Largest `limit` a query may ask for. */
export const MAX_QUERY_LIMIT = 1000;
/** `limit` used when a query does not give one. */
export const DEFAULT_QUERY_LIMIT = 100;

// ---- Concepts: aliases and suggestions ------------------------------------------------

/** Most aliases the meta store holds; all are kept in memory for resolution without I/O. */
export const MAX_ALIASES = 100_000;
/** Longest `q` of GET /v1/concepts/suggest after normalization, in characters. */
export const MAX_SUGGEST_QUERY_CHARS = 128;
/** Largest `limit` of GET /v1/concepts/suggest. */
export const MAX_SUGGEST_LIMIT = 50;
/** `limit` of GET /v1/concepts/suggest when not given. */
export const DEFAULT_SUGGEST_LIMIT = 10;
/**
 * Concepts one shard scores for one suggest request, at most (its `latest` keys in key order);
 * beyond it the answer says `complete: false`. Bounds the CPU a reader can ask for.
 */
export const MAX_SUGGEST_SCAN_KEYS_PER_SHARD = 20_000;
/** Aliases the main thread scores for one suggest request, at most (then `complete: false`). */
export const MAX_SUGGEST_SCAN_ALIASES = 20_000;

// ---- API keys -------------------------------------------------------------------------

/** Longest principal (agent id) a key may carry, in characters of `[a-zA-Z0-9_.:-]`. */
export const MAX_PRINCIPAL_LENGTH = 128;
/** Most labels on one API key. */
export const MAX_API_KEY_LABELS = 16;
/** Longest label name, in characters of `[a-zA-Z0-9_.:-]`. */
export const MAX_LABEL_KEY_LENGTH = 64;
/** Longest label value, in UTF-16 code units. */
export const MAX_LABEL_VALUE_LENGTH = 256;
/** Most API keys the meta store holds (revoked ones included); all are cached in memory. */
export const MAX_API_KEYS = 100_000;
/** How long a rotated-out secret keeps working unless the rotation says otherwise (24 h). */
export const DEFAULT_KEY_ROTATION_GRACE_S = 86_400;
/** Longest grace period a rotation may give the old secret (30 days). */
export const MAX_KEY_ROTATION_GRACE_S = 2_592_000;

// ---- Shards and storage --------------------------------------------------------------------

/** Most shards a data directory may be created with. */
export const MAX_SHARDS = 256;
/** Smallest WAL segment, in bytes. */
export const MIN_WAL_SEGMENT_BYTES = 1 * MiB;
/** Largest WAL segment, in bytes. */
export const MAX_WAL_SEGMENT_BYTES = 1 * GiB;
/** Default WAL segment size, in bytes. */
export const DEFAULT_WAL_SEGMENT_BYTES = 64 * MiB;
/** WAL I/O alignment (O_DIRECT), in bytes; segment sizes must be a multiple of it. */
export const WAL_ALIGNMENT_BYTES = 4096;
/** Default bound of each shard's inbound queue, in items (503 beyond). */
export const DEFAULT_SHARD_QUEUE_MAX_ITEMS = 65_536;
/** Longest wait before acknowledged records go to LMDB in one commit (STEMEDB_APPLY_DELAY_MS). */
export const DEFAULT_APPLY_DELAY_MS = 20;
export const MAX_APPLY_DELAY_MS = 1000;
/**
 * V8 young generation of each shard worker (STEMEDB_SHARD_YOUNG_GEN_MB): 96 MiB is two 32 MiB
 * semi-spaces, twice Node's default. A shard's per-write objects live until their LMDB commit
 * (~20 ms), so with the default many survive a scavenge and get copied; measured 5-9 % less
 * shard CPU per record with 96 (bench/RESULTS.md, 2026-12-04).
 */
export const DEFAULT_SHARD_YOUNG_GEN_MB = 96;
export const MIN_SHARD_YOUNG_GEN_MB = 16;
export const MAX_SHARD_YOUNG_GEN_MB = 1024;
/** Largest configurable shard queue bound, in items. */
export const MAX_SHARD_QUEUE_MAX_ITEMS = 1_048_576;
/** Largest manifest.json we are willing to read, in bytes (it is ~100 bytes in practice). */
export const MAX_MANIFEST_BYTES = 64 * KiB;

// ---- Knowledge semantics (votes, supersession, epochs, sources, lenses) ----------------

/** Most assertions of one concept a lens looks at (newest first); older ones are ignored. */
export const MAX_LENS_SCAN_ASSERTIONS = 10_000;
/** Most vote records read per assertion when summing votes, newest first (older ignored). */
export const MAX_VOTES_PER_ASSERTION = 10_000;
/** Most concepts one subtree query visits per shard and page. */
export const MAX_SUBTREE_CONCEPTS_SCANNED = 50_000;
/** Longest retraction/decision reason, in UTF-16 code units. */
export const MAX_REASON_LENGTH = 1024;
/** Longest epoch label, in UTF-16 code units. */
export const MAX_EPOCH_LABEL_LENGTH = 256;
/** Most epochs a data directory keeps (each holds one LSN per shard and a trust snapshot). */
export const MAX_EPOCHS = 100_000;
/** Longest source URI / title / kind / content hash, in UTF-16 code units. */
export const MAX_SOURCE_URI_LENGTH = 2048;
export const MAX_SOURCE_TITLE_LENGTH = 1024;
export const MAX_SOURCE_KIND_LENGTH = 64;
export const MAX_SOURCE_HASH_LENGTH = 256;
/** Most assertion ids a source may be derived from. */
export const MAX_SOURCE_DERIVED_FROM = 64;
/** Deepest source → derived_from → assertion → source chain provenance follows. */
export const MAX_PROVENANCE_DEPTH = 8;
/** Most assertions plus sources one provenance answer visits. */
export const MAX_PROVENANCE_NODES = 256;
/** Most votes one provenance answer lists (newest first). */
export const MAX_PROVENANCE_VOTES = 1000;
