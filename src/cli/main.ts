#!/usr/bin/env node
// `stemedb`: the operations command line. Dispatches to one module per command, loaded on
// demand (so `--help` does not load LMDB or the WAL addon, and commands that are not part of
// this build — their module is absent — say so instead of breaking the others).
//
// Exit status for every command: 0 ok, 1 a check failed (or the command failed), 2 usage error.
import fs from "node:fs";
import { fileURLToPath, pathToFileURL } from "node:url";
import { EXIT_FAILED, EXIT_OK, EXIT_USAGE, out, UsageError } from "./args.js";

type Runner = (argv: string[]) => Promise<number>;

interface Command {
  name: string;
  summary: string;
  /** Module next to this file and the function it exports. */
  module: string;
  exportName: string;
}

const COMMANDS: readonly Command[] = [
  {
    name: "verify",
    summary:
      "check WAL CRCs and LSNs, LMDB records and indexes, and the manifest (offline, read-only)",
    module: "./verify.js",
    exportName: "runVerify",
  },
  {
    name: "wal dump",
    summary: "print a shard's WAL records (segment, LSN, kind, assertion) for debugging",
    module: "./wal_dump.js",
    exportName: "runWalDump",
  },
  {
    name: "backup",
    summary: "online, consistent backup of a running server with a checksummed manifest",
    module: "./backup.js",
    exportName: "runBackup",
  },
  {
    name: "restore",
    summary: "restore a backup into a data directory",
    module: "./restore.js",
    exportName: "runRestore",
  },
  {
    name: "dr-drill",
    summary: "disaster-recovery drill: backup, wipe, restore, verify",
    module: "./dr_drill.js",
    exportName: "runDrDrill",
  },
  {
    name: "sizing",
    summary: "recommend shard and vCPU counts from the measured basis of npm run bench:sizing",
    module: "./sizing.js",
    exportName: "runSizing",
  },
];

function moduleUrl(cmd: Command): URL {
  return new URL(cmd.module, import.meta.url);
}

function available(cmd: Command): boolean {
  return fs.existsSync(fileURLToPath(moduleUrl(cmd)));
}

/** The command's runner, or null when its module is not part of this build. */
async function load(cmd: Command): Promise<Runner | null> {
  // Checked up front so that an error inside a present module is reported, not hidden.
  if (!available(cmd)) return null;
  const mod = (await import(moduleUrl(cmd).href)) as Record<string, unknown>;
  const fn = mod[cmd.exportName];
  return typeof fn === "function" ? (fn as Runner) : null;
}

function version(): string {
  try {
    const url = new URL("../../../package.json", import.meta.url);
    return (JSON.parse(fs.readFileSync(url, "utf8")) as { version: string }).version;
  } catch {
    return "unknown";
  }
}

export function helpText(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length)) + 2;
  const lines = [
    "Usage: stemedb <command> [options]",
    "",
    "Commands:",
    ...COMMANDS.map(
      (c) =>
        `  ${c.name.padEnd(width)}${c.summary}${available(c) ? "" : " (not available in this build)"}`,
    ),
    "",
    'Run "stemedb <command> --help" for the options of a command.',
    "Data directory: --data-dir, else $STEMEDB_DATA_DIR, else ./data (as the server).",
    "Exit status: 0 ok, 1 a check failed, 2 usage error.",
  ];
  return lines.join("\n");
}

function usageError(message: string, cmdName: string | null): number {
  const prefix = cmdName === null ? "stemedb" : `stemedb ${cmdName}`;
  const hint = cmdName === null ? "stemedb --help" : `stemedb ${cmdName} --help`;
  process.stderr.write(`${prefix}: ${message}\nRun "${hint}" for usage.\n`);
  return EXIT_USAGE;
}

/** Finds the command named by argv; returns it with the remaining arguments. */
function resolve(argv: string[]): { cmd: Command; rest: string[] } | string {
  const [first, second, ...more] = argv;
  if (first === "wal") {
    const dump = COMMANDS.find((c) => c.name === "wal dump");
    if ((second === "--help" || second === "-h") && dump !== undefined) {
      return { cmd: dump, rest: ["--help"] };
    }
    if (second === undefined || second.startsWith("-")) {
      return 'the "wal" command needs a subcommand: "stemedb wal dump --shard N"';
    }
    const cmd = COMMANDS.find((c) => c.name === `wal ${second}`);
    return cmd === undefined ? `unknown subcommand "wal ${second}"` : { cmd, rest: more };
  }
  const cmd = COMMANDS.find((c) => c.name === first);
  if (cmd === undefined) return `unknown command "${first ?? ""}"`;
  return { cmd, rest: argv.slice(1) };
}

export async function main(argv: string[]): Promise<number> {
  const first = argv[0];
  if (first === undefined) {
    process.stderr.write(`${helpText()}\n`);
    return EXIT_USAGE;
  }
  if (first === "--help" || first === "-h") {
    out(helpText());
    return EXIT_OK;
  }
  if (first === "--version" || first === "-V") {
    out(version());
    return EXIT_OK;
  }
  // `stemedb help <command...>` is `stemedb <command...> --help`.
  if (first === "help") {
    if (argv.length === 1) {
      out(helpText());
      return EXIT_OK;
    }
    return main([...argv.slice(1), "--help"]);
  }
  const found = resolve(argv);
  if (typeof found === "string") return usageError(found, null);
  const { cmd, rest } = found;
  const run = await load(cmd);
  if (run === null) {
    process.stderr.write(`stemedb ${cmd.name}: not available in this build\n`);
    return EXIT_FAILED;
  }
  try {
    return await run(rest);
  } catch (err) {
    if (err instanceof UsageError) return usageError(err.message, cmd.name);
    // The message names the problem; the stack is for bug reports.
    const debug = process.env.STEMEDB_DEBUG === "1";
    const detail =
      err instanceof Error ? (debug ? (err.stack ?? err.message) : err.message) : String(err);
    process.stderr.write(`stemedb ${cmd.name}: error: ${detail}\n`);
    return EXIT_FAILED;
  }
}

function isEntryPoint(): boolean {
  const script = process.argv[1];
  if (script === undefined) return false;
  try {
    // npm installs the bin as a symlink: compare real paths.
    return import.meta.url === pathToFileURL(fs.realpathSync(script)).href;
  } catch {
    return false;
  }
}

if (isEntryPoint()) {
  // `stemedb wal dump | head` closes stdout early: that is not an error.
  process.stdout.on("error", (err: NodeJS.ErrnoException) => {
    if (err.code === "EPIPE") process.exit(process.exitCode ?? EXIT_OK);
    throw err;
  });
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(
        `stemedb: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
      );
      process.exitCode = EXIT_FAILED;
    },
  );
}
