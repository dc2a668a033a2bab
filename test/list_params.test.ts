// The list and lookup routes read their query parameters through one schema each
// (src/server/query_params.ts): on a real server, every bad value gets its documented code,
// an empty cursor is the first page, pages chain without overlap, and /v1/openapi.json lists
// exactly the parameters each route reads.
import fs from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type Api,
  api,
  type ServerProcess,
  startServerWithKeys,
} from "./helpers/server_process.js";

let dataDir: string;
let server: ServerProcess;
let admin: Api;
let reader: Api;
let agent: Api;

beforeAll(async () => {
  const started = await startServerWithKeys("list-agent");
  ({ dataDir, server } = started);
  admin = api(server.baseUrl, started.adminKey);
  reader = api(server.baseUrl, started.readerKey);
  agent = api(server.baseUrl, started.agentKey);
  for (const label of ["one", "two", "three"]) {
    expect((await admin.request("POST", "/v1/epoch", { label })).status).toBe(201);
  }
});

afterAll(async () => {
  await server?.kill9();
  if (dataDir !== undefined) fs.rmSync(dataDir, { recursive: true, force: true });
});

async function expectError(
  client: Api,
  urlPath: string,
  status: number,
  code: string,
  method = "GET",
): Promise<void> {
  const res = await client.request(method, urlPath);
  const body = res.json as { error?: { code: string; message: string } };
  expect({ urlPath, status: res.status, code: body.error?.code }).toEqual({
    urlPath,
    status,
    code,
  });
  expect(body.error?.message.length).toBeGreaterThan(5);
}

describe("list and lookup routes validate their query parameters from one schema", () => {
  it("GET /v1/epochs: limit, after", async () => {
    await expectError(reader, "/v1/epochs?limit=0", 422, "invalid_limit");
    await expectError(reader, "/v1/epochs?after=-1", 422, "invalid_after");
    await expectError(reader, "/v1/epochs?after=x", 422, "invalid_after");
    const first = await reader.request("GET", "/v1/epochs?limit=2&after=");
    expect(first.status).toBe(200);
    const page = first.json as { items: Array<{ epoch: number }>; next_after: number | null };
    expect(page.items.map((e) => e.epoch)).toEqual([1, 2]);
    expect(page.next_after).toBe(2);
    const rest = (await reader.request("GET", "/v1/epochs?limit=2&after=2")).json as typeof page;
    expect(rest.items.map((e) => e.epoch)).toEqual([3]);
    expect(rest.next_after).toBeNull();
  });

  it("GET /v1/audit: limit, cursor, action, actor; pages chain", async () => {
    for (const cursor of ["0", "abc", "-1", "1.5"])
      await expectError(admin, `/v1/audit?cursor=${cursor}`, 400, "invalid_cursor");
    await expectError(admin, "/v1/audit?action=Not%20An%20Action", 422, "invalid_filter");
    await expectError(admin, "/v1/audit?actor=bad%20actor", 422, "invalid_filter");
    await expectError(admin, "/v1/audit?action=", 422, "invalid_filter");
    await expectError(admin, "/v1/audit?limit=1001", 422, "invalid_limit");
    type Page = { items: Array<{ seq: number; action: string }>; next_cursor: string | null };
    const all = (await admin.request("GET", "/v1/audit?cursor=")).json as Page;
    expect(all.items.length).toBeGreaterThanOrEqual(3);
    const seen: number[] = [];
    let cursor = "";
    for (let pages = 0; pages < 100; pages++) {
      const res = await admin.request("GET", `/v1/audit?limit=2&cursor=${cursor}`);
      expect(res.status).toBe(200);
      const page = res.json as Page;
      seen.push(...page.items.map((e) => e.seq));
      if (page.next_cursor === null) break;
      cursor = page.next_cursor;
    }
    expect(seen).toEqual(all.items.map((e) => e.seq));
    // The filters apply: the startup trust decay is the system's, the key creations are not.
    const decays = (await admin.request("GET", "/v1/audit?action=trust.decay&actor=system"))
      .json as Page;
    expect(decays.items.length).toBeGreaterThan(0);
    expect(decays.items.every((e) => e.action === "trust.decay")).toBe(true);
    const none = (await admin.request("GET", "/v1/audit?action=api_key.create&actor=system"))
      .json as Page;
    expect(none.items).toEqual([]);
  });

  it("GET /v1/admin/escalations: status, limit, cursor", async () => {
    await expectError(admin, "/v1/admin/escalations?status=bogus", 422, "invalid_status");
    await expectError(admin, "/v1/admin/escalations?cursor=x", 422, "invalid_cursor");
    await expectError(admin, "/v1/admin/escalations?limit=abc", 422, "invalid_limit");
    // An empty value takes the default (status=open), like an empty limit.
    for (const query of ["status=all&cursor=", "status=&limit="]) {
      const res = await admin.request("GET", `/v1/admin/escalations?${query}`);
      expect(res.status).toBe(200);
      expect(res.json).toMatchObject({ open: 0, items: [], next_cursor: null });
    }
  });

  it("GET /v1/admin/circuit_breakers: state, limit, cursor", async () => {
    await expectError(admin, "/v1/admin/circuit_breakers?state=bogus", 422, "invalid_filter");
    await expectError(admin, "/v1/admin/circuit_breakers?state=", 422, "invalid_filter");
    await expectError(admin, "/v1/admin/circuit_breakers?cursor=a%20b", 400, "invalid_agent_id");
    const res = await admin.request("GET", "/v1/admin/circuit_breakers?state=open&cursor=");
    expect(res.status).toBe(200);
    expect(res.json).toMatchObject({ circuit_breakers: [], next_cursor: null });
  });

  it("GET /v1/admin/quarantine: agent, concept, limit, cursor", async () => {
    await expectError(admin, "/v1/admin/quarantine?agent=a%20b", 422, "invalid_filter");
    await expectError(admin, "/v1/admin/quarantine?concept=", 422, "invalid_concept_path");
    await expectError(admin, "/v1/admin/quarantine?concept=a//b", 422, "invalid_concept_path");
    await expectError(admin, "/v1/admin/quarantine?cursor=zz", 400, "invalid_cursor");
    // A write that contradicts a gold standard is held: the filters find it, or not.
    const gold = await admin.request("POST", "/v1/gold_standard", { concept: "held/x", value: 1 });
    expect(gold.status).toBe(201);
    const held = await agent.request("POST", "/v1/assert", {
      concept: "held/x",
      value: 2,
      confidence: 0.9,
    });
    expect(held.json).toMatchObject({ status: "quarantined" });
    const list = async (query: string) => {
      const res = await admin.request("GET", `/v1/admin/quarantine?${query}`);
      expect(res.status).toBe(200);
      return (res.json as { items: Array<{ concept: string }> }).items.map((a) => a.concept);
    };
    expect(await list("agent=list-agent&cursor=")).toEqual(["held/x"]);
    expect(await list("agent=someone")).toEqual([]);
    expect(await list("concept=HELD/x&limit=")).toEqual(["held/x"]);
    expect(await list("concept=held/y")).toEqual([]);
  });

  it("GET and DELETE /v1/gold_standard: concept, limit, cursor", async () => {
    await expectError(reader, "/v1/gold_standard?concept=", 422, "invalid_concept_path");
    await expectError(reader, "/v1/gold_standard?limit=0", 422, "invalid_limit");
    await expectError(admin, "/v1/gold_standard", 400, "missing_concept", "DELETE");
    await expectError(admin, "/v1/gold_standard?concept=", 400, "missing_concept", "DELETE");
    await expectError(reader, "/v1/gold_standard?concept=no/such", 404, "not_found");
    for (const concept of ["g/a", "g/b", "g/c"]) {
      const res = await admin.request("POST", "/v1/gold_standard", { concept, value: 1 });
      expect(res.status).toBe(201);
    }
    type Page = { items: Array<{ concept: string }>; next_cursor: string | null };
    const all = (await reader.request("GET", "/v1/gold_standard?cursor=")).json as Page;
    const concepts = all.items.map((g) => g.concept);
    expect(concepts).toEqual(expect.arrayContaining(["g/a", "g/b", "g/c"]));
    expect(concepts).toEqual([...concepts].sort());
    const paged: string[] = [];
    let cursor = "";
    for (let pages = 0; pages < 10; pages++) {
      const res = await reader.request(
        "GET",
        `/v1/gold_standard?limit=2&cursor=${encodeURIComponent(cursor)}`,
      );
      const page = res.json as Page;
      expect(page.items.length).toBeLessThanOrEqual(2);
      paged.push(...page.items.map((g) => g.concept));
      if (page.next_cursor === null) break;
      cursor = page.next_cursor;
    }
    expect(paged).toEqual(concepts);
  });

  it("GET /v1/source/provenance: assertion_id", async () => {
    await expectError(reader, "/v1/source/provenance", 400, "invalid_id");
    await expectError(reader, "/v1/source/provenance?assertion_id=XYZ", 400, "invalid_id");
    await expectError(
      reader,
      `/v1/source/provenance?assertion_id=${"0".repeat(32)}`,
      404,
      "not_found",
    );
  });

  it("the /v1/concepts routes: path, q, limit, cursor", async () => {
    await expectError(reader, "/v1/concepts/alias", 400, "missing_path");
    await expectError(reader, "/v1/concepts/alias?path=", 400, "missing_path");
    await expectError(admin, "/v1/concepts/alias?path=a//b", 422, "invalid_concept_path", "DELETE");
    await expectError(reader, "/v1/concepts/aliases?cursor=!!", 400, "invalid_cursor");
    await expectError(reader, "/v1/concepts/aliases?limit=1001", 422, "invalid_limit");
    await expectError(reader, "/v1/concepts/suggest?q=", 400, "missing_query");
    await expectError(reader, `/v1/concepts/suggest?q=${"x".repeat(513)}`, 422, "query_too_long");
    await expectError(reader, "/v1/concepts/suggest?q=abc&limit=51", 422, "invalid_limit");
    await expectError(reader, "/v1/concepts/parse", 400, "missing_path");
    const aliases = await reader.request("GET", "/v1/concepts/aliases?cursor=");
    expect(aliases.json).toEqual({ items: [], next_cursor: null });
  });

  it("GET /v1/query: an empty cursor is the first page, like every list's", async () => {
    const withEmpty = await reader.request("GET", "/v1/query?concept=a/*&cursor=");
    const without = await reader.request("GET", "/v1/query?concept=a/*");
    expect(withEmpty.status).toBe(200);
    expect(withEmpty.json).toEqual(without.json);
  });

  it("/v1/openapi.json lists exactly the parameters each route reads", async () => {
    const doc = (await api(server.baseUrl, null).request("GET", "/v1/openapi.json")).json as {
      paths: Record<
        string,
        Record<string, { parameters?: Array<{ name: string; in: string; [k: string]: unknown }> }>
      >;
    };
    const names = (path: string, method: string) =>
      (doc.paths[path]?.[method]?.parameters ?? [])
        .filter((p) => p.in === "query")
        .map((p) => p.name);
    expect(names("/v1/epochs", "get")).toEqual(["limit", "after"]);
    expect(names("/v1/audit", "get")).toEqual(["limit", "cursor", "action", "actor"]);
    expect(names("/v1/admin/escalations", "get")).toEqual(["status", "limit", "cursor"]);
    expect(names("/v1/admin/circuit_breakers", "get")).toEqual(["state", "limit", "cursor"]);
    expect(names("/v1/admin/quarantine", "get")).toEqual(["agent", "concept", "limit", "cursor"]);
    expect(names("/v1/gold_standard", "get")).toEqual(["concept", "limit", "cursor"]);
    expect(names("/v1/gold_standard", "delete")).toEqual(["concept"]);
    expect(names("/v1/source/provenance", "get")).toEqual(["assertion_id"]);
    expect(names("/v1/concepts/alias", "get")).toEqual(["path"]);
    expect(names("/v1/concepts/aliases", "get")).toEqual(["limit", "cursor"]);
    expect(names("/v1/concepts/suggest", "get")).toEqual(["q", "limit"]);
    expect(names("/v1/concepts/parse", "get")).toEqual(["path"]);
    // The schemas are the validating ones: bounds, defaults, choices, and which may be empty.
    const audit = doc.paths["/v1/audit"]?.get?.parameters ?? [];
    expect(audit).toEqual([
      expect.objectContaining({
        name: "limit",
        allowEmptyValue: true,
        schema: expect.objectContaining({
          type: "integer",
          minimum: 1,
          maximum: 1000,
          default: 100,
        }),
      }),
      expect.objectContaining({ name: "cursor", allowEmptyValue: true }),
      expect.not.objectContaining({ allowEmptyValue: true }),
      expect.objectContaining({
        name: "actor",
        schema: expect.objectContaining({ pattern: expect.any(String) }),
      }),
    ]);
    expect(doc.paths["/v1/admin/escalations"]?.get?.parameters?.[0]).toMatchObject({
      name: "status",
      required: false,
      schema: {
        default: "open",
        anyOf: [{ const: "open" }, { const: "resolved" }, { const: "all" }],
      },
    });
    expect(doc.paths["/v1/source/provenance"]?.get?.parameters?.[0]).toMatchObject({
      name: "assertion_id",
      required: true,
      schema: { pattern: "^[0-9a-f]{32}$" },
    });
  });
});
