// Real processes for the dashboard's browser tests: `tasker serve --http` on a fresh database,
// `tasker worker` processes with the CLI's built-in handlers, and headless Chromium (Debian's
// package) driven by playwright-core.
//
// The backend comes from TASKER_DASHBOARD_BACKEND: `sqlite` (the default: a file in a temporary
// directory) or `postgres` (a database of its own, created on the server named by
// TASKER_DASHBOARD_PG_URL, else DATABASE_URL, and dropped afterwards; scripts/test.sh runs the
// suite once on each).

import { randomBytes } from "node:crypto";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, writeFileSync, mkdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";

import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
export const repo = resolve(here, "../../..");
export const templates = join(here, "templates");

/** The CLI binary: TASKER_BIN, else the workspace's debug build. */
export function taskerBin() {
  if (process.env.TASKER_BIN) return process.env.TASKER_BIN;
  const target = process.env.CARGO_TARGET_DIR ?? join(repo, "target");
  const bin = join(target, "debug", "tasker");
  if (!existsSync(bin)) throw new Error(`no tasker binary at ${bin}: run cargo build -p tasker-cli (or set TASKER_BIN)`);
  return bin;
}

/** Chromium from the distribution (CHROMIUM_PATH overrides); never a downloaded browser. */
export function chromiumPath() {
  const candidates = [process.env.CHROMIUM_PATH, "/usr/lib/chromium/chromium", "/usr/bin/chromium", "/usr/bin/chromium-browser"];
  const found = candidates.find((p) => p && existsSync(p));
  if (!found) throw new Error("Chromium not found: apt-get install chromium (or set CHROMIUM_PATH)");
  return found;
}

/** The backend of this run: "sqlite" or "postgres". */
export const backend = process.env.TASKER_DASHBOARD_BACKEND ?? "sqlite";
if (!["sqlite", "postgres"].includes(backend)) throw new Error(`TASKER_DASHBOARD_BACKEND=${backend}: not sqlite or postgres`);

/** The PostgreSQL server to create each deployment's database on. */
function postgresServer() {
  const url = process.env.TASKER_DASHBOARD_PG_URL ?? process.env.DATABASE_URL;
  if (!url || !/^postgres(ql)?:\/\//.test(url)) {
    throw new Error("TASKER_DASHBOARD_BACKEND=postgres needs TASKER_DASHBOARD_PG_URL or DATABASE_URL (postgres://…)");
  }
  return url;
}

/** One SQL command on the server, through psql (no database driver in this package). */
function psql(server, sql) {
  const out = spawnSync("psql", [server, "-v", "ON_ERROR_STOP=1", "-qXc", sql], { encoding: "utf8" });
  if (out.error) throw new Error(`psql: ${out.error.message}`);
  if (out.status !== 0) throw new Error(`psql ${sql}: ${out.stderr}`);
}

function run(args, env = {}) {
  const out = spawnSync(taskerBin(), args, { encoding: "utf8", env: { ...process.env, ...env } });
  if (out.status !== 0) throw new Error(`tasker ${args.join(" ")} failed: ${out.stderr}`);
  return out.stdout;
}

export class Deployment {
  constructor({ apiConfig } = {}) {
    this.dir = mkdtempSync(join(tmpdir(), "tasker-dashboard-"));
    this.postgres = null;
    if (backend === "postgres") {
      // A database of its own, so that runs beside each other (and other suites) never meet.
      const server = postgresServer();
      const name = `tasker_dashboard_${process.pid}_${randomBytes(4).toString("hex")}`;
      const url = new URL(server);
      url.pathname = `/${name}`;
      this.postgres = { server, name };
      this.db = url.toString();
    } else {
      this.db = `sqlite://${join(this.dir, "tasker.db")}`;
    }
    this.children = [];
    this.apiConfig = null;
    if (apiConfig) {
      this.apiConfig = join(this.dir, "api.toml");
      writeFileSync(this.apiConfig, apiConfig);
    }
  }

  env() {
    const env = { ...process.env, RUST_LOG: process.env.RUST_LOG ?? "warn" };
    delete env.TASKER_API_URL;
    delete env.DATABASE_URL;
    delete env.TASKER_DATABASE_URL;
    if (this.apiConfig) env.TASKER_API_CONFIG = this.apiConfig;
    else delete env.TASKER_API_CONFIG;
    return env;
  }

  /** Registers the test templates and starts the server; resolves once it listens. */
  async start() {
    if (this.postgres) psql(this.postgres.server, `CREATE DATABASE ${this.postgres.name}`);
    run(["--database-url", this.db, "template", "register", templates], this.env());
    const child = spawn(taskerBin(), ["--database-url", this.db, "serve", "--http", "127.0.0.1:0"], {
      env: this.env(),
      stdio: ["ignore", "ignore", "pipe"],
    });
    this.children.push(child);
    this.url = await new Promise((resolveUrl, reject) => {
      const lines = createInterface({ input: child.stderr });
      const timer = setTimeout(() => reject(new Error("tasker serve did not start within 30 s")), 30_000);
      lines.on("line", (line) => {
        const m = line.match(/REST API on (http:\/\/\S+)/);
        if (m) {
          clearTimeout(timer);
          resolveUrl(m[1]);
        }
      });
      child.on("exit", (code) => reject(new Error(`tasker serve exited (${code})`)));
    });
    return this;
  }

  /** A `tasker worker` on `queue` with the built-in handlers. */
  startWorker(queue) {
    const child = spawn(taskerBin(), ["--database-url", this.db, "worker", "--queue", queue, "--concurrency", "4"], {
      env: this.env(),
      stdio: ["ignore", "ignore", "ignore"],
    });
    this.children.push(child);
    return child;
  }

  async api(path, { method = "GET", body, key } = {}) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (key) headers["X-API-Key"] = key;
    const response = await fetch(`${this.url}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await response.text();
    if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${text}`);
    return text ? JSON.parse(text) : null;
  }

  async createTask(namespace, name, extra = {}, key) {
    return this.api("/v1/tasks", { method: "POST", body: { namespace, name, context: {}, ...extra }, key });
  }

  async stop() {
    for (const child of this.children.reverse()) {
      if (child.exitCode === null) {
        child.kill("SIGTERM");
        await new Promise((r) => {
          const t = setTimeout(() => {
            child.kill("SIGKILL");
            r();
          }, 5000);
          child.on("exit", () => {
            clearTimeout(t);
            r();
          });
        });
      }
    }
    if (this.postgres) psql(this.postgres.server, `DROP DATABASE IF EXISTS ${this.postgres.name} WITH (FORCE)`);
  }
}

export async function launchBrowser() {
  return chromium.launch({ executablePath: chromiumPath(), headless: true, args: ["--no-sandbox"] });
}

const require = createRequire(import.meta.url);
const axeSource = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");

/**
 * Runs axe-core in the page (injected through the DevTools protocol, which the page's
 * Content-Security-Policy does not cover) and returns its serious and critical violations.
 */
export async function seriousViolations(page) {
  await page.evaluate(axeSource);
  const result = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const r = await axe.run(document, { runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"] } });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 3).map((n) => n.target.join(" ")) }));
  });
  return result.filter((v) => v.impact === "serious" || v.impact === "critical");
}

/**
 * Where screenshots go: TASKER_DASHBOARD_SCREENSHOTS (docs/img to refresh the docs), else
 * target/. The PostgreSQL run keeps its own under target/ (the docs show one set).
 */
export function screenshotDir() {
  const target = process.env.CARGO_TARGET_DIR ?? join(repo, "target");
  const dir =
    backend === "postgres"
      ? join(target, "dashboard-screenshots-postgres")
      : process.env.TASKER_DASHBOARD_SCREENSHOTS
        ? resolve(repo, process.env.TASKER_DASHBOARD_SCREENSHOTS)
        : join(target, "dashboard-screenshots");
  mkdirSync(dir, { recursive: true });
  return dir;
}
