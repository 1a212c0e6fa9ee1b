// Shared by the browser tests and the canvas benchmark: a real
// `voxgate serve` on loopback and Debian's Chromium.

import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

export const repo = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const bin = process.env.VOXGATE_BIN ?? join(repo, "target/release/voxgate");

export const CHROMIUM_FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--no-first-run",
  "--disable-quic",
  "--disable-sync",
];

/** Starts `voxgate serve` and waits for its HTTP address and admin key. */
export function startGateway() {
  const dataDir = mkdtempSync(join(tmpdir(), "voxgate-ui-"));
  // A random RTP range, away from the ranges the Rust e2e tests lock.
  const lo = 50000 + 2 * Math.floor(Math.random() * 5000);
  const child = spawn(
    bin,
    ["serve", "--sip-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--data-dir", dataDir, "--rtp-ports", `${lo}-${lo + 99}`],
    {
      cwd: repo,
      env: { ...process.env, NO_COLOR: "1", RUST_LOG: "info", VOXGATE_HTTP_UI_DIR: join(repo, "web/dist") },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  const log = [];
  return new Promise((ok, fail) => {
    let base;
    let adminKey;
    const timer = setTimeout(() => fail(new Error(`voxgate did not start in 30 s:\n${log.join("\n")}`)), 30_000);
    const onLine = (line) => {
      log.push(line);
      const http = line.match(/http listening on (\S+)/);
      if (http) base = `http://${http[1]}`;
      const key = line.match(/Admin API key \(shown only once\): (\S+)/);
      if (key) adminKey = key[1];
      if (base && adminKey) {
        clearTimeout(timer);
        ok({ child, base, adminKey, dataDir, log });
      }
    };
    for (const stream of [child.stdout, child.stderr]) {
      let buf = "";
      stream.setEncoding("utf8");
      stream.on("data", (d) => {
        buf += d;
        const lines = buf.split("\n");
        buf = lines.pop();
        lines.forEach(onLine);
      });
    }
    child.on("exit", (code) => {
      clearTimeout(timer);
      fail(new Error(`voxgate exited (${code}) before it was ready:\n${log.join("\n")}`));
    });
  });
}


/** Stops the gateway by its PID and removes its data dir. */
export async function stopGateway(gw) {
  if (gw.child.exitCode === null) {
    const exited = new Promise((r) => gw.child.once("exit", r));
    gw.child.kill("SIGTERM");
    await exited;
  }
  rmSync(gw.dataDir, { recursive: true, force: true });
}

/** Debian's Chromium with a fresh profile (Playwright owns --user-data-dir). */
export async function launchChromium() {
  const profileDir = mkdtempSync(join(tmpdir(), "voxgate-chromium-"));
  const context = await chromium.launchPersistentContext(profileDir, {
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: CHROMIUM_FLAGS,
    viewport: { width: 1400, height: 900 },
  });
  const page = context.pages()[0] ?? (await context.newPage());
  return {
    context,
    page,
    close: async () => {
      await context.close();
      rmSync(profileDir, { recursive: true, force: true });
    },
  };
}

/** One `/v1` request with a bearer key. */
export async function apiCall(base, key, method, path, body, headers = {}) {
  const res = await fetch(base + path, {
    method,
    headers: { Authorization: `Bearer ${key}`, ...(body ? { "Content-Type": "application/json" } : {}), ...headers },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  return { status: res.status, etag: res.headers.get("etag"), json: text ? JSON.parse(text) : undefined };
}
