// The committed FlatBuffers TypeScript must be exactly what scripts/gen_flatbuffers.mjs
// produces from src/schema/stemedb.fbs, so nobody edits generated code by hand or forgets
// to regenerate after a schema change.
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

// Compiled to dist/test/, so the repository root is two levels up.
const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const SCRIPT = path.join(REPO_ROOT, "scripts", "gen_flatbuffers.mjs");
const COMMITTED_DIR = path.join(REPO_ROOT, "src", "schema", "generated");
const FLATC = process.env.FLATC || "flatc";
const EXPECTED_FLATC_PREFIX = "flatc version 2.0.";

function listFiles(dir: string, base = dir): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...listFiles(full, base));
    else if (e.isFile()) out.push(path.relative(base, full));
  }
  return out.sort();
}

const probe = spawnSync(FLATC, ["--version"], { encoding: "utf8" });
const flatcVersion = probe.error || probe.status !== 0 ? null : probe.stdout.trim();
if (flatcVersion === null) {
  console.warn(`schema_codegen: skipped, flatc not found ("${FLATC}"); CI installs it`);
}

describe.skipIf(flatcVersion === null)("flatbuffers codegen", () => {
  it("committed src/schema/generated matches a fresh regeneration byte for byte", () => {
    expect(
      flatcVersion?.startsWith(EXPECTED_FLATC_PREFIX),
      `committed code was generated with ${EXPECTED_FLATC_PREFIX}x, found "${flatcVersion}"`,
    ).toBe(true);
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "stemedb-"));
    try {
      const out = path.join(tmp, "generated");
      const res = spawnSync(process.execPath, [SCRIPT, "--out", out], { encoding: "utf8" });
      expect(res.status, res.stderr).toBe(0);
      const fresh = listFiles(out);
      expect(fresh.length).toBeGreaterThan(0);
      expect(listFiles(COMMITTED_DIR)).toEqual(fresh);
      for (const rel of fresh) {
        const a = fs.readFileSync(path.join(out, rel));
        const b = fs.readFileSync(path.join(COMMITTED_DIR, rel));
        expect(b.equals(a), `${rel} differs; run npm run gen:flatbuffers`).toBe(true);
      }
      // Every relative import is NodeNext-ready.
      for (const rel of fresh) {
        const src = fs.readFileSync(path.join(out, rel), "utf8");
        for (const m of src.matchAll(/from\s+['"](\.{1,2}\/[^'"]+)['"]/g)) {
          expect(m[1]?.endsWith(".js"), `${rel}: ${m[1]}`).toBe(true);
        }
      }
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });
});
