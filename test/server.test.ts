import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseExposition } from "./helpers/prom_text.js";
import {
  api,
  newDataDir,
  ServerExitError,
  type ServerProcess,
  startServerProcess,
  startServerWithKeys,
} from "./helpers/server_process.js";

interface ItemResult {
  id: string;
  status: string;
  shard: number;
  lsn: number;
  duplicate: boolean;
}
interface Page {
  lens: string;
  items: Array<Record<string, unknown>>;
  next_cursor: string | null;
}

let dataDir: string;
let server: ServerProcess;
let adminKey: string;
let agentKey: string;
let readerKey: string;

beforeAll(async () => {
  ({ dataDir, server, adminKey, agentKey, readerKey } = await startServerWithKeys("agent-alpha"));
});

afterAll(async () => {
  await server?.kill9();
  fs.rmSync(dataDir, { recursive: true, force: true });
});

describe("server", () => {
  it("prints the generated admin key once and stores it with mode 0600", () => {
    expect(server.printedAdminKey).toBe(adminKey);
    const mode = fs.statSync(path.join(dataDir, "admin.key")).mode & 0o777;
    expect(mode).toBe(0o600);
    expect(server.stdout.filter((l) => l.includes(adminKey)).length).toBe(1);
  });

  it("reports health with the native HTTP engine and per-shard WAL state", async () => {
    const res = await api(server.baseUrl, null).request("GET", "/v1/health");
    expect(res.status).toBe(200);
    const body = res.json as {
      status: string;
      http_engine: string;
      shards: Array<Record<string, unknown>>;
    };
    expect(body.status).toBe("ok");
    expect(body.http_engine).toBe("native");
    expect(body.shards.length).toBe(2);
    expect(body.shards[0]).toMatchObject({ shard: 0, status: "ok", wal_mode: "direct" });
    expect(res.headers.get("x-request-id")).toBeTruthy();
  });

  it("ingests an assertion after fsync, answers latest and history, and is idempotent", async () => {
    const agent = api(server.baseUrl, agentKey);
    const first = await agent.request("POST", "/v1/assert", {
      concept: "Cities/Paris/Population",
      value: 2_102_650,
      confidence: 0.9,
    });
    expect(first.status).toBe(201);
    const item = first.json as ItemResult;
    expect(item.id).toMatch(/^[0-9a-f]{32}$/);
    expect(item.duplicate).toBe(false);
    expect(item.lsn).toBeGreaterThan(0);

    const retry = await agent.request("POST", "/v1/assert", {
      concept: "cities/paris/population",
      value: 2_102_650,
      confidence: 0.9,
    });
    expect(retry.status).toBe(201);
    expect(retry.json).toMatchObject({ id: item.id, duplicate: true, lsn: item.lsn });

    const second = await agent.request("POST", "/v1/assert", {
      concept: "cities/paris/population",
      value: 2_103_000,
      confidence: 0.8,
      sources: ["insee-2024"],
    });
    expect(second.status).toBe(201);

    const reader = api(server.baseUrl, readerKey);
    const got = await reader.request("GET", `/v1/assertions/${item.id}`);
    expect(got.status).toBe(200);
    expect(got.json).toMatchObject({
      id: item.id,
      concept: "cities/paris/population",
      agent: "agent-alpha",
      value: 2_102_650,
      status: "active",
    });

    const latest = await reader.request(
      "GET",
      "/v1/query?concept=cities/paris/population&lens=latest",
    );
    expect(latest.status).toBe(200);
    expect((latest.json as Page).items.map((i) => i.value)).toEqual([2_103_000]);

    const history = await reader.request(
      "GET",
      "/v1/query?concept=cities/paris/population&lens=history&limit=1",
    );
    const page1 = history.json as Page;
    expect(page1.items.map((i) => i.value)).toEqual([2_103_000]);
    expect(page1.next_cursor).not.toBeNull();
    const history2 = await reader.request(
      "GET",
      `/v1/query?concept=cities/paris/population&lens=history&limit=1&cursor=${encodeURIComponent(page1.next_cursor as string)}`,
    );
    expect((history2.json as Page).items.map((i) => i.value)).toEqual([2_102_650]);
  });

  it("splits a batch across shards and answers per item in request order", async () => {
    const agent = api(server.baseUrl, agentKey);
    const assertions = Array.from({ length: 60 }, (_, i) => ({
      concept: `batch/c${i}`,
      value: { n: i },
      confidence: 0.5,
    }));
    const res = await agent.request("POST", "/v1/assert", { assertions });
    expect(res.status).toBe(201);
    const results = (res.json as { results: ItemResult[] }).results;
    expect(results.length).toBe(60);
    expect(new Set(results.map((r) => r.shard)).size).toBe(2);
    const reader = api(server.baseUrl, readerKey);
    for (const [i, r] of results.entries()) {
      const got = await reader.request("GET", `/v1/assertions/${r.id}`);
      expect(got.json).toMatchObject({
        concept: `batch/c${i}`,
        value: { n: i },
        shard: r.shard,
        lsn: r.lsn,
      });
    }
    // The subtree answer is merged from both shards, ordered by concept, and pages.
    const seen: string[] = [];
    let cursor: string | null = null;
    for (let pageNo = 0; pageNo < 10; pageNo++) {
      const q: string = `/v1/query?concept=batch/*&lens=latest&limit=25${cursor === null ? "" : `&cursor=${encodeURIComponent(cursor)}`}`;
      const page = (await reader.request("GET", q)).json as Page;
      seen.push(...page.items.map((i) => i.concept as string));
      cursor = page.next_cursor;
      if (cursor === null) break;
    }
    expect(seen).toEqual(assertions.map((a) => a.concept).sort());
  });

  it("serves an OpenAPI 3.1 document whose request bodies are the validating schemas", async () => {
    const res = await api(server.baseUrl, null).request("GET", "/v1/openapi.json");
    expect(res.status).toBe(200);
    const doc = res.json as {
      openapi: string;
      paths: Record<
        string,
        Record<
          string,
          {
            requestBody?: { content: Record<string, { schema: { anyOf?: unknown[] } }> };
            parameters?: Array<{ name: string; in: string; required: boolean; schema: unknown }>;
          }
        >
      >;
    };
    expect(doc.openapi).toBe("3.1.0");
    expect(Object.keys(doc.paths)).toEqual(
      expect.arrayContaining(["/v1/assert", "/v1/assertions/{id}", "/v1/query", "/v1/health"]),
    );
    const schema = doc.paths["/v1/assert"]?.post?.requestBody?.content["application/json"]?.schema;
    expect(schema?.anyOf?.length).toBe(2);
    // Query parameters come from the schema that validates them too (src/server/query_params.ts).
    expect(doc.paths["/v1/query"]?.get?.parameters).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ name: "concept", in: "query", required: true }),
        expect.objectContaining({
          name: "limit",
          required: false,
          schema: expect.objectContaining({ type: "integer", minimum: 1, maximum: 1000 }),
        }),
      ]),
    );
  });

  it("exports one /metrics with shard labels and the names the design lists", async () => {
    const res = await api(server.baseUrl, null).request("GET", "/metrics");
    expect(res.status).toBe(200);
    // Strict text-format parse of the real exporter (throws on anything Prometheus rejects).
    const families = parseExposition(res.text);
    // DESIGN §5: the WAL, storage, HTTP, error, query and assertion names, and Node's own.
    for (const name of [
      "stemedb_wal_fsync_latency_seconds",
      "stemedb_wal_writes_total",
      "stemedb_wal_bytes_written_total",
      "stemedb_wal_write_errors_total",
      "stemedb_wal_disk_usage_bytes",
      "stemedb_wal_segments_count",
      "stemedb_wal_batch_size",
      "stemedb_wal_flush_latency_seconds",
      "stemedb_wal_recovery_attempts_total",
      "stemedb_wal_recovery_duration_seconds",
      "stemedb_wal_rotations_total",
      "stemedb_storage_operation_duration_seconds",
      "stemedb_storage_operations_total",
      "stemedb_index_lookup_duration_seconds",
      "stemedb_http_requests_total",
      "stemedb_http_request_duration_seconds",
      "stemedb_errors_total",
      "stemedb_query_latency_seconds",
      "stemedb_assertions_total",
      "stemedb_quarantine_pending",
      "stemedb_circuit_breaker_state",
      "nodejs_eventloop_lag_seconds",
    ]) {
      expect(families.has(name), name).toBe(true);
    }
    // Every WAL, storage and index series says which shard it is, and both shards report.
    for (const family of families.values()) {
      if (!/^stemedb_(wal|storage|index)_/.test(family.name)) continue;
      for (const sample of family.samples)
        expect(sample.labels, sample.name).toHaveProperty("shard");
    }
    const writes = families.get("stemedb_wal_writes_total")?.samples ?? [];
    expect(writes.map((s) => s.labels.shard).sort()).toEqual(["0", "1"]);
    for (const sample of writes) expect(sample.value).toBeGreaterThan(0);
    const routes = new Set(
      families.get("stemedb_http_requests_total")?.samples.map((s) => s.labels.route),
    );
    expect(routes.has("/v1/assert")).toBe(true);
    expect(routes.has("/v1/assertions/:id")).toBe(true);
    expect(res.text).not.toContain("/v1/assertions/0");
  });

  it("takes the first admin key from STEMEDB_ADMIN_KEY, without printing or writing it", async () => {
    const envKey = `stm_abcdefghijkl_${"Q".repeat(43)}`;
    const envDir = newDataDir();
    const envServer = await startServerProcess({
      dataDir: envDir,
      env: { STEMEDB_ADMIN_KEY: envKey },
    });
    try {
      expect(envServer.printedAdminKey).toBeNull();
      expect(envServer.stdout.some((l) => l.includes(envKey))).toBe(false);
      expect(fs.existsSync(path.join(envDir, "admin.key"))).toBe(false);
      const made = await api(envServer.baseUrl, envKey).request("POST", "/v1/admin/api_keys", {
        role: "reader",
      });
      expect(made.status).toBe(201);
      const wrong = await api(envServer.baseUrl, `stm_abcdefghijkl_${"R".repeat(43)}`).request(
        "POST",
        "/v1/admin/api_keys",
        { role: "reader" },
      );
      expect(wrong.status).toBe(401);
    } finally {
      await envServer.kill9();
      fs.rmSync(envDir, { recursive: true, force: true });
    }
  });

  it("keeps everything across a clean restart and refuses a different shard count", async () => {
    const reader = api(server.baseUrl, readerKey);
    const before = (await reader.request("GET", "/v1/query?concept=batch/*&lens=latest&limit=1000"))
      .json as Page;
    expect(await server.stop()).toBe(0);

    const refused = await startServerProcess({ dataDir, shards: 3 }).then(
      () => null,
      (err: unknown) => err,
    );
    expect(refused).toBeInstanceOf(ServerExitError);
    expect((refused as ServerExitError).exitCode).toBe(2);
    expect((refused as ServerExitError).output).toContain("STEMEDB_SHARDS=2");

    // Shard data without the meta store (keys, agents, trust, …) is refused, not started
    // over with an empty one.
    const metaFile = path.join(dataDir, "meta", "data.mdb");
    fs.renameSync(metaFile, `${metaFile}.aside`);
    const noMeta = await startServerProcess({ dataDir }).then(
      async (started) => {
        await started.kill9(); // it should not have started: do not leave it running
        return null;
      },
      (err: unknown) => err,
    );
    fs.renameSync(`${metaFile}.aside`, metaFile);
    expect(noMeta).toBeInstanceOf(ServerExitError);
    expect((noMeta as ServerExitError).exitCode).toBe(2);
    expect((noMeta as ServerExitError).output).toContain("Restore meta/ from a backup");

    server = await startServerProcess({ dataDir });
    expect(server.printedAdminKey).toBeNull();
    const after = (
      await api(server.baseUrl, readerKey).request(
        "GET",
        "/v1/query?concept=batch/*&lens=latest&limit=1000",
      )
    ).json as Page;
    expect(after.items).toEqual(before.items);
  });
});
