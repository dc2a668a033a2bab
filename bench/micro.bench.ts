// `npm run bench:micro`: tinybench micro-benchmarks of the per-request work on the main
// thread (parse, validate, id, route, encode, auth) and of the WAL framing on the shard thread.
import fs from "node:fs";
import { Bench } from "tinybench";
import { routableAssertionId } from "../src/domain/routable_id.js";
import { shardForConcept } from "../src/domain/shard_hash.js";
import { parseAssertRequest } from "../src/server/schemas.js";
import { encodeAssertion } from "../src/store/assertion_codec.js";
import { MetaStore } from "../src/store/meta_store.js";
import { writeRecord } from "../src/wal/format.js";
import { nativeWal } from "../src/wal/native.js";
import { benchDir, machineLine, table } from "./stats.js";

const body = Buffer.from(
  JSON.stringify({ concept: "bench/s1/t0/c42", value: 42, confidence: 0.5, sources: ["wrk"] }),
);
const parsed = parseAssertRequest(body).items[0];
if (parsed === undefined) throw new Error("no item");
const idInput = {
  agent: "bench-agent",
  concept: parsed.concept,
  valueJson: parsed.valueJson,
  confidence: parsed.confidence,
  sources: parsed.sources,
  validFromMs: null,
  validToMs: null,
  nonce: null,
};
const record = {
  id: routableAssertionId(idInput),
  concept: parsed.concept,
  agent: "bench-agent",
  valueJson: parsed.valueJson,
  confidence: 0.5,
  sources: parsed.sources,
  validFromMs: null,
  validToMs: null,
  nonce: null,
  recordedAtMs: Date.now(),
  epoch: 0,
  shard: 0,
  lsn: 0,
  status: "active" as const,
  supersedes: null,
  supersededBy: null,
  authorTrust: 0.5,
  quarantineReason: null,
};
const dir = benchDir("micro");
const machine = machineLine(dir);
const meta = MetaStore.open(dir);
const { key } = await meta.createKey({ role: "agent", principal: "bench-agent" });
const encoded = encodeAssertion(record);
const staging = nativeWal.allocAligned(1024 * 1024);
const payload150 = Buffer.alloc(150, 1);

const bench = new Bench({ time: 500 });
bench
  .add("parseAssertRequest (JSON + TypeBox + normalize)", () => {
    parseAssertRequest(body);
  })
  .add("routableAssertionId (FNV + SHA-256)", () => {
    routableAssertionId(idInput);
  })
  .add("shardForConcept", () => {
    shardForConcept(parsed.concept, 2);
  })
  .add("encodeAssertion (FlatBuffers)", () => {
    encodeAssertion(record);
  })
  .add("MetaStore.verify (SHA-256 + timingSafeEqual)", () => {
    meta.verify(key, Date.now());
  })
  .add("WAL writeRecord 150 B (frame + CRC32C)", () => {
    writeRecord(staging, 0, 1, 1, 1, payload150);
  })
  .add(`WAL writeRecord ${encoded.byteLength} B assertion`, () => {
    writeRecord(staging, 0, 1, 1, 1, encoded);
  });
await bench.run();
await meta.close();
fs.rmSync(dir, { recursive: true, force: true });
const rows = bench.tasks.map((t) => {
  const r = t.result as unknown as {
    latency?: { mean: number; p99?: number };
    throughput?: { mean: number };
  };
  return {
    task: t.name,
    "mean µs": ((r.latency?.mean ?? Number.NaN) * 1000).toFixed(2),
    "p99 µs": ((r.latency?.p99 ?? Number.NaN) * 1000).toFixed(2),
    "ops/s": Math.round(r.throughput?.mean ?? Number.NaN),
  };
});
const text = `# micro — ${machine}\n\n${table(rows)}\n`;
process.stdout.write(text);
fs.mkdirSync("bench/results", { recursive: true });
fs.writeFileSync("bench/results/micro.md", text);
