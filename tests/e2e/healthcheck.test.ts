// `shoal --healthcheck` (the Docker image's HEALTHCHECK) against a running Shoal, a fake server and nothing at all:
// it loads the config as a start would and GETs /healthz on that listener.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer as createHttpServer } from "node:http";
import { type AddressInfo, createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { test } from "node:test";
import { REPO_ROOT, shoalCommand, ShoalProcess, shoalTarget } from "../support/shoal_process.ts";

/** A port nothing listens on right now (on `host`). */
async function freePort(host = "127.0.0.1"): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, host, resolve);
  });
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Whether this machine can listen on IPv6 loopback. */
async function hasIpv6(): Promise<boolean> {
  try {
    await freePort("::1");
    return true;
  } catch {
    return false;
  }
}

/** Write `config` as a module in a fresh directory; `run` gets its path; the directory goes afterwards. */
async function withConfigFile<T>(config: object, run: (path: string, dir: string) => Promise<T> | T): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), "shoal-health-"));
  try {
    const path = join(dir, "config.ts");
    writeFileSync(path, `export default ${JSON.stringify(config, null, 2)};\n`);
    return await run(path, dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The environment without any SHOAL_* variable that would change which config or listener is checked. */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1" };
  for (const [key, value] of Object.entries(process.env)) {
    if (!key.startsWith("SHOAL_") || key === "SHOAL_TARGET" || key === "SHOAL_BINARY") env[key] = value;
  }
  return { ...env, ...extra };
}

/** Run `shoal --healthcheck ARGS` (asynchronously: the fake servers below answer from this process). */
function healthcheck(args: string[], env: Record<string, string> = {}): Promise<Checked> {
  const { cmd, args: full } = shoalCommand(shoalTarget(), ["--healthcheck", ...args]);
  return new Promise((resolve) => {
    const child = spawn(cmd, full, { cwd: REPO_ROOT, env: cleanEnv(env), stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
    const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
    child.once("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

interface Checked {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Start Shoal on `config` (a fixed port, so the check can find it), run `check`, stop Shoal. */
async function withShoal(config: Record<string, unknown>, check: () => void | Promise<void>): Promise<void> {
  const shoal = await ShoalProcess.start({ ...config, log: { level: "info", format: "json" } }, {
    env: cleanEnv() as Record<string, string>,
  });
  try {
    await check();
  } finally {
    assert.equal(await shoal.stop(), 0, shoal.describe());
  }
}

test("healthcheck: exit 0 and one line naming the URL when Shoal answers /healthz on the configured port", async () => {
  const port = await freePort();
  const config = { ws: { port } };
  await withShoal(config, () =>
    withConfigFile(config, async (path) => {
      const r = await healthcheck(["-c", path]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, `shoal: healthy: GET http://127.0.0.1:${port}/healthz answered 200\n`);
      assert.equal(r.stderr, "");
    }));
});

test("healthcheck: resolves the config as a start does (SHOAL_CONFIG, SHOAL_PORT, --port)", async () => {
  const port = await freePort();
  await withShoal({ ws: { port } }, async () => {
    await withConfigFile({ ws: { port } }, async (path) => {
      const r = await healthcheck([], { SHOAL_CONFIG: path });
      assert.equal(r.code, 0, r.stderr);
    });
    const byEnv = await healthcheck(["-c", "config.example.ts"], { SHOAL_PORT: String(port) });
    assert.equal(byEnv.code, 0, byEnv.stderr);
    const byFlag = await healthcheck(["-c", "config.example.ts", "--port", String(port)]);
    assert.equal(byFlag.code, 0, byFlag.stderr);
  });
});

test("healthcheck: a listener on 0.0.0.0 is checked on 127.0.0.1", async () => {
  const port = await freePort("0.0.0.0");
  const config = { ws: { host: "0.0.0.0", port } };
  await withShoal(config, () =>
    withConfigFile(config, async (path) => {
      const r = await healthcheck(["-c", path]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, new RegExp(`GET http://127\\.0\\.0\\.1:${port}/healthz answered 200`));
    }));
});

test("healthcheck: a listener on :: is checked on ::1", async (t) => {
  if (!(await hasIpv6())) return t.skip("no IPv6 loopback on this machine");
  const port = await freePort("::");
  const config = { ws: { host: "::", port } };
  await withShoal(config, () =>
    withConfigFile(config, async (path) => {
      const r = await healthcheck(["-c", path]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, new RegExp(`GET http://\\[::1\\]:${port}/healthz answered 200`));
    }));
});

test("healthcheck: https when ws.tls is set, with a self-signed certificate for another name", async (t) => {
  if (spawnSync("openssl", ["version"]).status !== 0) return t.skip("openssl is not installed");
  const dir = mkdtempSync(join(tmpdir(), "shoal-health-tls-"));
  try {
    const cert = join(dir, "cert.pem");
    const key = join(dir, "key.pem");
    const made = spawnSync("openssl", [
      "req",
      "-x509",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-days",
      "1",
      "-subj",
      "/CN=shoal.example.com",
      "-addext",
      "subjectAltName=DNS:shoal.example.com",
      "-keyout",
      key,
      "-out",
      cert,
    ], { encoding: "utf8" });
    assert.equal(made.status, 0, made.stderr);
    const port = await freePort();
    const config = { ws: { port, tls: { cert, key } } };
    await withShoal(config, () =>
      withConfigFile(config, async (path) => {
        const r = await healthcheck(["-c", path]);
        assert.equal(r.code, 0, r.stderr);
        assert.equal(r.stdout, `shoal: healthy: GET https://127.0.0.1:${port}/healthz answered 200\n`);
      }));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** Assert a failed check: exit 1, nothing on stdout, exactly one line on stderr matching `reason`. */
function assertUnhealthy(r: Checked, reason: RegExp): void {
  assert.equal(r.code, 1, `${r.stdout}${r.stderr}`);
  assert.equal(r.stdout, "");
  assert.equal(r.stderr.split("\n").filter((l) => l !== "").length, 1, r.stderr);
  assert.match(r.stderr, reason);
}

test("healthcheck: exit 1 with one line when nothing listens", async () => {
  const port = await freePort();
  await withConfigFile({ ws: { port } }, async (path) => {
    assertUnhealthy(
      await healthcheck(["-c", path]),
      new RegExp(`^shoal: unhealthy: GET http://127\\.0\\.0\\.1:${port}/healthz: connection refused`),
    );
  });
});

test("healthcheck: exit 1 for an answer other than 200, and for no answer within 2 s", async () => {
  const sockets = new Set<Socket>();
  const failing = createHttpServer((_req, res) => res.writeHead(503, { "content-type": "application/json" }).end("{}"));
  const silent: Server = createServer((socket) => sockets.add(socket)); // accepts, never answers
  const listen = (server: Server) =>
    new Promise<number>((resolve) =>
      server.listen(0, "127.0.0.1", () => resolve((server.address() as AddressInfo).port))
    );
  try {
    const failingPort = await listen(failing);
    const silentPort = await listen(silent);
    await withConfigFile({ ws: { port: failingPort } }, async (path) => {
      assertUnhealthy(
        await healthcheck(["-c", path]),
        /unhealthy: GET http:\/\/127\.0\.0\.1:\d+\/healthz: answered 503$/m,
      );
    });
    await withConfigFile({ ws: { port: silentPort } }, async (path) => {
      const started = Date.now();
      assertUnhealthy(await healthcheck(["-c", path]), /: no answer within 2 s$/m);
      assert.ok(Date.now() - started < 10_000, "the check gives up by itself");
    });
  } finally {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => failing.close(resolve));
    await new Promise((resolve) => silent.close(resolve));
  }
});

test("healthcheck: ws.port 0 cannot be checked; an invalid config fails as a start would", async () => {
  await withConfigFile({ ws: { port: 0 } }, async (path) => {
    assertUnhealthy(await healthcheck(["-c", path]), /ws\.port is 0 .*set ws\.port or SHOAL_PORT/);
  });
  const exposed = await healthcheck(["-c", "config.example.ts"], { SHOAL_DEFAULT_HOST: "0.0.0.0" });
  assert.equal(exposed.code, 1);
  assert.match(exposed.stderr, /set SHOAL_PUBLISH_TOKEN/, "the example token on 0.0.0.0: Shoal would not have started");
});
