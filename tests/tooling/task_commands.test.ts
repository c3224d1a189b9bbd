// The commands of deno.json's tasks and package.json's scripts, read without running them (tests/e2e/tasks.test.ts
// runs them). `deno task` runs package.json scripts too, and runs every name found in node_modules/.bin as a
// JavaScript module; npm's `deno` and `bun` there are native executables, so a task must call them by path.
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { REPO_ROOT } from "../support/shoal_process.ts";

type TaskValue = string | { readonly command?: string };

function readJson(name: string): Record<string, unknown> {
  return JSON.parse(readFileSync(join(REPO_ROOT, name), "utf8"));
}

/** What `deno task NAME` runs, for every name it lists: deno.json's tasks first, then package.json's scripts. */
export function denoTasks(): Map<string, { command: string; from: "deno.json" | "package.json" }> {
  const tasks = new Map<string, { command: string; from: "deno.json" | "package.json" }>();
  for (const [name, value] of Object.entries((readJson("deno.json").tasks ?? {}) as Record<string, TaskValue>)) {
    const command = typeof value === "string" ? value : value.command;
    if (command !== undefined) tasks.set(name, { command, from: "deno.json" });
  }
  for (const [name, command] of Object.entries((readJson("package.json").scripts ?? {}) as Record<string, string>)) {
    if (!tasks.has(name)) tasks.set(name, { command, from: "package.json" });
  }
  return tasks;
}

/** The program of each simple command in a shell line (`a && b; c | d` → a, b, c, d), after `VAR=x` prefixes. */
export function programs(line: string): string[] {
  return line.split(/&&|\|\||;|\|/).map((part) => {
    const words = part.trim().split(/\s+/).filter((w) => !/^[A-Za-z_][A-Za-z0-9_]*=/.test(w));
    return words[0] === "exec" ? words[1] : words[0];
  }).filter((word): word is string => word !== undefined && word !== "");
}

/** The command names `deno task` would take from node_modules/.bin (extension-less entries), at least deno and bun. */
function binNames(): Set<string> {
  const dir = join(REPO_ROOT, "node_modules", ".bin");
  const names = new Set(["deno", "bun", "bunx"]);
  if (existsSync(dir)) { for (const name of readdirSync(dir)) if (!name.includes(".")) names.add(name); }
  return names;
}

test("task commands: the splitter finds each program", () => {
  assert.deepEqual(programs("A=1 deno run x && exec bun y; node z | grep q"), ["deno", "bun", "node", "grep"]);
});

test("task commands: no task deno task runs calls a node_modules/.bin name (it would run a native binary as JS)", () => {
  const shims = binNames();
  const bad: string[] = [];
  for (const [name, { command, from }] of denoTasks()) {
    for (const program of programs(command)) if (shims.has(program)) bad.push(`${name} (${from}): ${command}`);
  }
  assert.deepEqual(bad, [], "call them by path, e.g. ./node_modules/.bin/deno");
});

test("task commands: npm start and deno task start follow the CLI's default config and hand signals to Shoal", () => {
  const scripts = readJson("package.json").scripts as Record<string, string>;
  for (const name of ["start", "start:deno"]) {
    assert.doesNotMatch(scripts[name], /--config|\s-c\s/, `npm ${name}: ./config.ts first, as the CLI`);
    // npm sends SIGTERM to `sh -c SCRIPT`; dash does not pass it on, so the shell must become Shoal.
    assert.match(scripts[name], /^exec /, `npm ${name}: exec, so npm's SIGTERM reaches Shoal`);
  }
  for (const name of ["start", "start:deno"]) {
    assert.doesNotMatch(denoTasks().get(name)!.command, /--config|\s-c\s/, `deno task ${name}`);
  }
});
