import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import type { AddressInfo } from "node:net";
import process from "node:process";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { REPO_ROOT, shoalCommand, shoalTarget } from "../support/shoal_process.ts";

function shoal(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const { cmd, args: full } = shoalCommand(shoalTarget(), args);
  const r = spawnSync(cmd, full, { cwd: REPO_ROOT, encoding: "utf8", timeout: 20_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

test("cli: --check validates the example config and prints a summary", () => {
  const r = shoal("--check", "--config", "config.example.ts");
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /config config\.example\.ts is valid/);
  assert.match(r.stdout, /broker\s+memory/);
  assert.match(r.stdout, /services\s+demo/);
});

test("cli: an invalid config exits 1 naming every bad key", () => {
  const dir = mkdtempSync(join(tmpdir(), "shoal-cli-"));
  try {
    const path = join(dir, "bad.ts");
    writeFileSync(
      path,
      `export default { ws: { prot: 1 }, services: { "a.b": {}, s: { onMessage: null, extraFields: ["event"] } } };\n`,
    );
    const r = shoal("--check", "-c", path);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /ws\.prot: unknown key/);
    assert.match(r.stderr, /services\.a\.b: service name "a\.b"/);
    assert.match(r.stderr, /services\.s\.onMessage/);
    assert.match(r.stderr, /services\.s\.extraFields: extraFields must not name a protocol key/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("cli: unknown flags exit 2 with the usage; --help and --version exit 0", () => {
  const bad = shoal("--nope");
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /Usage: shoal/);
  const help = shoal("--help");
  assert.equal(help.code, 0);
  assert.match(help.stdout, /--config PATH/);
  const version = shoal("-v");
  assert.equal(version.code, 0);
  assert.match(version.stdout, /^shoal \d+\.\d+\.\d+/);
});

test("cli: a missing config file exits 1 with its path", () => {
  const r = shoal("--check", "-c", "/nonexistent/shoal.ts");
  assert.equal(r.code, 1);
  assert.match(r.stderr, /cannot load config:\n  - \/nonexistent\/shoal\.ts: no such file/);
});

/** Run `shoal` with a config module written from `source` (and optional files beside it). */
function withConfig(source: string, run: (path: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), "shoal-cli-"));
  try {
    const path = join(dir, "config.ts");
    writeFileSync(path, source);
    run(path);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function shoalEnv(env: Record<string, string>, ...args: string[]) {
  const { cmd, args: full } = shoalCommand(shoalTarget(), args);
  const r = spawnSync(cmd, full, { cwd: REPO_ROOT, encoding: "utf8", timeout: 20_000, env: { ...process.env, ...env } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

test("cli: a default export that is not an object is an error, not a start on defaults", () => {
  for (const [source, what] of [
    ["export default () => ({ ws: { port: 1 } });\n", /not a function/],
    ["export default [{ ws: {} }];\n", /not an array/],
    ["export default 9000;\n", /not a number/],
    ["export default null;\n", /not null/],
    ["export default Promise.resolve({});\n", /not a Promise \(use top-level await/],
    ["export default new Map([['ws', {}]]);\n", /not a Map \(write the object literal itself\)/],
    ["class Settings { get ws() { return { port: 1 }; } }\nexport default new Settings();\n", /not a Settings/],
    ["export const other = {};\n", /has no default export/],
  ] as const) {
    withConfig(source, (path) => {
      const r = shoal("--check", "-c", path);
      assert.equal(r.code, 1, `${source}: ${r.stdout}`);
      assert.match(r.stderr, what);
      assert.doesNotMatch(r.stderr, /\n\s+at /, "no stack trace");
    });
  }
});

test("cli: a syntax error in the config names file:line:column and the message on every runtime", () => {
  withConfig("export default {\n  ws: { port: 9000 },\n  services: { a: { ,\n};\n", (path) => {
    const r = shoal("--check", "-c", path);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^shoal: cannot load config:\n  - \S*config\.ts:3:\d+: syntax error: \S/);
    assert.match(r.stderr, /services: \{ a: \{ ,/, "the offending line");
    assert.doesNotMatch(r.stderr, /AggregateError|\n\s+at /);
  });
});

test("cli: ws.tls and http.caFile files must exist and be readable, with --check and at start", () => {
  const dir = mkdtempSync(join(tmpdir(), "shoal-cli-"));
  try {
    writeFileSync(join(dir, "key.pem"), "not checked for content here");
    mkdirSync(join(dir, "ca-dir"));
    const path = join(dir, "config.ts");
    const tls = { cert: join(dir, "missing-cert.pem"), key: join(dir, "key.pem") };
    writeFileSync(path, `export default ${JSON.stringify({ ws: { port: 0, tls }, http: { caFile: join(dir, "ca-dir") } })};\n`);
    for (const args of [["--check"], []]) {
      const r = shoal(...args, "-c", path);
      assert.equal(r.code, 1, r.stdout);
      assert.ok(r.stderr.includes(`ws.tls.cert: cannot read ${tls.cert}: no such file`), r.stderr);
      assert.ok(r.stderr.includes(`http.caFile: cannot read ${join(dir, "ca-dir")}: not a file`), r.stderr);
      assert.doesNotMatch(r.stderr, /ws\.tls\.key/, "the key exists");
      assert.doesNotMatch(r.stderr, /\n\s+at /);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("cli: a bad environment variable is named with its value and the allowed values", () => {
  const r = shoalEnv({ SHOAL_LOG_LEVEL: "verbose" }, "--check", "-c", "config.example.ts");
  assert.equal(r.code, 1);
  assert.match(r.stderr, /SHOAL_LOG_LEVEL="verbose" \(sets log\.level\): .*"trace" \| "debug" \| "info"/);
  const port = shoalEnv({ SHOAL_PORT: "http" }, "--check", "-c", "config.example.ts");
  assert.equal(port.code, 1);
  assert.match(port.stderr, /SHOAL_PORT \(sets ws\.port\): not a port \(an integer from 0 to 65535\): "http"/);
});

test("cli: the example publish token is refused on an address others can reach, with what to set", () => {
  const open = shoalEnv({ SHOAL_HOST: "0.0.0.0" }, "--check", "-c", "config.example.ts");
  assert.equal(open.code, 1);
  assert.match(open.stderr, /publish\.token: the example token "change-me" may not be used on ws\.host 0\.0\.0\.0/);
  assert.match(open.stderr, /set SHOAL_PUBLISH_TOKEN/);
  const flag = shoal("--check", "-c", "config.example.ts", "--host", "::");
  assert.equal(flag.code, 1, "a --host flag is checked too");
  const own = shoalEnv({ SHOAL_HOST: "0.0.0.0", SHOAL_PUBLISH_TOKEN: "a-secret-of-my-own" }, "--check", "-c", "config.example.ts");
  assert.equal(own.code, 0, own.stderr);
  assert.equal(shoal("--check", "-c", "config.example.ts").code, 0, "loopback: the quick start works as is");
});

test("cli: SHOAL_DEFAULT_HOST applies only when the config sets no ws.host (the Docker image's default)", () => {
  withConfig(`export default { ws: { port: 9100 } };\n`, (path) => {
    const r = shoalEnv({ SHOAL_DEFAULT_HOST: "0.0.0.0" }, "--check", "-c", path);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /listen\s+ws:\/\/0\.0\.0\.0:9100/);
  });
  withConfig(`export default { ws: { host: "127.0.0.2", port: 9100 } };\n`, (path) => {
    const r = shoalEnv({ SHOAL_DEFAULT_HOST: "0.0.0.0" }, "--check", "-c", path);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /listen\s+ws:\/\/127\.0\.0\.2:9100/, "the config's own host wins");
  });
});

test("cli: a port already in use is one line naming the address, exit 1, no stack trace", async () => {
  const blocker = createServer();
  await new Promise<void>((resolve) => blocker.listen(0, "127.0.0.1", resolve));
  const port = (blocker.address() as AddressInfo).port;
  try {
    withConfig(`export default { ws: { host: "127.0.0.1", port: ${port} }, log: { format: "json" } };\n`, (path) => {
      const r = shoal("-c", path);
      assert.equal(r.code, 1, r.stdout);
      const line = (r.stdout + r.stderr).split("\n").find((l) => l.includes("cannot listen"));
      assert.ok(line, r.stdout + r.stderr);
      assert.match(line, new RegExp(`cannot listen on 127\\.0\\.0\\.1:${port} \\(ws\\.host, ws\\.port\\): address already in use`));
      assert.doesNotMatch(r.stdout + r.stderr, /\n\s+at /);
    });
  } finally {
    blocker.close();
  }
});

test("cli: shoal config from-socketshark converts SocketShark's example settings into a config that --check accepts", () => {
  const converted = shoal("config", "from-socketshark", "tests/cli/fixtures/example_config.json");
  assert.equal(converted.code, 0, converted.stderr);
  assert.match(converted.stdout, /^\/\/ Shoal config converted from SocketShark settings/);
  withConfig(converted.stdout, (path) => {
    const check = shoal("--check", "-c", path);
    assert.equal(check.code, 0, check.stderr);
    assert.match(check.stdout, /services\s+my_service/);
  });
  const unknown = shoal("config", "nope");
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /unknown config command "nope"/);
  const missing = shoal("config", "from-socketshark", "/nonexistent/settings.json");
  assert.equal(missing.code, 1);
  assert.doesNotMatch(missing.stderr, /\n\s+at /);
});

test("cli: a config module that throws a Symbol or an object without a prototype gets one line, no stack", () => {
  for (const thrown of ['Symbol("nope")', "Object.create(null)"]) {
    withConfig(`throw ${thrown};\nexport default {};\n`, (path) => {
      const r = shoal("--check", "-c", path);
      assert.equal(r.code, 1, r.stdout);
      assert.match(r.stderr, /^shoal: cannot load config:\n  - /);
      assert.doesNotMatch(r.stderr, /\n\s+at /);
    });
  }
  withConfig(`export default { get ws() { throw Object.create(null); } };\n`, (path) => {
    const r = shoal("--check", "-c", path);
    assert.equal(r.code, 1, r.stdout);
    assert.match(r.stderr, /^shoal: cannot load config/);
  });
});

test("cli: an empty SHOAL_HOST or SHOAL_PORT is unset (the config's own value stays); ws.host may not be empty", () => {
  withConfig(`export default { ws: { host: "127.0.0.1", port: 9101 } };\n`, (path) => {
    const r = shoalEnv({ SHOAL_HOST: "", SHOAL_PORT: "" }, "--check", "-c", path);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /listen\s+ws:\/\/127\.0\.0\.1:9101/);
  });
  withConfig(`export default { ws: { host: "" } };\n`, (path) => {
    const r = shoal("--check", "-c", path);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /ws\.host: ws\.host must not be empty/);
  });
  const hex = shoal("--check", "-c", "config.example.ts", "--port", "0x50");
  assert.equal(hex.code, 1);
  assert.match(hex.stderr, /--port: not a port/);
});
