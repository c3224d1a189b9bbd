// Shoal as the Docker image runs it, without a Docker engine: the image's layout (/app with package.json, main.ts,
// config.example.ts, src/ and node_modules), the final stage's ENV read from the Dockerfile, its ENTRYPOINT's
// arguments and its HEALTHCHECK command, on each SHOAL_TARGET. A free port stands in for the container's own 9000.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { cpSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { type AddressInfo, createServer } from "node:net";
import { networkInterfaces, tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { test } from "node:test";
import { imageFacts } from "../support/dockerfile.ts";
import { Launched } from "../support/launched.ts";
import { REPO_ROOT, shoalCommand, shoalTarget } from "../support/shoal_process.ts";

const image = imageFacts();

/** The arguments after the runtime and main.ts: what the ENTRYPOINT or HEALTHCHECK passes to Shoal itself. */
function shoalArgs(command: readonly string[]): string[] {
  const entry = image.entrypoint ?? [];
  assert.deepEqual(command.slice(0, entry.length), entry, "the command starts with the ENTRYPOINT");
  return command.slice(entry.length);
}

/** A container's environment: the process's PATH and such, no SHOAL_* from outside, the image's ENV, then `extra`. */
function containerEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1" };
  for (const [key, value] of Object.entries(process.env)) {
    if (!key.startsWith("SHOAL_") || key === "SHOAL_TARGET" || key === "SHOAL_BINARY") env[key] = value;
  }
  return { ...env, ...image.env, ...extra };
}

/** /app as the image lays it out (plus deno.json, which the Deno target needs to resolve npm packages). */
function appDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "shoal-image-"));
  for (const name of ["package.json", "main.ts", "config.example.ts", "deno.json"]) {
    cpSync(join(REPO_ROOT, name), join(dir, name));
  }
  cpSync(join(REPO_ROOT, "src"), join(dir, "src"), { recursive: true });
  symlinkSync(join(REPO_ROOT, "node_modules"), join(dir, "node_modules"));
  return dir;
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "0.0.0.0", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Run the image's HEALTHCHECK command in `dir` with `env`. */
function imageHealthcheck(dir: string, env: NodeJS.ProcessEnv) {
  assert.ok(image.healthcheck?.cmd, "the Dockerfile has an exec-form HEALTHCHECK");
  const { cmd, args } = shoalCommand(shoalTarget(), shoalArgs(image.healthcheck.cmd));
  return spawnSync(cmd, args, { cwd: dir, env, encoding: "utf8", timeout: 20_000 });
}

/** Start the ENTRYPOINT in `dir` with `env`; `use` gets it once ready; SIGTERM must then end it with 0. */
async function runImage(dir: string, env: NodeJS.ProcessEnv, use: (shoal: Launched) => Promise<void> | void) {
  const { cmd, args } = shoalCommand(shoalTarget(), shoalArgs(image.entrypoint ?? []));
  const shoal = new Launched(cmd, args, { cwd: dir, env });
  try {
    await shoal.ready();
    await use(shoal);
    process.kill(shoal.child.pid!, "SIGTERM");
    assert.deepEqual(await shoal.exited, { code: 0, signal: null }, shoal.output);
  } finally {
    shoal.kill();
  }
}

test("image: without a config of one's own or SHOAL_PUBLISH_TOKEN, Shoal exits 1 at once saying what to set", () => {
  const dir = appDir();
  try {
    const { cmd, args } = shoalCommand(shoalTarget(), shoalArgs(image.entrypoint ?? []));
    const r = spawnSync(cmd, args, { cwd: dir, env: containerEnv(), encoding: "utf8", timeout: 20_000 });
    assert.equal(r.status, 1, `${r.stdout}${r.stderr}`);
    assert.match(r.stderr, /publish\.token: the example token "change-me" may not be used on ws\.host 0\.0\.0\.0/);
    assert.match(r.stderr, /set SHOAL_PUBLISH_TOKEN/);
    assert.doesNotMatch(r.stdout, /shoal ready/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("image: with SHOAL_PUBLISH_TOKEN the example config listens on 0.0.0.0 and the HEALTHCHECK passes", async () => {
  const dir = appDir();
  try {
    const port = await freePort();
    const env = containerEnv({ SHOAL_PUBLISH_TOKEN: "a-secret-of-this-test", SHOAL_PORT: String(port) });
    await runImage(dir, env, async (shoal) => {
      const ready = shoal.lines.find((l) => l.message === "shoal ready")!;
      assert.equal(ready.config, "config.example.ts");
      assert.equal(ready.host, "0.0.0.0");
      assert.equal(ready.port, port);
      // Reachable on an address other than loopback, where the machine has one.
      const external = Object.values(networkInterfaces()).flat().find((a) => a?.family === "IPv4" && !a.internal);
      if (external) assert.equal((await fetch(`http://${external.address}:${port}/healthz`)).status, 200);
      const health = imageHealthcheck(dir, env);
      assert.equal(health.status, 0, health.stderr);
      assert.match(health.stdout, new RegExp(`GET http://127\\.0\\.0\\.1:${port}/healthz answered 200`));
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("image: a mounted config's ws.host and ws.port win over the image's default; the HEALTHCHECK follows them", async () => {
  const dir = appDir();
  try {
    const port = await freePort();
    // Mounted as /app/config.ts: the CLI's default picks it over config.example.ts.
    writeFileSync(join(dir, "config.ts"), `export default { ws: { host: "127.0.0.1", port: ${port} } };\n`);
    const env = containerEnv();
    await runImage(dir, env, (shoal) => {
      const ready = shoal.lines.find((l) => l.message === "shoal ready")!;
      assert.equal(ready.config, "config.ts");
      assert.equal(ready.host, "127.0.0.1", "the config's ws.host beats SHOAL_DEFAULT_HOST");
      assert.equal(ready.port, port);
      const health = imageHealthcheck(dir, env);
      assert.equal(health.status, 0, health.stderr);
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
