// `stemedb verify` and `stemedb wal dump` against a data directory written by the real server
// (child process, real HTTP, real fsync), then damaged on purpose: a flipped byte in an
// acknowledged WAL record, a deleted by_concept entry, a wrong manifest, a torn WAL tail.
// The CLI runs as a child process (`node dist/src/cli/main.js`), exactly as operators run it.
import { spawnSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { open } from "lmdb";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { VerifyReport } from "../src/cli/verify.js";
import type { DumpResult } from "../src/cli/wal_dump.js";
import { decodeAssertion } from "../src/store/assertion_codec.js";
import { listSegments, recoverWal } from "../src/wal/recovery.js";
import {
  api,
  createKey,
  newDataDir,
  readAdminKeyFile,
  startServerProcess,
} from "./helpers/server_process.js";

const CLI = path.join(path.dirname(fileURLToPath(import.meta.url)), "../src/cli/main.js");
const CLI_TIMEOUT_MS = 60_000;
const REQUESTS = 20;
const PER_REQUEST = 10;
const TOTAL = REQUESTS * PER_REQUEST;
const SHARDS = 2;
const CONCEPTS = 37;

interface CliResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

function cli(...args: string[]): CliResult {
  const r = spawnSync(process.execPath, [CLI, ...args], {
    encoding: "utf8",
    timeout: CLI_TIMEOUT_MS,
    // The CLI must not pick up a data directory from the environment of the test run.
    env: { ...process.env, STEMEDB_DATA_DIR: "", STEMEDB_WAL_DIR: "", STEMEDB_DB_DIR: "" },
  });
  return { status: r.status, stdout: r.stdout ?? "", stderr: r.stderr ?? "" };
}

function verifyJson(dataDir: string): { status: number | null; report: VerifyReport } {
  const r = cli("verify", "--data-dir", dataDir, "--json");
  return { status: r.status, report: JSON.parse(r.stdout) as VerifyReport };
}

const dirs: string[] = [];
/** Written by a server that was then SIGKILLed after every write was applied. */
let pristine = "";
/** A copy of `pristine` after a restart and a clean stop. */
let cleanStopped = "";

/** A fresh copy of the directory the server wrote, for one damage scenario. */
function copyOfPristine(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "stemedb-"));
  dirs.push(dir);
  fs.cpSync(pristine, dir, { recursive: true });
  return dir;
}

function shard0Wal(dataDir: string): string {
  return path.join(dataDir, "wal", "shard-000");
}

/** sha256 of every file under dir, except LMDB's lock file (a reader table, not data). */
function hashTree(dir: string): Map<string, string> {
  const hashes = new Map<string, string>();
  const walk = (d: string): void => {
    for (const ent of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, ent.name);
      if (ent.isDirectory()) walk(p);
      else if (ent.name === "lock.mdb") hashes.set(p, "(lock file)");
      else hashes.set(p, crypto.createHash("sha256").update(fs.readFileSync(p)).digest("hex"));
    }
  };
  walk(dir);
  return hashes;
}

beforeAll(async () => {
  pristine = newDataDir();
  dirs.push(pristine);
  const server = await startServerProcess({ dataDir: pristine, shards: SHARDS });
  try {
    const admin = readAdminKeyFile(pristine);
    const agent = api(server.baseUrl, await createKey(server.baseUrl, admin, "agent", "cli-agent"));
    // Sequential requests: each one is flushed as its own WAL batch per shard, so a damaged
    // early record is followed by intact records of later batches.
    for (let r = 0; r < REQUESTS; r++) {
      const assertions = Array.from({ length: PER_REQUEST }, (_, i) => ({
        concept: `verify/c${(r * PER_REQUEST + i) % CONCEPTS}`,
        value: { r, i },
        confidence: 0.5 + i / 100,
      }));
      const res = await agent.request("POST", "/v1/assert", { assertions });
      expect(res.status).toBe(201);
    }
    // History reads wait for LMDB's pending commits, so after these every write is applied.
    const reader = api(server.baseUrl, await createKey(server.baseUrl, admin, "reader"));
    for (let c = 0; c < CONCEPTS; c++) {
      const res = await reader.request("GET", `/v1/query?concept=verify/c${c}&lens=history`);
      expect(res.status).toBe(200);
    }
  } finally {
    // A crash, not a clean stop: a clean stop's final checkpoint recycles every WAL segment,
    // and these tests need the log.
    await server.kill9();
  }
  // And the same data after a restart (replay) and a clean stop: an empty WAL.
  cleanStopped = fs.mkdtempSync(path.join(os.tmpdir(), "stemedb-"));
  dirs.push(cleanStopped);
  fs.cpSync(pristine, cleanStopped, { recursive: true });
  const again = await startServerProcess({ dataDir: cleanStopped, shards: SHARDS });
  expect(await again.stop()).toBe(0);
});

afterAll(() => {
  for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
});

describe("stemedb verify", () => {
  it("passes on a directory written by a cleanly stopped server, with matching counts", () => {
    const { status, report } = verifyJson(pristine);
    expect(report.problems).toEqual([]);
    for (const s of report.shards) expect(s.problems).toEqual([]);
    expect(status).toBe(0);
    expect(report.ok).toBe(true);
    expect(report.manifest.shard_count).toBe(SHARDS);
    expect(report.shards.map((s) => s.shard)).toEqual([0, 1]);
    const sum = (f: (s: VerifyReport["shards"][number]) => number): number =>
      report.shards.reduce((n, s) => n + f(s), 0);
    expect(sum((s) => s.lmdb?.records ?? 0)).toBe(TOTAL);
    expect(sum((s) => s.lmdb?.by_concept ?? 0)).toBe(TOTAL);
    expect(sum((s) => s.lmdb?.by_agent ?? 0)).toBe(TOTAL);
    expect(sum((s) => s.lmdb?.latest ?? 0)).toBe(CONCEPTS);
    expect(sum((s) => s.lmdb?.active ?? 0)).toBe(TOTAL); // every insert active, none changed
    expect(sum((s) => s.wal?.records ?? 0)).toBe(TOTAL);
    for (const s of report.shards) {
      expect(s.wal?.torn_tails).toBe(0);
      expect(s.wal?.last_lsn).toBe(s.lmdb?.applied_lsn);
      expect(s.wal_records_above_applied).toBe(0);
    }

    const human = cli("verify", "--data-dir", pristine);
    expect(human.status).toBe(0);
    expect(human.stdout).toMatch(/^shard 0: ok: WAL 1 segment\(s\), LSN 1\.\.\d+/m);
    expect(human.stdout).toContain("result: OK: 2 shard(s), 0 problem(s), 0 warning(s)");
  });

  it("passes after a clean stop, whose final checkpoint keeps only the newest WAL segment", () => {
    const { status, report } = verifyJson(cleanStopped);
    expect(status).toBe(0);
    expect(report.shards.reduce((n, s) => n + (s.lmdb?.records ?? 0), 0)).toBe(TOTAL);
    for (const s of report.shards) {
      // Kept so that seqs continue after a restart (docs/wal.md); all of it checkpointed.
      expect(s.wal?.segments).toBe(1);
      expect(s.warnings).toEqual([]);
    }
    const human = cli("verify", "--data-dir", cleanStopped);
    expect(human.stdout).toContain("WAL 1 segment(s)");
  });

  it("fails, naming segment and offset, when an acknowledged WAL record is corrupt", () => {
    const dir = copyOfPristine();
    const seg = listSegments(shard0Wal(dir), 0)[0];
    if (seg === undefined) throw new Error("shard 0 has no WAL segment");
    // The first record (LSN 1) starts at 4096; flip a byte of its payload. Later batches follow.
    const fd = fs.openSync(seg.path, "r+");
    const b = Buffer.alloc(1);
    fs.readSync(fd, b, 0, 1, 4096 + 32 + 8);
    b[0] = (b[0] as number) ^ 0xff;
    fs.writeSync(fd, b, 0, 1, 4096 + 32 + 8);
    fs.closeSync(fd);

    const { status, report } = verifyJson(dir);
    expect(status).toBe(1);
    expect(report.ok).toBe(false);
    const s0 = report.shards[0];
    expect(s0?.ok).toBe(false);
    expect(s0?.wal?.corruption?.segment).toBe(seg.path);
    expect(s0?.wal?.corruption?.offset_bytes).toBe(4096);
    expect(report.shards[1]?.ok).toBe(true);

    const human = cli("verify", "--data-dir", dir);
    expect(human.status).toBe(1);
    expect(human.stdout).toContain(
      `problem: WAL corruption in shard 0, segment ${seg.path}, byte offset 4096`,
    );
    expect(human.stdout).toContain("later batches");
    expect(human.stdout).toContain("result: FAILED");

    const dump = cli("wal", "dump", "--shard", "0", "--data-dir", dir);
    expect(dump.status).toBe(1);
    expect(dump.stdout).toContain("CORRUPTION");
  });

  it("fails when a by_concept index entry is missing", async () => {
    const dir = copyOfPristine();
    const env = open({ path: path.join(dir, "db", "shard-000"), maxDbs: 32, compression: false });
    const byConcept = env.openDB<Buffer, [string, number]>({
      name: "by_concept",
      encoding: "binary",
      compression: false,
    });
    const records = env.openDB<Buffer, number>({
      name: "records",
      encoding: "binary",
      compression: false,
    });
    let removed: { key: [string, number]; id: string } | null = null;
    for (const key of byConcept.getKeys({ limit: 1 })) {
      const stored = records.get(key[1]);
      if (stored === undefined) throw new Error(`no record at lsn ${key[1]}`);
      removed = { key, id: decodeAssertion(stored).id };
    }
    if (removed === null) throw new Error("by_concept of shard 0 is empty");
    expect(byConcept.removeSync(removed.key)).toBe(true);
    await env.close();

    const { status, report } = verifyJson(dir);
    expect(status).toBe(1);
    const problems = report.shards[0]?.problems ?? [];
    expect(problems).toContain(
      `by_concept entry missing for record ${removed.id} (concept "${removed.key[0]}", lsn ${removed.key[1]})`,
    );
    expect(problems.some((p) => p.startsWith("index sizes differ"))).toBe(true);
    const human = cli("verify", "--data-dir", dir);
    expect(human.status).toBe(1);
    expect(human.stdout).toContain(`problem: by_concept entry missing for record ${removed.id}`);
  });

  it("fails when the active index lacks an active record", async () => {
    const dir = copyOfPristine();
    const env = open({ path: path.join(dir, "db", "shard-000"), maxDbs: 32, compression: false });
    const active = env.openDB<Buffer, [string, number]>({
      name: "active",
      encoding: "binary",
      compression: false,
    });
    let removed: [string, number] | null = null;
    for (const key of active.getKeys({ limit: 1 })) removed = key;
    if (removed === null) throw new Error("active of shard 0 is empty");
    expect(active.removeSync(removed)).toBe(true);
    await env.close();

    const { status, report } = verifyJson(dir);
    expect(status).toBe(1);
    const problems = report.shards[0]?.problems ?? [];
    expect(problems).toContain(`active lacks ["${removed[0]}", ${removed[1]}], which is active`);
    expect(
      problems.some((p) => /^active has \d+ entries, but \d+ records are active$/.test(p)),
    ).toBe(true);
  });

  it("warns about a format 2 env (upgraded at the next start) instead of failing", async () => {
    const dir = copyOfPristine();
    for (const shard of ["shard-000", "shard-001"]) {
      const env = open({ path: path.join(dir, "db", shard), maxDbs: 32, compression: false });
      const active = env.openDB({ name: "active", encoding: "binary", compression: false });
      await active.drop();
      const meta = env.openDB<number, string>({ name: "meta", encoding: "ordered-binary" });
      await meta.put("format_version", 2);
      await env.close();
    }
    const { status, report } = verifyJson(dir);
    expect(report.shards.flatMap((s) => s.problems)).toEqual([]);
    expect(status).toBe(0);
    expect(report.shards[0]?.warnings.join("\n")).toMatch(/store format 2/);
  });

  it("fails when the meta store is missing beside shard data", () => {
    const dir = copyOfPristine();
    const metaFile = path.join(dir, "meta", "data.mdb");
    expect(fs.existsSync(metaFile)).toBe(true);
    fs.rmSync(metaFile);
    const { status, report } = verifyJson(dir);
    expect(status).toBe(1);
    expect(report.problems).toContain(`${metaFile} is missing`);
  });

  it("fails when the manifest's shard count does not match the shard directories", () => {
    const dir = copyOfPristine();
    const file = path.join(dir, "manifest.json");
    const manifest = JSON.parse(fs.readFileSync(file, "utf8")) as { shard_count: number };
    fs.writeFileSync(file, JSON.stringify({ ...manifest, shard_count: 1 }));
    const one = verifyJson(dir);
    expect(one.status).toBe(1);
    expect(one.report.problems.join("\n")).toContain(
      "manifest shard_count is 1 but shard directories exist for shard(s) 1",
    );
    fs.rmSync(file);
    const none = verifyJson(dir);
    expect(none.status).toBe(1);
    expect(none.report.problems.join("\n")).toContain("manifest.json is missing");
  });

  it("reports a torn tail as a warning and modifies no file", () => {
    const dir = copyOfPristine();
    const walDir = shard0Wal(dir);
    const tail = recoverWal({
      dir: walDir,
      shardId: 0,
      checkpointLsn: 0,
      repair: false,
      readOnly: true,
      onRecord: () => {},
    });
    const seg = tail.segments[tail.segments.length - 1];
    if (seg === undefined || tail.tailWriteOffsetBytes === null) throw new Error("no tail");
    // A half-written batch: garbage where the next batch would start.
    const fd = fs.openSync(seg.path, "r+");
    fs.writeSync(fd, Buffer.alloc(100, 0xab), 0, 100, tail.tailWriteOffsetBytes);
    fs.closeSync(fd);

    const before = hashTree(dir);
    const { status, report } = verifyJson(dir);
    const human = cli("verify", "--data-dir", dir);
    const dump = cli("wal", "dump", "--shard", "0", "--data-dir", dir, "--limit", "5");
    const dumpAll = cli("wal", "dump", "--shard", "0", "--data-dir", dir, "--limit", "1000");
    expect(hashTree(dir)).toEqual(before);

    expect(status).toBe(0);
    expect(report.ok).toBe(true);
    expect(report.shards[0]?.wal?.torn_tails).toBe(1);
    expect(report.shards[0]?.warnings.join("\n")).toContain("torn tail");
    expect(human.stdout).toMatch(/warning: WAL has a torn tail after LSN \d+/);
    expect(dump.status).toBe(0);
    expect(dumpAll.stdout).toContain("torn tail after it");
  });
});

describe("stemedb wal dump", () => {
  it("prints shard 0's records with their assertions", () => {
    const r = cli("wal", "dump", "--shard", "0", "--data-dir", pristine, "--limit", "3");
    expect(r.status).toBe(0);
    const lines = r.stdout.trim().split("\n");
    expect(lines[0]).toMatch(/^shard 0 WAL .*shard-000: 1 segment\(s\)/);
    expect(lines[1]).toMatch(
      /^wal-0{15}1\.seg lsn=1 kind=assertion_insert\(1\) bytes=\d+ id=[0-9a-f]{32} concept=verify\/c\d+ agent=cli-agent status=active confidence=0\.\d+ value=\{"i":\d,"r":\d+\}$/,
    );
    expect(lines[3]).toContain("lsn=3 ");
    expect(lines[4]).toContain("3 record(s) (LSN 1..3); more follow");

    const json = cli("wal", "dump", "--shard", "0", "--data-dir", pristine, "--json");
    expect(json.status).toBe(0);
    const dump = JSON.parse(json.stdout) as DumpResult;
    const verified = verifyJson(pristine).report.shards[0];
    expect(dump.records.length).toBe(Math.min(100, verified?.wal?.records ?? -1));
    expect(dump.records[0]?.assertion?.agent).toBe("cli-agent");

    const from = JSON.parse(
      cli("wal", "dump", "--shard", "0", "--data-dir", pristine, "--from-lsn", "5", "--json")
        .stdout,
    ) as DumpResult;
    expect(from.records[0]?.lsn).toBe(5);
  });

  it("rejects bad command lines with exit status 2", () => {
    expect(cli("wal", "dump", "--data-dir", pristine).status).toBe(2); // no --shard
    expect(cli("wal", "dump", "--shard", "x", "--data-dir", pristine).status).toBe(2);
    expect(cli("wal", "dump", "--shard", "7", "--data-dir", pristine).status).toBe(2);
    expect(cli("verify", "--bogus").status).toBe(2);
    expect(cli("verify", "--data-dir", path.join(pristine, "nope")).status).toBe(2);
    expect(cli("frobnicate").status).toBe(2);
    expect(cli("wal").status).toBe(2);
    const help = cli("--help");
    expect(help.status).toBe(0);
    for (const name of ["verify", "wal dump", "backup", "restore", "dr-drill"]) {
      expect(help.stdout).toMatch(new RegExp(`^  ${name} +\\S`, "m"));
    }
    expect(cli("verify", "--help").stdout).toContain("Stop the server first");
  });
});
