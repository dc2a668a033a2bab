// The operations bundle (ops/) against the real tools and the real server: promtool checks
// and unit-tests the alert rules, every metric the rules and dashboards use is exported by a
// running server, nginx terminates TLS in front of that server (plain request, body bound,
// WebSocket upgrade), amtool and systemd-analyze accept their configs, and .env.example
// matches CONFIG_VARS. A missing tool skips its tests with the reason printed; .ci/run
// installs the Debian packages prometheus, prometheus-alertmanager, nginx and openssl.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import https from "node:https";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { renderEnvExample } from "../src/config.js";
import { MAX_BODY_BYTES } from "../src/domain/limits.js";
import { EXPORTED_METRIC_NAMES } from "../src/metrics/exported_names.js";
import {
  api,
  createKey,
  newDataDir,
  readAdminKeyFile,
  type ServerProcess,
  startServerProcess,
} from "./helpers/server_process.js";

// dist/test/ops.test.js -> repository root (ops/ is not compiled, read it from the source tree).
const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const OPS = path.join(ROOT, "ops");
const TOOL_TIMEOUT_MS = 60_000;
const EXPORTED = new Set(EXPORTED_METRIC_NAMES);
const HISTOGRAM_SUFFIXES = ["_bucket", "_sum", "_count"] as const;

function findTool(name: string): string | null {
  const dirs = (process.env.PATH ?? "")
    .split(":")
    .concat(["/usr/sbin", "/sbin", "/usr/local/sbin"]);
  for (const dir of dirs) {
    const file = path.join(dir, name);
    try {
      fs.accessSync(file, fs.constants.X_OK);
      return file;
    } catch {}
  }
  return null;
}

function tool(name: string, pkg: string): string | null {
  const found = findTool(name);
  if (found === null)
    console.warn(`ops.test: skipping ${name} checks: not installed (apt-get install ${pkg})`);
  return found;
}

const promtool = tool("promtool", "prometheus");
const amtool = tool("amtool", "prometheus-alertmanager");
const nginxBin = tool("nginx", "nginx");
const openssl = tool("openssl", "openssl");
const systemdAnalyze = tool("systemd-analyze", "systemd");

function run(bin: string, args: string[], cwd = ROOT): { status: number | null; out: string } {
  const r = spawnSync(bin, args, { cwd, encoding: "utf8", timeout: TOOL_TIMEOUT_MS });
  return { status: r.status, out: `${r.stdout ?? ""}${r.stderr ?? ""}${r.error?.message ?? ""}` };
}

const read = (rel: string): string => fs.readFileSync(path.join(OPS, rel), "utf8");
const tempDirs: string[] = [];
function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "stemedb-"));
  tempDirs.push(dir);
  return dir;
}
afterAll(() => {
  for (const dir of tempDirs) fs.rmSync(dir, { recursive: true, force: true });
});

const DASHBOARDS = ["storage-health.json", "sli.json", "shards.json"];
const alertsText = read("prometheus/alerts.yml");
const dashboardTexts = DASHBOARDS.map((f) => read(`grafana/dashboards/${f}`));

interface AlertRule {
  name: string;
  severity: string;
  body: string;
}
/** Splits alerts.yml at each `- alert:` (promtool validates the YAML itself). */
function alertRules(): AlertRule[] {
  const chunks = alertsText.split(/^\s*- alert: /m).slice(1);
  return chunks.map((chunk) => ({
    name: (chunk.split("\n")[0] as string).trim(),
    severity: /^\s+severity: (\S+)$/m.exec(chunk)?.[1] ?? "",
    body: chunk,
  }));
}

/** Every metric identifier used (stemedb_, process_, nodejs_), as written. */
function metricIdentifiers(text: string): Set<string> {
  return new Set(text.match(/\b(?:stemedb|process|nodejs)_[a-zA-Z0-9_]*[a-zA-Z0-9]/g) ?? []);
}

/** Family of an identifier: itself, or the exported family it is a histogram series of. */
function familyOf(name: string): string {
  if (EXPORTED.has(name)) return name;
  for (const s of HISTOGRAM_SUFFIXES) {
    const base = name.slice(0, -s.length);
    if (name.endsWith(s) && EXPORTED.has(base)) return base;
  }
  return name; // unknown: reported as written
}

const usedIdentifiers = new Set([
  ...metricIdentifiers(alertsText),
  ...dashboardTexts.flatMap((t) => [...metricIdentifiers(t)]),
]);
const usedFamilies = new Set([...usedIdentifiers].map(familyOf));

/** GitHub-style heading anchors of a markdown file. */
function anchors(markdown: string): Set<string> {
  const out = new Set<string>();
  for (const m of markdown.matchAll(/^#{1,6} (.+)$/gm)) {
    const slug = (m[1] as string)
      .trim()
      .toLowerCase()
      .replace(/[^a-z0-9 _-]/g, "")
      .replace(/ /g, "-");
    out.add(slug);
  }
  return out;
}

describe("alert rules and dashboards", () => {
  it("has rules in all three severities, each with summary, description and a runbook", () => {
    const rules = alertRules();
    expect(rules.length).toBeGreaterThan(10);
    expect(new Set(rules.map((r) => r.name)).size).toBe(rules.length);
    expect(new Set(rules.map((r) => r.severity))).toEqual(new Set(["critical", "warning", "info"]));
    for (const rule of rules) {
      for (const key of ["summary", "description", "runbook_url", "component"]) {
        expect(rule.body, `${rule.name} lacks ${key}`).toMatch(new RegExp(`^\\s+${key}: \\S`, "m"));
      }
      const url = /runbook_url: "?([^"\s]+)"?/.exec(rule.body)?.[1] ?? "";
      const m = /\/ops\/runbooks\/([A-Za-z0-9_.-]+\.md)(?:#([a-z0-9_-]+))?$/.exec(url);
      expect(m, `${rule.name}: runbook_url ${url} must point into ops/runbooks/`).not.toBeNull();
      const page = path.join(OPS, "runbooks", (m as RegExpExecArray)[1] as string);
      expect(fs.existsSync(page), `${rule.name}: ${page} missing`).toBe(true);
      const anchor = (m as RegExpExecArray)[2];
      if (anchor !== undefined) {
        expect(anchors(fs.readFileSync(page, "utf8")), `${rule.name}: #${anchor}`).toContain(
          anchor,
        );
      }
      if (rule.severity === "critical") expect(url).toMatch(new RegExp(`/${rule.name}\\.md$`));
    }
  });

  it("uses only metric families the server exports", () => {
    expect(usedFamilies.size).toBeGreaterThan(20);
    const unknown = [...usedFamilies].filter((f) => !EXPORTED.has(f));
    expect(unknown, "not in EXPORTED_METRIC_NAMES").toEqual([]);
  });

  it("dashboards are valid JSON on the provisioned datasource, with instance selectors", () => {
    const uids = new Set<string>();
    for (const [i, text] of dashboardTexts.entries()) {
      const d = JSON.parse(text) as {
        uid: string;
        panels: Array<{ type: string; datasource?: { uid: string }; targets?: unknown[] }>;
      };
      uids.add(d.uid);
      const panels = d.panels.filter((p) => p.type !== "row");
      expect(panels.length, DASHBOARDS[i]).toBeGreaterThan(5);
      for (const p of panels) {
        expect(p.datasource?.uid).toBe("stemedb-prometheus");
        expect(p.targets?.length).toBeGreaterThan(0);
      }
    }
    expect(uids.size).toBe(3);
    expect(read("grafana/provisioning/datasources/stemedb.yml")).toContain(
      "uid: stemedb-prometheus",
    );
    expect(read("grafana/provisioning/dashboards/stemedb.yml")).toContain("type: file");
  });

  it.skipIf(promtool === null)(
    "promtool checks the rules, the config and dashboard queries",
    () => {
      const bin = promtool as string;
      const dir = path.join(OPS, "prometheus");
      const check = run(bin, ["check", "rules", "alerts.yml"], dir);
      expect(check.status, check.out).toBe(0);
      const config = run(bin, ["check", "config", "prometheus.yml"], dir);
      expect(config.status, config.out).toBe(0);
      const unit = run(bin, ["test", "rules", "alerts.test.yml"], dir);
      expect(unit.status, unit.out).toBe(0);
      // Every dashboard expression must parse: check them as recording rules, with Grafana's
      // variables replaced by values Prometheus accepts.
      const exprs = dashboardTexts.flatMap((t) =>
        [...t.matchAll(/"expr": ("(?:[^"\\]|\\.)*")/g)].map(
          (m) => JSON.parse(m[1] as string) as string,
        ),
      );
      expect(exprs.length).toBeGreaterThan(40);
      const rules = exprs.map((e, i) => {
        const concrete = e
          .replaceAll("$__rate_interval", "1m")
          .replaceAll("$__range", "1h")
          .replaceAll("$instance", ".*")
          .replaceAll("$shard", ".*");
        return `      - record: dashboard:expr_${i}\n        expr: ${JSON.stringify(concrete)}\n`;
      });
      const file = path.join(tempDir(), "dashboard_exprs.yml");
      fs.writeFileSync(file, `groups:\n  - name: dashboards\n    rules:\n${rules.join("")}`);
      const parsed = run(bin, ["check", "rules", file]);
      expect(parsed.status, parsed.out).toBe(0);
    },
  );

  it.skipIf(amtool === null)(
    "amtool accepts the Alertmanager config and routes by severity",
    () => {
      const bin = amtool as string;
      const cfg = path.join(OPS, "alertmanager/alertmanager.yml");
      const check = run(bin, ["check-config", cfg]);
      expect(check.status, check.out).toBe(0);
      const route = (severity: string): string => {
        const r = run(bin, [
          "config",
          "routes",
          "test",
          `--config.file=${cfg}`,
          `severity=${severity}`,
        ]);
        expect(r.status, r.out).toBe(0);
        return r.out
          .split("\n")
          .filter((l) => !l.startsWith("Warning:"))
          .join("")
          .trim();
      };
      expect(route("critical")).toBe("pagerduty-critical,slack-critical");
      expect(route("warning")).toBe("slack-warning");
      expect(route("info")).toBe("slack-info");
    },
  );
});

describe("configuration files", () => {
  it(".env.example is exactly renderEnvExample()", () => {
    expect(fs.readFileSync(path.join(ROOT, ".env.example"), "utf8")).toBe(renderEnvExample());
  });

  it("proxies bound bodies at the server's MAX_BODY_BYTES and health-check /v1/health", () => {
    expect(MAX_BODY_BYTES).toBe(4 * 1024 * 1024);
    const nginxConf = read("nginx/stemedb.conf");
    expect(nginxConf).toMatch(/client_max_body_size 4m;/);
    expect(nginxConf).toContain("location = /v1/health");
    const envoy = read("envoy/envoy.yaml");
    expect(envoy).toContain(`max_request_bytes: ${MAX_BODY_BYTES}`);
    expect(envoy).toMatch(/http_health_check:\s+path: \/v1\/health/);
    expect(envoy).toContain("upgrade_type: websocket");
    expect(envoy).toContain("port_value: 18180");
  });

  it.skipIf(systemdAnalyze === null)("systemd-analyze verifies the units", () => {
    const dir = tempDir();
    const units = fs
      .readdirSync(path.join(OPS, "systemd"))
      .filter((f) => /\.(service|timer)$/.test(f));
    expect(units.sort()).toEqual([
      "stemedb-backup.service",
      "stemedb-backup.timer",
      "stemedb-verify.service",
      "stemedb-verify.timer",
      "stemedb-wal-archive.service",
      "stemedb-wal-archive.timer",
      "stemedb.service",
    ]);
    for (const unit of units) {
      // Verify against this machine's node binary; the units name /usr/bin/node (Debian).
      const text = read(`systemd/${unit}`).replaceAll("/usr/bin/node", process.execPath);
      fs.writeFileSync(path.join(dir, unit), text);
    }
    const r = run(
      systemdAnalyze as string,
      ["verify", ...units.map((u) => path.join(dir, u))],
      dir,
    );
    expect(r.status, r.out).toBe(0);
    expect(r.out.trim(), "systemd-analyze printed warnings").toBe("");
    const server = read("systemd/stemedb.service");
    for (const line of [
      "User=stemedb",
      "ProtectSystem=strict",
      "ReadWritePaths=/var/lib/stemedb",
      "NoNewPrivileges=yes",
      "LimitNOFILE=65536",
      "Restart=on-failure",
      "EnvironmentFile=/etc/stemedb/stemedb.env",
    ]) {
      expect(server).toContain(`\n${line}\n`);
    }
    expect(read("systemd/stemedb-backup.service")).toContain("dist/src/cli/main.js backup --to ");
    expect(read("systemd/stemedb-verify.service")).toContain(
      "dist/src/cli/main.js restore --from ",
    );
    expect(read("systemd/stemedb-verify.service")).toContain("dist/src/cli/main.js verify ");
    expect(read("systemd/stemedb-wal-archive.service")).toContain("find /var/backups/stemedb/wal");
  });

  it("calls the CLI only with options it documents", () => {
    const cli = path.join(ROOT, "dist/src/cli/main.js");
    // stemedb-wal-archive.service only prunes: the server archives segments itself.
    for (const unit of ["stemedb-backup.service", "stemedb-verify.service"]) {
      const calls = [
        ...read(`systemd/${unit}`).matchAll(/cli\/main\.js ([a-z-]+)((?: --?[a-z-]+(?: \S+)?)*)/g),
      ];
      expect(calls.length, unit).toBeGreaterThan(0);
      for (const [, command, args] of calls) {
        // Some commands print their usage on stderr with exit 2 for --help: read either.
        const help = run(process.execPath, [cli, command as string, "--help"]);
        expect(help.out.toLowerCase(), `${command} --help`).toContain(`usage: stemedb ${command}`);
        for (const flag of (args as string).match(/--[a-z-]+/g) ?? []) {
          expect(help.out, `${unit}: ${command} ${flag}`).toContain(flag);
        }
      }
    }
  });
});

// ---- A real server, scraped and proxied ------------------------------------------------

let dataDir: string;
let server: ServerProcess;
let agentKey: string;

beforeAll(async () => {
  dataDir = newDataDir();
  server = await startServerProcess({ dataDir });
  const adminKey = readAdminKeyFile(dataDir);
  agentKey = await createKey(server.baseUrl, adminKey, "agent", "ops-test");
  const readerKey = await createKey(server.baseUrl, adminKey, "reader");
  // Traffic that makes every family record: writes on both shards, queries, errors.
  const agent = api(server.baseUrl, agentKey);
  const assertions = Array.from({ length: 40 }, (_, i) => ({
    concept: `ops/c${i}`,
    value: i,
    confidence: 0.5,
  }));
  const res = await agent.request("POST", "/v1/assert", { assertions });
  expect(res.status).toBe(201);
  const first = (res.json as { results: Array<{ id: string }> }).results[0]?.id;
  const reader = api(server.baseUrl, readerKey);
  expect((await reader.request("GET", `/v1/assertions/${first}`)).status).toBe(200);
  expect((await reader.request("GET", "/v1/query?concept=ops/c1&lens=latest")).status).toBe(200);
  expect((await reader.request("GET", "/v1/query?concept=ops/*&lens=latest")).status).toBe(200);
  expect((await api(server.baseUrl, null).request("GET", "/v1/query?concept=ops/c1")).status).toBe(
    401,
  );
});

afterAll(async () => {
  await server?.stop();
  if (dataDir !== undefined) fs.rmSync(dataDir, { recursive: true, force: true });
});

interface Scrape {
  types: Map<string, string>;
  sampled: Set<string>;
}
function parseExposition(text: string): Scrape {
  const types = new Map<string, string>();
  const sampleNames = new Set<string>();
  for (const line of text.split("\n")) {
    const t = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (t !== null) types.set(t[1] as string, t[2] as string);
    else if (line !== "" && !line.startsWith("#"))
      sampleNames.add(/^[a-zA-Z_:][\w:]*/.exec(line)?.[0] ?? "");
  }
  const sampled = new Set<string>();
  for (const s of sampleNames) {
    if (types.has(s)) sampled.add(s);
    for (const suffix of HISTOGRAM_SUFFIXES) {
      const base = s.slice(0, -suffix.length);
      if (s.endsWith(suffix) && types.get(base) === "histogram") sampled.add(base);
    }
  }
  return { types, sampled };
}

describe("running server", () => {
  it("exports every metric family the alerts and dashboards use", async () => {
    const res = await api(server.baseUrl, null).request("GET", "/metrics");
    expect(res.status).toBe(200);
    const scrape = parseExposition(res.text);
    const notExported = [...usedFamilies].filter((f) => !scrape.types.has(f));
    expect(notExported, "families missing from /metrics").toEqual([]);
    const withoutSamples = [...usedFamilies].filter((f) => !scrape.sampled.has(f));
    expect(withoutSamples, "families with no samples after writes, queries and errors").toEqual([]);
    // A suffixed identifier (x_bucket) must belong to a histogram family.
    for (const id of usedIdentifiers) {
      if (id !== familyOf(id)) expect(scrape.types.get(familyOf(id)), id).toBe("histogram");
    }
    expect(res.text).toMatch(/stemedb_wal_disk_capacity_bytes\{shard="0"\} [1-9]/);
  });
});

// ---- nginx: TLS termination in front of the server -------------------------------------

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

function waitExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    child.once("exit", () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

interface Nginx {
  port: number;
  dir: string;
  stop(): Promise<void>;
}

/** Replaces `from` (string or global regex) and fails if the production config changed under us. */
function rewrite(text: string, from: string | RegExp, to: string): string {
  const hits =
    typeof from === "string" ? text.split(from).length - 1 : (text.match(from) ?? []).length;
  if (hits === 0) throw new Error(`ops/nginx/stemedb.conf no longer contains ${String(from)}`);
  return typeof from === "string" ? text.replaceAll(from, to) : text.replace(from, to);
}

/** Renders ops/nginx/stemedb.conf into a temp prefix and runs nginx in the foreground. */
async function startNginx(upstreamPort: number, certDir: string): Promise<Nginx> {
  const dir = tempDir();
  fs.chmodSync(dir, 0o755); // as root, workers run as nobody and need to reach temp paths
  const [port, httpPort] = [await freePort(), await freePort()];
  let site = read("nginx/stemedb.conf");
  site = rewrite(site, "/etc/ssl/stemedb/fullchain.pem", path.join(certDir, "cert.pem"));
  site = rewrite(site, "/etc/ssl/stemedb/privkey.pem", path.join(certDir, "key.pem"));
  site = rewrite(site, "/var/log/nginx/", `${dir}/`);
  site = rewrite(site, "server 127.0.0.1:18180 ", `server 127.0.0.1:${upstreamPort} `);
  site = rewrite(site, /^\s*listen \[::\]:.*$/gm, ""); // loopback IPv4 only in tests
  site = rewrite(site, "listen 443 ssl http2;", `listen 127.0.0.1:${port} ssl http2;`);
  site = rewrite(site, "listen 80;", `listen 127.0.0.1:${httpPort};`);
  fs.writeFileSync(path.join(dir, "stemedb.conf"), site);
  const temp = ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]
    .map((t) => `  ${t}_temp_path ${dir}/${t};`)
    .join("\n");
  const conf = path.join(dir, "nginx.conf");
  fs.writeFileSync(
    conf,
    `daemon off;\nworker_processes 1;\npid ${dir}/nginx.pid;\nerror_log ${dir}/error.log info;\n` +
      `events { worker_connections 64; }\nhttp {\n  access_log ${dir}/access.log;\n${temp}\n` +
      `  include ${dir}/stemedb.conf;\n}\n`,
  );
  const args = ["-p", dir, "-c", conf, "-e", path.join(dir, "error.log")];
  const test = run(nginxBin as string, ["-t", ...args]);
  if (test.status !== 0) throw new Error(`nginx -t failed:\n${test.out}`);
  const child = spawn(nginxBin as string, args, { stdio: ["ignore", "pipe", "pipe"] });
  const log = () => fs.readFileSync(path.join(dir, "error.log"), "utf8");
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`nginx exited ${child.exitCode}:\n${log()}`);
    const up = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, "127.0.0.1", () => s.end(() => resolve(true)));
      s.once("error", () => resolve(false));
    });
    if (up) break;
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`nginx did not listen within 10 s:\n${log()}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    port,
    dir,
    async stop() {
      child.kill("SIGQUIT"); // graceful: finish open requests, then exit
      if (!(await waitExit(child, 10_000))) {
        child.kill("SIGKILL");
        await waitExit(child, 5_000);
      }
    },
  };
}

interface HttpsReply {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
}
function httpsRequest(
  port: number,
  ca: string,
  method: string,
  urlPath: string,
  headers: Record<string, string> = {},
  body?: Buffer | string,
): Promise<HttpsReply> {
  return new Promise((resolve, reject) => {
    let done = false;
    const req = https.request(
      {
        host: "127.0.0.1",
        servername: "localhost",
        port,
        ca,
        method,
        path: urlPath,
        headers,
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          done = true;
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            text: Buffer.concat(chunks).toString(),
          });
        });
      },
    );
    req.on("upgrade", (res, socket) => {
      done = true;
      socket.destroy();
      resolve({ status: res.statusCode ?? 0, headers: res.headers, text: "" });
    });
    // nginx may answer 413 before the whole body is sent and then reset: keep the answer.
    req.on("error", (err) => {
      if (!done) reject(err);
    });
    req.setTimeout(15_000, () => req.destroy(new Error(`${method} ${urlPath} timed out`)));
    req.end(body);
  });
}

/** A WebSocket handshake over TLS: resolves with the 101, or with the error reply. */
function upgradeRequest(
  port: number,
  ca: string,
  urlPath: string,
  requestId: string,
  headers: Record<string, string> = {},
): Promise<HttpsReply> {
  return httpsRequest(port, ca, "GET", urlPath, {
    connection: "Upgrade",
    upgrade: "websocket",
    "sec-websocket-key": crypto.randomBytes(16).toString("base64"),
    "sec-websocket-version": "13",
    "x-request-id": requestId,
    ...headers,
  });
}

/** Upstream that records upgrade requests and accepts them (RFC 6455 handshake). */
function startUpgradeProbe(): Promise<{
  port: number;
  seen: http.IncomingHttpHeaders[];
  close(): Promise<void>;
}> {
  const seen: http.IncomingHttpHeaders[] = [];
  const sockets = new Set<net.Socket>();
  const srv = http.createServer((_req, res) => res.end("not an upgrade"));
  srv.on("connection", (s: net.Socket) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  srv.on("upgrade", (req: http.IncomingMessage, socket: net.Socket) => {
    seen.push(req.headers);
    const accept = crypto
      .createHash("sha1")
      .update(`${req.headers["sec-websocket-key"]}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`)
      .digest("base64");
    socket.write(
      `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`,
    );
  });
  return new Promise((resolve) => {
    srv.listen(0, "127.0.0.1", () =>
      resolve({
        port: (srv.address() as net.AddressInfo).port,
        seen,
        close: () =>
          new Promise<void>((r) => {
            for (const s of sockets) s.destroy();
            srv.close(() => r());
          }),
      }),
    );
  });
}

describe.skipIf(nginxBin === null || openssl === null)("nginx in front of the server", () => {
  let certDir: string;
  let ca: string;
  let nginx: Nginx | undefined;

  beforeAll(async () => {
    certDir = tempDir();
    const gen = run(openssl as string, [
      ...["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"],
      ...["-keyout", path.join(certDir, "key.pem"), "-out", path.join(certDir, "cert.pem")],
      ...[
        "-days",
        "2",
        "-subj",
        "/CN=localhost",
        "-addext",
        "subjectAltName=DNS:localhost,IP:127.0.0.1",
      ],
    ]);
    expect(gen.status, gen.out).toBe(0);
    fs.chmodSync(certDir, 0o755);
    ca = fs.readFileSync(path.join(certDir, "cert.pem"), "utf8");
    nginx = await startNginx(server.port, certDir);
  });

  afterAll(async () => {
    await nginx?.stop();
  });

  it("answers /v1/health and real writes over TLS, with the server's request id", async () => {
    const n = nginx as Nginx;
    const health = await httpsRequest(n.port, ca, "GET", "/v1/health");
    expect(health.status).toBe(200);
    expect((JSON.parse(health.text) as { status: string }).status).toBe("ok");
    expect(health.headers["x-request-id"]).toMatch(/^[0-9a-f]{32}$/); // nginx's id, forwarded
    expect(health.headers["strict-transport-security"]).toBeTruthy();
    const write = await httpsRequest(
      n.port,
      ca,
      "POST",
      "/v1/assert",
      {
        authorization: `Bearer ${agentKey}`,
        "content-type": "application/json",
        "x-request-id": "ops-proxy-1",
      },
      JSON.stringify({ concept: "ops/proxied", value: 1, confidence: 0.5 }),
    );
    expect(write.status, write.text).toBe(201);
    expect(write.headers["x-request-id"]).toBe("ops-proxy-1");
  });

  it("refuses bodies over 4 MiB at the proxy", async () => {
    const body = Buffer.alloc(MAX_BODY_BYTES + 1024, 0x20);
    const res = await httpsRequest(
      (nginx as Nginx).port,
      ca,
      "POST",
      "/v1/assert",
      { authorization: `Bearer ${agentKey}`, "content-type": "application/json" },
      body,
    );
    expect(res.status).toBe(413);
  });

  it("passes a WebSocket upgrade on /v1/stream to the server", async () => {
    // Without a key the server itself refuses the upgrade, in its error format.
    const res = await upgradeRequest((nginx as Nginx).port, ca, "/v1/stream", "ops-ws-1");
    expect(res.status).toBe(401);
    expect(res.headers["x-request-id"]).toBe("ops-ws-1");
    const body = JSON.parse(res.text) as { error: { code: string; request_id: string } };
    expect(body.error).toMatchObject({ code: "missing_api_key", request_id: "ops-ws-1" });
    // With an agent key the server's 101 comes back through the proxy.
    const upgraded = await upgradeRequest((nginx as Nginx).port, ca, "/v1/stream", "ops-ws-3", {
      authorization: `Bearer ${agentKey}`,
    });
    expect(upgraded.status).toBe(101);
    expect(upgraded.headers["x-stemedb-max-inflight"]).toBe("256");
  });

  it("forwards Upgrade and Connection headers and relays a 101", async () => {
    const probe = await startUpgradeProbe();
    const viaProbe = await startNginx(probe.port, certDir);
    try {
      const res = await upgradeRequest(viaProbe.port, ca, "/v1/stream", "ops-ws-2");
      expect(res.status).toBe(101);
      expect(res.headers.upgrade).toBe("websocket");
      expect(probe.seen.length).toBe(1);
      const h = probe.seen[0] as http.IncomingHttpHeaders;
      expect(h.upgrade).toBe("websocket");
      expect(h.connection?.toLowerCase()).toBe("upgrade");
      expect(h["x-forwarded-proto"]).toBe("https");
      expect(h["x-request-id"]).toBe("ops-ws-2");
    } finally {
      await viaProbe.stop();
      await probe.close();
    }
  });
});
