import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
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
  assert.match(r.stderr, /cannot load config \/nonexistent\/shoal\.ts/);
});
