#!/usr/bin/env node
// Regenerates the TypeScript FlatBuffers accessors from src/schema/stemedb.fbs.
//
//   node scripts/gen_flatbuffers.mjs [--out DIR]      (default DIR: src/schema/generated)
//
// flatc (2.0.x) emits relative imports without file extensions, which NodeNext module
// resolution rejects. So flatc writes into a temporary directory, every relative import
// specifier gets a ".js" suffix, and the result replaces DIR. The transformation is
// deterministic (sorted file walk, fixed header), so test/schema_codegen.test.ts can
// regenerate into a temp dir and compare byte-for-byte with the committed files.
//
// Exit codes: 0 ok, 2 usage error, 3 flatc missing or failed.

import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const SCHEMA_PATH = path.join(REPO_ROOT, "src", "schema", "stemedb.fbs");
const DEFAULT_OUT_DIR = path.join(REPO_ROOT, "src", "schema", "generated");
const FLATC = process.env.FLATC || "flatc";
// The flatc major.minor the committed output was produced with. A different flatc emits
// different code, so the byte-for-byte check would fail anyway; say so clearly instead.
export const EXPECTED_FLATC_VERSION_PREFIX = "flatc version 2.0.";
const MAX_GENERATED_FILES = 64; // bound on the walk; the schema yields 3 files today

/** Returns flatc's `--version` line, or null when flatc cannot be run. */
export function flatcVersion() {
  const res = spawnSync(FLATC, ["--version"], { encoding: "utf8" });
  if (res.error || res.status !== 0) return null;
  return res.stdout.trim();
}

/** Appends ".js" to relative import/export specifiers that have no extension. */
export function fixImports(source) {
  return source.replace(
    /(\bfrom\s+)(['"])(\.{1,2}\/[^'"]+)\2/g,
    (_m, pre, quote, spec) => `${pre}${quote}${spec.endsWith(".js") ? spec : `${spec}.js`}${quote}`,
  );
}

function listFilesSorted(dir, base = dir, out = []) {
  const entries = fs.readdirSync(dir, { withFileTypes: true });
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const e of entries) {
    const full = path.join(dir, e.name);
    if (e.isDirectory()) listFilesSorted(full, base, out);
    else if (e.isFile()) out.push(path.relative(base, full));
    if (out.length > MAX_GENERATED_FILES) {
      throw new Error(`flatc produced more than ${MAX_GENERATED_FILES} files; refusing`);
    }
  }
  return out;
}

/**
 * Runs flatc and writes the post-processed output into outDir (replacing its contents).
 * Returns the generated file paths relative to outDir, sorted.
 */
export function generate(outDir = DEFAULT_OUT_DIR) {
  const version = flatcVersion();
  if (version === null) {
    const err = new Error(`flatc not found (tried "${FLATC}"); install flatbuffers-compiler`);
    err.exitCode = 3;
    throw err;
  }
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "stemedb-flatc-"));
  try {
    const res = spawnSync(FLATC, ["--ts", "--gen-mutable", "-o", tmp, SCHEMA_PATH], {
      encoding: "utf8",
    });
    if (res.error || res.status !== 0) {
      const err = new Error(`flatc failed (${res.status}): ${res.stderr || res.error}`);
      err.exitCode = 3;
      throw err;
    }
    const files = listFilesSorted(tmp).filter((f) => f.endsWith(".ts"));
    fs.rmSync(outDir, { recursive: true, force: true });
    for (const rel of files) {
      const src = fs.readFileSync(path.join(tmp, rel), "utf8");
      const dest = path.join(outDir, rel);
      fs.mkdirSync(path.dirname(dest), { recursive: true });
      fs.writeFileSync(dest, fixImports(src));
    }
    return files;
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

function main(argv) {
  let outDir = DEFAULT_OUT_DIR;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--out" && i + 1 < argv.length) {
      outDir = path.resolve(argv[++i]);
    } else {
      process.stderr.write(`usage: gen_flatbuffers.mjs [--out DIR]\n`);
      return 2;
    }
  }
  const version = flatcVersion();
  if (version !== null && !version.startsWith(EXPECTED_FLATC_VERSION_PREFIX)) {
    process.stderr.write(
      `warning: ${version} differs from the expected "${EXPECTED_FLATC_VERSION_PREFIX}x"; ` +
        "the output will not match the committed files\n",
    );
  }
  try {
    const files = generate(outDir);
    process.stdout.write(
      `wrote ${files.length} files to ${path.relative(process.cwd(), outDir) || "."}\n`,
    );
    return 0;
  } catch (err) {
    process.stderr.write(`${err.message}\n`);
    return err.exitCode ?? 1;
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.exitCode = main(process.argv.slice(2));
}
