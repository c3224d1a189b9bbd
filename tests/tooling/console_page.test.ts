import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { CONSOLE_PAGE } from "../../src/server/console_page.generated.ts";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

test("console page: the generated module is what src/console/ and client/src/ build today", () => {
  const r = spawnSync("bun", ["run", "scripts/build_console.ts", "--check"], { cwd: ROOT, encoding: "utf8" });
  assert.equal(r.status, 0, `${r.stderr}${r.stdout}`);
});

test("console page: one self-contained document; its CSP allows only its own inline script and style", () => {
  const { html, csp } = CONSOLE_PAGE;
  assert.match(html, /^<!doctype html>/);
  assert.doesNotMatch(html, /<script[^>]+src=|<link[^>]+rel="stylesheet"|https?:\/\/(?!www\.w3\.org)/, "nothing loaded from elsewhere");
  assert.equal((html.match(/<script/g) ?? []).length, 1);
  assert.match(csp, /default-src 'none'/);
  assert.match(csp, /script-src 'sha256-[A-Za-z0-9+/]+=*'/);
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
});
