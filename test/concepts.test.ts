// /v1/concepts against a real server child process (2 shards) over real HTTP.
import fs from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { shardForConcept } from "../src/domain/shard_hash.js";
import {
  type Api,
  api,
  type ServerProcess,
  startServerProcess,
  startServerWithKeys,
} from "./helpers/server_process.js";

interface ItemResult {
  id: string;
  shard: number;
  lsn: number;
  duplicate: boolean;
}
interface Page {
  concept: string;
  items: Array<Record<string, unknown>>;
  next_cursor: string | null;
}
interface ErrorBody {
  error: { code: string; message: string; request_id: string };
}

const SHARDS = 2;
let dataDir: string;
let server: ServerProcess;
let keys: { admin: string; agent: string; reader: string };
let admin: Api;
let agent: Api;
let reader: Api;

function connect(): void {
  admin = api(server.baseUrl, keys.admin);
  agent = api(server.baseUrl, keys.agent);
  reader = api(server.baseUrl, keys.reader);
}

beforeAll(async () => {
  const s = await startServerWithKeys("agent-concepts");
  ({ dataDir, server } = s);
  keys = { admin: s.adminKey, agent: s.agentKey, reader: s.readerKey };
  connect();
});

const canonical = "infra/db/primary/latency_ms";
// An alias path on the other shard, so routing by the canonical path is visible.
const alias = [
  "pg/latency",
  "pg/primary/latency",
  "postgres/latency",
  "dbp/lat",
  "latency/pg",
].find((a) => shardForConcept(a, SHARDS) !== shardForConcept(canonical, SHARDS)) as string;

afterAll(async () => {
  await server?.kill9();
  fs.rmSync(dataDir, { recursive: true, force: true });
});

function expectError(
  res: { status: number; json: unknown; headers: Headers },
  status: number,
  code: string,
): void {
  expect(res.status, JSON.stringify(res.json)).toBe(status);
  const body = res.json as ErrorBody;
  expect(body.error.code).toBe(code);
  expect(body.error.message.length).toBeGreaterThan(0);
  expect(body.error.request_id).toBe(res.headers.get("x-request-id"));
}

async function write(concept: string, value: unknown): Promise<ItemResult> {
  const res = await agent.request("POST", "/v1/assert", { concept, value, confidence: 0.9 });
  expect(res.status, res.text).toBe(201);
  return res.json as ItemResult;
}

describe("concepts: suggest", () => {
  it("ranks typos, transpositions and reordered words across shards and aliases", async () => {
    const concepts = [
      "cities/paris/population",
      "cities/paris/populations",
      "population/paris/cities",
      "cities/london/population",
      "cities/paris/area",
      "hosts/web-1/cpu",
    ];
    // The candidates live on both shards, so the answer is a merge.
    expect(new Set(concepts.map((c) => shardForConcept(c, SHARDS))).size).toBe(SHARDS);
    for (const c of concepts) await write(c, 1);
    const alias = await admin.request("POST", "/v1/concepts/alias", {
      alias: "city/paris/population",
      canonical: "cities/paris/population",
    });
    expect(alias.status, alias.text).toBe(201);

    const res = await reader.request("GET", "/v1/concepts/suggest?q=Cities/Pairs/Population");
    expect(res.status, res.text).toBe(200);
    expect(res.json).toEqual({
      q: "cities/pairs/population",
      items: [
        {
          path: "cities/paris/population",
          kind: "concept",
          canonical: "cities/paris/population",
          score: 0.9565,
        },
        {
          path: "cities/paris/populations",
          kind: "concept",
          canonical: "cities/paris/populations",
          score: 0.9167,
        },
        {
          path: "population/paris/cities",
          kind: "concept",
          canonical: "population/paris/cities",
          score: 0.84,
        },
        {
          path: "city/paris/population",
          kind: "alias",
          canonical: "cities/paris/population",
          score: 0.8261,
        },
        {
          path: "cities/london/population",
          kind: "concept",
          canonical: "cities/london/population",
          score: 0.75,
        },
        {
          path: "cities/paris/area",
          kind: "concept",
          canonical: "cities/paris/area",
          score: 0.5652,
        },
      ],
      // 6 shard concepts + the alias path + its canonical path (also scored from the snapshot).
      scanned: 8,
      complete: true,
    });

    const top2 = await reader.request(
      "GET",
      "/v1/concepts/suggest?q=cities/pairs/population&limit=2",
    );
    expect((top2.json as { items: Array<{ path: string }> }).items.map((i) => i.path)).toEqual([
      "cities/paris/population",
      "cities/paris/populations",
    ]);
    // The same words in another order (and other separators) match both orders equally.
    const reordered = await reader.request(
      "GET",
      `/v1/concepts/suggest?q=${encodeURIComponent("paris cities population")}&limit=3`,
    );
    expect((reordered.json as { items: unknown[] }).items).toEqual([
      expect.objectContaining({ path: "cities/paris/population", score: 0.9 }),
      expect.objectContaining({ path: "population/paris/cities", score: 0.9 }),
      expect.objectContaining({ path: "cities/paris/populations" }),
    ]);
  });

  it("validates q and limit", async () => {
    expectError(await reader.request("GET", "/v1/concepts/suggest"), 400, "missing_query");
    expectError(
      await reader.request("GET", `/v1/concepts/suggest?q=${"a".repeat(129)}`),
      422,
      "query_too_long",
    );
    for (const limit of ["0", "51", "x", "1.5"]) {
      expectError(
        await reader.request("GET", `/v1/concepts/suggest?q=a&limit=${limit}`),
        422,
        "invalid_limit",
      );
    }
    expectError(
      await api(server.baseUrl, null).request("GET", "/v1/concepts/suggest?q=a"),
      401,
      "missing_api_key",
    );
  });
});

describe("concepts: aliases", () => {
  it("routes writes and queries via an alias to the canonical path, with the same id", async () => {
    expect(alias).toBeDefined();
    const created = await admin.request("POST", "/v1/concepts/alias", {
      alias: alias.toUpperCase(),
      canonical,
    });
    expect(created.status, created.text).toBe(201);
    const shard = shardForConcept(canonical, SHARDS);
    expect(created.json).toMatchObject({
      alias,
      canonical,
      shard,
      created_by: "admin",
      created: true,
    });

    const viaAlias = await write(alias, 12.5);
    expect(viaAlias).toMatchObject({ shard, duplicate: false });
    const viaCanonical = await write(canonical, 12.5);
    expect(viaCanonical).toMatchObject({
      id: viaAlias.id,
      shard,
      lsn: viaAlias.lsn,
      duplicate: true,
    });
    const retry = await write(alias, 12.5);
    expect(retry).toMatchObject({ id: viaAlias.id, duplicate: true });

    const batch = await agent.request("POST", "/v1/assert", {
      assertions: [
        { concept: alias, value: 13, confidence: 0.5 },
        { concept: canonical, value: 13, confidence: 0.5 },
      ],
    });
    const results = (batch.json as { results: ItemResult[] }).results;
    expect(results[0]?.id).toBe(results[1]?.id);
    expect(results.map((r) => r.shard)).toEqual([shard, shard]);

    const stored = await reader.request("GET", `/v1/assertions/${viaAlias.id}`);
    expect(stored.json).toMatchObject({ concept: canonical, value: 12.5, shard });
    for (const q of [canonical, alias]) {
      const latest = (await reader.request("GET", `/v1/query?concept=${q}&lens=latest`))
        .json as Page;
      expect(latest.concept).toBe(canonical);
      expect(latest.items.map((i) => i.value)).toEqual([13]);
      const history = (await reader.request("GET", `/v1/query?concept=${q}&lens=history`))
        .json as Page;
      expect(history.items.map((i) => i.value)).toEqual([13, 12.5]);
    }
  });

  it("applies the alias rules with the documented statuses", async () => {
    const again = await admin.request("POST", "/v1/concepts/alias", { alias, canonical });
    expect(again.status).toBe(200);
    expect(again.json).toMatchObject({ alias, canonical, created: false });
    const post = (body: unknown) => admin.request("POST", "/v1/concepts/alias", body);
    expectError(await post({ alias, canonical: "infra/other" }), 409, "alias_exists");
    expectError(await post({ alias: "x/y", canonical: "X/Y/" }), 422, "alias_is_canonical");
    expectError(await post({ alias: "chain/a", canonical: alias }), 409, "alias_chain");
    expectError(await post({ alias: canonical, canonical: "chain/b" }), 409, "alias_chain");
    expectError(await post({ alias: "a//b", canonical: "c" }), 422, "invalid_concept_path");
    expectError(await post({ alias: "a", canonical: "c", extra: 1 }), 422, "invalid_request");
    expectError(await post({ alias: "a" }), 422, "invalid_request");
    expectError(await post("{not json"), 400, "malformed_json");
    expectError(
      await admin.request("POST", "/v1/concepts/alias", "a=b", { "content-type": "text/plain" }),
      415,
      "unsupported_media_type",
    );
    expectError(
      await agent.request("POST", "/v1/concepts/alias", { alias: "a", canonical: "c" }),
      403,
      "forbidden",
    );
    expectError(
      await reader.request("DELETE", `/v1/concepts/alias?path=${alias}`),
      403,
      "forbidden",
    );
  });

  it("refuses to hide stored assertions behind a new alias unless forced", async () => {
    const old = await write("legacy/cpu_load", 0.7);
    const body = { alias: "legacy/cpu_load", canonical: "infra/hosts/cpu_load" };
    expectError(await admin.request("POST", "/v1/concepts/alias", body), 409, "alias_path_in_use");
    const forced = await admin.request("POST", "/v1/concepts/alias", { ...body, force: true });
    expect(forced.status, forced.text).toBe(201);
    // Exact queries now resolve; the old assertion stays readable by id and by the literal subtree.
    const exact = (await reader.request("GET", "/v1/query?concept=legacy/cpu_load")).json as Page;
    expect(exact).toMatchObject({ concept: "infra/hosts/cpu_load", items: [] });
    const subtree = (await reader.request("GET", "/v1/query?concept=legacy/*")).json as Page;
    expect(subtree.items.map((i) => i.id)).toEqual([old.id]);
    expect((await reader.request("GET", `/v1/assertions/${old.id}`)).status).toBe(200);
  });

  it("resolves, lists with a cursor, and deletes", async () => {
    const resolved = await reader.request("GET", `/v1/concepts/alias?path=${alias}`);
    expect(resolved.status).toBe(200);
    expect(resolved.json).toMatchObject({
      alias,
      canonical,
      shard: shardForConcept(canonical, SHARDS),
    });
    expectError(
      await reader.request("GET", `/v1/concepts/alias?path=${canonical}`),
      404,
      "alias_not_found",
    );
    expectError(await reader.request("GET", "/v1/concepts/alias"), 400, "missing_path");
    expectError(
      await reader.request("GET", "/v1/concepts/alias?path=a/*"),
      422,
      "invalid_concept_path",
    );

    const all: string[] = [];
    let cursor: string | null = null;
    for (let i = 0; i < 10; i++) {
      const q: string = `/v1/concepts/aliases?limit=1${cursor === null ? "" : `&cursor=${cursor}`}`;
      const page = (await reader.request("GET", q)).json as {
        items: Array<{ alias: string }>;
        next_cursor: string | null;
      };
      all.push(...page.items.map((a) => a.alias));
      cursor = page.next_cursor;
      if (cursor === null) break;
    }
    expect(all).toEqual([alias, "city/paris/population", "legacy/cpu_load"].sort());
    expectError(
      await reader.request("GET", "/v1/concepts/aliases?cursor=bm9wZQ"),
      400,
      "invalid_cursor",
    );
    expectError(
      await reader.request("GET", "/v1/concepts/aliases?limit=1001"),
      422,
      "invalid_limit",
    );

    const deleted = await admin.request("DELETE", "/v1/concepts/alias?path=legacy/cpu_load");
    expect(deleted.json).toMatchObject({ alias: "legacy/cpu_load", deleted: true });
    expectError(
      await admin.request("DELETE", "/v1/concepts/alias?path=legacy/cpu_load"),
      404,
      "alias_not_found",
    );
    // Without the alias the exact query reads the literal path again.
    const literal = (await reader.request("GET", "/v1/query?concept=legacy/cpu_load")).json as Page;
    expect(literal.items.map((i) => i.value)).toEqual([0.7]);
  });
});

describe("concepts: parse", () => {
  it("shows normalization, canonical path, alias and shard", async () => {
    const plain = await reader.request("GET", "/v1/concepts/parse?path=/Cities/Paris/Area/");
    expect(plain.json).toEqual({
      input: "/Cities/Paris/Area/",
      normalized: "cities/paris/area",
      valid: true,
      canonical: "cities/paris/area",
      alias_of: null,
      shard: shardForConcept("cities/paris/area", SHARDS),
      segments: ["cities", "paris", "area"],
      subtree: false,
    });
    const viaAlias = await reader.request("GET", "/v1/concepts/parse?path=City/Paris/Population");
    expect(viaAlias.json).toMatchObject({
      normalized: "city/paris/population",
      canonical: "cities/paris/population",
      alias_of: "cities/paris/population",
      shard: shardForConcept("cities/paris/population", SHARDS),
    });
    const subtree = await reader.request("GET", "/v1/concepts/parse?path=city/paris/population/*");
    expect(subtree.json).toMatchObject({
      normalized: "city/paris/population",
      canonical: "city/paris/population",
      alias_of: null,
      shard: null,
      subtree: true,
    });
    expectError(
      await reader.request("GET", "/v1/concepts/parse?path=a//b"),
      422,
      "invalid_concept_path",
    );
    expectError(
      await reader.request("GET", "/v1/concepts/parse?path=a%20b"),
      422,
      "invalid_concept_path",
    );
    expectError(await reader.request("GET", "/v1/concepts/parse"), 400, "missing_path");
  });

  it("lists every concepts route in the OpenAPI document", async () => {
    const doc = (await api(server.baseUrl, null).request("GET", "/v1/openapi.json")).json as {
      paths: Record<string, Record<string, { "x-stemedb-role": string; parameters: unknown[] }>>;
    };
    expect(doc.paths["/v1/concepts/alias"]?.post?.["x-stemedb-role"]).toBe("admin");
    expect(doc.paths["/v1/concepts/alias"]?.delete?.["x-stemedb-role"]).toBe("admin");
    expect(doc.paths["/v1/concepts/alias"]?.get?.["x-stemedb-role"]).toBe("reader");
    for (const p of ["/v1/concepts/aliases", "/v1/concepts/suggest", "/v1/concepts/parse"])
      expect(doc.paths[p]?.get?.["x-stemedb-role"], p).toBe("reader");
    expect(doc.paths["/v1/concepts/suggest"]?.get?.parameters).toEqual([
      expect.objectContaining({ name: "q", in: "query", required: true }),
      expect.objectContaining({
        name: "limit",
        in: "query",
        schema: { type: "integer", minimum: 1, maximum: 50, default: 10 },
      }),
    ]);
  });
});

describe("concepts: restart", () => {
  it("keeps acknowledged aliases across kill -9 and routes by them after restart", async () => {
    const created = await admin.request("POST", "/v1/concepts/alias", {
      alias: "after/kill",
      canonical: "infra/survivor",
    });
    expect(created.status).toBe(201);
    await server.kill9();
    server = await startServerProcess({ dataDir });
    connect();
    expect((await reader.request("GET", "/v1/concepts/alias?path=after/kill")).json).toMatchObject({
      canonical: "infra/survivor",
    });
    const res = await agent.request("POST", "/v1/assert", {
      concept: "after/kill",
      value: true,
      confidence: 1,
    });
    expect(res.status).toBe(201);
    const got = await reader.request("GET", `/v1/assertions/${(res.json as ItemResult).id}`);
    expect(got.json).toMatchObject({ concept: "infra/survivor" });
    const parse = await reader.request("GET", `/v1/concepts/parse?path=${alias}`);
    expect((parse.json as { alias_of: string | null }).alias_of).toBe(canonical);
    const list = (await reader.request("GET", "/v1/concepts/aliases")).json as {
      items: Array<{ alias: string }>;
    };
    expect(list.items.map((a) => a.alias)).toEqual(
      [alias, "after/kill", "city/paris/population"].sort(),
    );
    const metrics = await api(server.baseUrl, null).request("GET", "/metrics");
    expect(metrics.text).toMatch(/^stemedb_concept_aliases 3$/m);
  });
});
