// The files a user adopting Shoal looks for: the licence (MIT, as SocketShark's) and the changelog, in step with
// the version the code reports.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { REPO_ROOT } from "../support/shoal_process.ts";

const read = (name: string) => readFileSync(join(REPO_ROOT, name), "utf8");

test("release files: MIT licence in LICENSE and package.json", () => {
  const license = read("LICENSE");
  assert.match(license, /^MIT License\n\nCopyright \(c\) 2026 the Shoal authors\n/);
  assert.match(license, /THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND/);
  assert.equal(JSON.parse(read("package.json")).license, "MIT");
});

test("release files: CHANGELOG.md has an Unreleased section and an entry for the version the code reports", () => {
  const changelog = read("CHANGELOG.md");
  const { version } = JSON.parse(read("package.json"));
  assert.equal(
    /export const VERSION = "([^"]+)"/.exec(read("main.ts"))?.[1],
    version,
    "main.ts and package.json agree",
  );
  const headings = [...changelog.matchAll(/^## \[([^\]]+)\](?: - (\d{4}-\d{2}-\d{2}))?$/gm)].map((m) => [m[1], m[2]]);
  assert.equal(headings[0]?.[0], "Unreleased", "Unreleased comes first");
  const entry = headings.find(([name]) => name === version);
  assert.ok(entry, `a "## [${version}] - YYYY-MM-DD" entry`);
  assert.ok(entry[1], "the entry is dated");
  for (const [name] of headings.slice(1)) assert.match(name, /^\d+\.\d+\.\d+$/, "version headings are semver");
});
