// Small helpers shared by the `stemedb` subcommands: exit codes, usage errors, the data
// directory options (same defaults and overrides as the server, see src/config.ts) and
// bounded integer options. Argument parsing itself is node:util parseArgs, strict.
import path from "node:path";
import { parseArgs } from "node:util";

export const EXIT_OK = 0;
/** A check failed (verify found a problem, the WAL is corrupt, ...). */
export const EXIT_FAILED = 1;
/** The command line was wrong: unknown option, bad value, missing argument. */
export const EXIT_USAGE = 2;

/** Thrown by a command for a bad command line; main prints it with the command's usage. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** The parseArgs options every data-directory command accepts. */
export const DIR_OPTIONS = {
  "data-dir": { type: "string" },
  "wal-dir": { type: "string" },
  "db-dir": { type: "string" },
  json: { type: "boolean", default: false },
  help: { type: "boolean", short: "h", default: false },
} as const;

export const DIR_OPTIONS_HELP = [
  "  --data-dir D   data directory (default: $STEMEDB_DATA_DIR or ./data)",
  "  --wal-dir W    WAL root (default: $STEMEDB_WAL_DIR or <data-dir>/wal)",
  "  --db-dir B     LMDB root (default: $STEMEDB_DB_DIR or <data-dir>/db)",
  "  --json         print one machine-readable JSON document instead of the summary",
  "  -h, --help     show this help",
].join("\n");

/**
 * Runs a parseArgs call and turns its errors (unknown option, missing value, stray
 * positional) into a UsageError, so they exit 2 with the command's usage.
 */
export function parseOrUsage<T>(parse: () => T): T {
  try {
    return parse();
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (typeof code === "string" && code.startsWith("ERR_PARSE_ARGS")) {
      throw new UsageError((err as Error).message);
    }
    throw err;
  }
}

export interface DataDirs {
  dataDir: string;
  walDir: string;
  dbDir: string;
}

type Env = Record<string, string | undefined>;

function nonEmpty(v: string | undefined): string | undefined {
  if (v === undefined) return undefined;
  const trimmed = v.trim();
  return trimmed === "" ? undefined : trimmed;
}

/** Flags win over the environment, which wins over the defaults (as in loadConfig). */
export function resolveDataDirs(
  values: { "data-dir"?: string; "wal-dir"?: string; "db-dir"?: string },
  env: Env = process.env,
): DataDirs {
  const dataDir = path.resolve(
    nonEmpty(values["data-dir"]) ?? nonEmpty(env.STEMEDB_DATA_DIR) ?? "./data",
  );
  const walDir = path.resolve(
    nonEmpty(values["wal-dir"]) ?? nonEmpty(env.STEMEDB_WAL_DIR) ?? path.join(dataDir, "wal"),
  );
  const dbDir = path.resolve(
    nonEmpty(values["db-dir"]) ?? nonEmpty(env.STEMEDB_DB_DIR) ?? path.join(dataDir, "db"),
  );
  if (walDir === dbDir) {
    throw new UsageError(`the WAL directory and the LMDB directory are the same (${walDir})`);
  }
  return { dataDir, walDir, dbDir };
}

/** A decimal integer option in [min, max]; `dflt` when absent. */
export function intOption(
  name: string,
  text: string | undefined,
  dflt: number | null,
  min: number,
  max: number,
): number {
  if (text === undefined) {
    if (dflt === null) throw new UsageError(`--${name} is required`);
    return dflt;
  }
  const n = /^[0-9]{1,16}$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new UsageError(
      `--${name} must be an integer in [${min}, ${max}], got ${JSON.stringify(text)}`,
    );
  }
  return n;
}

/** The conventional shard directory name (see shardDirs in src/shard/shard_core.ts). */
export const SHARD_DIR_RE = /^shard-([0-9]{3,5})$/;

/** Writes to stdout; the text gets a trailing newline. */
export function out(text: string): void {
  process.stdout.write(text.endsWith("\n") ? text : `${text}\n`);
}

export function printJson(value: unknown): void {
  out(JSON.stringify(value, null, 2));
}

/** Shortens long strings for one-line human output. */
export function clip(text: string, maxChars: number): string {
  return text.length <= maxChars ? text : `${text.slice(0, maxChars - 1)}…`;
}

type OptionSpec = Record<string, { type: "string" | "boolean"; default?: string | boolean }>;
export type CommandValues = Record<string, string | boolean | undefined>;

/**
 * parseArgs for one command, with the shared conventions: a parse error prints the message
 * and the usage (exit 2); `--help` prints the usage (exit 0). Returns the values, or the exit
 * code the command should return.
 */
export function parseCommand(
  argv: string[],
  options: OptionSpec,
  usage: string,
): CommandValues | number {
  let values: CommandValues;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: { ...options, help: { type: "boolean", default: false } },
    }));
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n${usage}\n`);
    return EXIT_USAGE;
  }
  if (values.help === true) {
    process.stdout.write(`${usage}\n`);
    return EXIT_OK;
  }
  return values;
}
