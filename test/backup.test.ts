import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { runBackup } from "../src/cli/backup.js";
import { runDrDrill } from "../src/cli/dr_drill.js";
import { runRestore } from "../src/cli/restore.js";
import { readBackupManifest } from "../src/store/backup_manifest.js";
import {
  api,
  createKey,
  newDataDir,
  readAdminKeyFile,
  type ServerProcess,
  startServerProcess,
} from "./helpers/server_process.js";

const scratch = newDataDir();
const servers: ServerProcess[] = [];
afterAll(async () => {
  for (const s of servers) await s.kill9();
  fs.rmSync(scratch, { recursive: true, force: true });
});

describe("backup and restore", () => {
  it("backs up online during ingest, restores elsewhere, and keeps every write acknowledged before the cut", async () => {
    const dataDir = path.join(scratch, "data");
    fs.mkdirSync(dataDir);
    const server = await startServerProcess({ dataDir });
    servers.push(server);
    const adminKey = readAdminKeyFile(dataDir);
    const agentKey = await createKey(server.baseUrl, adminKey, "agent");
    const agent = api(server.baseUrl, agentKey);
    const acked: Array<{ id: string; atMs: number }> = [];
    let running = true;
    const load = Promise.all(
      Array.from({ length: 8 }, async (_, c) => {
        for (let i = 0; running; i++) {
          const res = await agent.request("POST", "/v1/assert", {
            concept: `bk/c${c}/n${i}`,
            value: i,
            confidence: 0.5,
          });
          if (res.status === 201)
            acked.push({ id: (res.json as { id: string }).id, atMs: Date.now() });
        }
      }),
    );
    await new Promise((r) => setTimeout(r, 600));
    const backupDir = path.join(scratch, "backup");
    const startedMs = Date.now();
    const code = await runBackup([
      "--to",
      backupDir,
      "--url",
      server.baseUrl,
      "--key",
      adminKey,
      "--json",
    ]);
    expect(code).toBe(0);
    await new Promise((r) => setTimeout(r, 200));
    running = false;
    await load;
    const before = acked.filter((a) => a.atMs < startedMs);
    expect(before.length).toBeGreaterThan(50);

    const manifest = readBackupManifest(backupDir);
    expect(manifest.shard_count).toBe(2);
    expect(manifest.files.some((f) => f.path.startsWith("wal/shard-000/wal-"))).toBe(true);
    expect(manifest.files.some((f) => f.path === "db/shard-001/data.mdb")).toBe(true);
    expect(manifest.files.some((f) => f.path === "meta/data.mdb")).toBe(true);

    const restoredDir = path.join(scratch, "restored");
    expect(await runRestore(["--from", backupDir, "--data-dir", restoredDir, "--json"])).toBe(0);
    // Offline verification of the restored directory (WAL CRCs, LMDB, indexes) passes.
    const cli = path.join(path.dirname(fileURLToPath(import.meta.url)), "../src/cli/main.js");
    const verify = spawnSync(process.execPath, [cli, "verify", "--data-dir", restoredDir], {
      encoding: "utf8",
    });
    expect(verify.status, verify.stdout + verify.stderr).toBe(0);
    const restored = await startServerProcess({ dataDir: restoredDir });
    servers.push(restored);
    // Keys come back with the meta store: the old agent key still reads.
    const reader = api(restored.baseUrl, agentKey);
    let missing = 0;
    for (const a of before)
      if ((await reader.request("GET", `/v1/assertions/${a.id}`)).status !== 200) missing++;
    expect(missing).toBe(0);

    // A non-empty target is refused without --force.
    expect(await runRestore(["--from", backupDir, "--data-dir", restoredDir])).toBe(1);
    // A target that holds the backup is refused even with --force, and nothing is deleted.
    await expect(
      runRestore(["--from", backupDir, "--data-dir", path.dirname(backupDir), "--force"]),
    ).rejects.toThrow(/overlap/);
    expect(fs.existsSync(path.join(backupDir, "backup.json"))).toBe(true);
    // Separate WAL and LMDB directories (STEMEDB_WAL_DIR / STEMEDB_DB_DIR) get their parts.
    const split = path.join(scratch, "split");
    const walDir = path.join(split, "wal-elsewhere");
    const dbDir = path.join(split, "db-elsewhere");
    const dataOnly = path.join(split, "data");
    expect(
      await runRestore([
        "--from",
        backupDir,
        "--data-dir",
        dataOnly,
        "--wal-dir",
        walDir,
        "--db-dir",
        dbDir,
      ]),
    ).toBe(0);
    expect(fs.readdirSync(walDir).some((d) => d.startsWith("shard-"))).toBe(true);
    expect(fs.readdirSync(dbDir).some((d) => d.startsWith("shard-"))).toBe(true);
    expect(fs.existsSync(path.join(dataOnly, "wal"))).toBe(false);
    expect(fs.existsSync(path.join(dataOnly, "db"))).toBe(false);
    expect(fs.existsSync(path.join(dataOnly, "manifest.json"))).toBe(true);
  });

  it("detects a corrupted backup before writing anything", async () => {
    const backupDir = path.join(scratch, "backup");
    const manifest = readBackupManifest(backupDir);
    const seg = manifest.files.find((f) => f.path.startsWith("wal/")) as { path: string };
    const file = path.join(backupDir, seg.path);
    const bytes = fs.readFileSync(file);
    bytes[5000] = (bytes[5000] as number) ^ 0xff;
    fs.writeFileSync(file, bytes);
    const target = path.join(scratch, "never-written");
    expect(await runRestore(["--from", backupDir, "--data-dir", target])).toBe(1);
    expect(fs.existsSync(target)).toBe(false);
  });

  it("runs the DR drill end to end", async () => {
    const code = await runDrDrill([
      "--load-ms",
      "800",
      "--clients",
      "4",
      "--work-dir",
      path.join(scratch, "drill"),
    ]);
    expect(code).toBe(0);
  });
});
