// Every `deno task` and the `npm start` scripts, run for real after `npm ci`: deno task runs each name found in
// node_modules/.bin as a JavaScript module (npm's deno and bun there are native executables), and npm sends
// SIGTERM to the `sh -c` it starts scripts with, which dash does not pass on. Tasks with outputs run in a
// throw-away copy of the project (sources, manifests, node_modules linked), so nothing is written to the tree.
// These do not depend on SHOAL_TARGET: they run once, in the e2e-bun suite (or with SHOAL_TARGET unset).
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import {
  closeSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { test } from "node:test";
import { alive, Launched, until } from "../support/launched.ts";
import { REPO_ROOT, shoalTarget } from "../support/shoal_process.ts";

const skip = shoalTarget() !== "bun" && "deno task and npm scripts do not depend on SHOAL_TARGET: run in e2e-bun";
const DENO = join(REPO_ROOT, "node_modules", ".bin", "deno");
const ENV = { ...process.env, NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1" };

/** A throw-away copy of what the tasks need: manifests, main.ts, the example config, src/; node_modules linked. */
function projectCopy(): string {
  const dir = mkdtempSync(join(tmpdir(), "shoal-tasks-"));
  for (const name of ["deno.json", "package.json", "main.ts", "config.example.ts"]) {
    cpSync(join(REPO_ROOT, name), join(dir, name));
  }
  cpSync(join(REPO_ROOT, "src"), join(dir, "src"), { recursive: true });
  symlinkSync(join(REPO_ROOT, "node_modules"), join(dir, "node_modules"));
  return dir;
}

function withCopy<T>(use: (dir: string) => T): T {
  const dir = projectCopy();
  let result: T;
  try {
    result = use(dir);
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  if (result instanceof Promise) {
    return result.finally(() => rmSync(dir, { recursive: true, force: true })) as T;
  }
  rmSync(dir, { recursive: true, force: true });
  return result;
}

function denoTask(cwd: string, name: string, timeout = 120_000) {
  const r = spawnSync(DENO, ["task", name], { cwd, env: ENV, encoding: "utf8", timeout });
  const output = `${r.stdout}${r.stderr}`;
  assert.doesNotMatch(output, /Invalid or unexpected token/, `deno task ${name} ran a native binary as JavaScript`);
  return { code: r.status, output };
}

/** The names `deno task` lists in `cwd` (deno.json's, then package.json's scripts). */
function listedTasks(cwd: string): string[] {
  const r = spawnSync(DENO, ["task"], { cwd, env: ENV, encoding: "utf8" });
  return `${r.stdout}${r.stderr}`.split("\n").flatMap((line) => /^- (\S+)/.exec(line)?.[1] ?? []);
}

/** Every tested task, by the test below that runs it. */
const COVERED = [
  "start",
  "start:deno",
  "check",
  "test",
  "test:unit",
  "compile",
  "compile:bun",
  "compile:bun:linux-x64",
  "compile:bun:linux-arm64",
  "compile:bun:linux-x64-musl",
  "bench",
  "bench:quick",
  "bench:fuzz",
  "bench:soak",
];

test("tasks: every task deno task lists is run by this file", { skip }, () => {
  withCopy((dir) => assert.deepEqual(listedTasks(dir).sort(), [...COVERED].sort(), "add a test for a new task"));
});

test("tasks: deno task check type-checks everything", { skip, timeout: 120_000 }, () => {
  const r = denoTask(REPO_ROOT, "check");
  assert.equal(r.code, 0, r.output);
  assert.match(r.output, /Check .*main\.ts/);
});

test(
  "tasks: test, test:unit and the bench tasks run tests/run.mjs with Node and the bench scripts with Bun",
  { skip },
  () => {
    withCopy((dir) => {
      mkdirSync(join(dir, "tests"));
      mkdirSync(join(dir, "bench"));
      // Stubs that say who ran them with what, so the real suites need not run.
      writeFileSync(
        join(dir, "tests", "run.mjs"),
        `console.log("STUB " + JSON.stringify({ node: !("Deno" in globalThis) && !("Bun" in globalThis), args: process.argv.slice(2) }));\n`,
      );
      for (const script of ["run.ts", "fuzz.ts", "soak.ts"]) {
        writeFileSync(
          join(dir, "bench", script),
          `console.log("STUB " + JSON.stringify({ script: ${
            JSON.stringify(script)
          }, bun: "Bun" in globalThis, args: process.argv.slice(2) }));\n`,
        );
      }
      const stub = (name: string) => {
        const r = denoTask(dir, name, 30_000);
        assert.equal(r.code, 0, r.output);
        const line = r.output.split("\n").find((l) => l.startsWith("STUB "));
        assert.ok(line, `deno task ${name} ran the script: ${r.output}`);
        return JSON.parse(line.slice(5));
      };
      assert.deepEqual(stub("test"), { node: true, args: [] });
      assert.deepEqual(stub("test:unit"), { node: true, args: ["typecheck", "unit"] });
      assert.deepEqual(stub("bench"), { script: "run.ts", bun: true, args: [] });
      assert.deepEqual(stub("bench:quick"), { script: "run.ts", bun: true, args: ["--quick"] });
      assert.deepEqual(stub("bench:fuzz"), { script: "fuzz.ts", bun: true, args: [] });
      assert.deepEqual(stub("bench:soak"), { script: "soak.ts", bun: true, args: ["--target", "bun"] });
    });
  },
);

function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: "127.0.0.1", port });
    socket.once("connect", () => {
      socket.destroy();
      resolve(false);
    });
    socket.once("error", () => resolve(true));
  });
}

/**
 * Start `cmd args` in a project copy whose ./config.ts the CLI's default picks, wait for "shoal ready", SIGTERM the
 * launcher's pid only, and check that Shoal stopped gracefully and no process it started is left.
 */
async function startAndTerminate(cmd: string, args: string[], runtime: "bun" | "deno"): Promise<void> {
  await withCopy(async (dir) => {
    writeFileSync(
      join(dir, "config.ts"),
      `export default { ws: { port: 0 }, log: { level: "info", format: "json" } };\n`,
    );
    const launched = new Launched(cmd, args, { cwd: dir, env: ENV });
    try {
      const ready = await launched.ready();
      assert.equal(ready.config, "config.ts", "./config.ts, as the CLI's default");
      assert.equal(ready.runtime, runtime);
      const below = launched.below();
      assert.ok(below.length > 0, "Shoal runs as a child of the launcher");
      process.kill(launched.child.pid!, "SIGTERM");
      await until(
        `the processes under ${args.join(" ")} to end (${below.join(", ")})\n${launched.output}`,
        () => !below.some(alive),
        5000,
      );
      const exit = await launched.exited;
      assert.ok(launched.has("done"), `Shoal's graceful shutdown finished:\n${launched.output}`);
      assert.deepEqual(exit, { code: 0, signal: null }, launched.output);
      assert.ok(await refused(ready.port as number), "nothing listens any more");
    } finally {
      launched.kill();
    }
  });
}

test(
  "tasks: deno task start runs Shoal on Deno with ./config.ts; SIGTERM to deno task stops it gracefully",
  { skip },
  async () => {
    await startAndTerminate(DENO, ["task", "start"], "deno");
  },
);

test("tasks: deno task start:deno is the same start", { skip }, async () => {
  await startAndTerminate(DENO, ["task", "start:deno"], "deno");
});

test(
  "npm start runs Shoal on Bun with ./config.ts; SIGTERM to npm stops Shoal gracefully, leaving nothing",
  { skip },
  async () => {
    await startAndTerminate("npm", ["start"], "bun");
  },
);

test("npm run start:deno: the same on Deno", { skip }, async () => {
  await startAndTerminate("npm", ["run", "start:deno"], "deno");
});

/** The ELF header's machine (62 x86-64, 183 aarch64) and whether the first pages name musl's loader. */
function elf(path: string): { machine: number; musl: boolean } {
  const fd = openSync(path, "r");
  try {
    const head = Buffer.alloc(8192);
    readSync(fd, head, 0, head.length, 0);
    assert.deepEqual([...head.subarray(0, 4)], [0x7f, 0x45, 0x4c, 0x46], `${path} is an ELF executable`);
    return { machine: head.readUInt16LE(18), musl: head.includes("ld-musl") };
  } finally {
    closeSync(fd);
  }
}

test("tasks: compile:bun builds dist/shoal, which runs", { skip, timeout: 120_000 }, () => {
  withCopy((dir) => {
    const r = denoTask(dir, "compile:bun");
    assert.equal(r.code, 0, r.output);
    const binary = join(dir, "dist", "shoal");
    const version = spawnSync(binary, ["--version"], { cwd: dir, encoding: "utf8" });
    assert.match(version.stdout, /^shoal \d+\.\d+\.\d+/, version.stderr);
    const check = spawnSync(binary, ["--check"], { cwd: dir, encoding: "utf8" });
    assert.equal(check.status, 0, check.stderr);
    assert.match(check.stdout, /config config\.example\.ts is valid/);
  });
});

/** A cross-compile fails here only where Bun cannot download the target's runtime (it is cached after once). */
function downloadFailure(output: string): boolean {
  return /download|fetch|ConnectionRefused|ConnectionTimeout|UnableToConnect|DNS|getaddrinfo|network/i.test(output);
}

for (
  const [target, machine, musl] of [
    ["linux-x64", 62, false],
    ["linux-arm64", 183, false],
    ["linux-x64-musl", 62, true],
  ] as const
) {
  test(`tasks: compile:bun:${target} builds dist/shoal-${target} for that target`, { skip, timeout: 120_000 }, (t) => {
    withCopy((dir) => {
      const r = denoTask(dir, `compile:bun:${target}`);
      if (r.code !== 0 && downloadFailure(r.output)) {
        t.skip(`Bun could not download the ${target} runtime here: ${r.output.trim().split("\n").at(-1)}`);
        return;
      }
      assert.equal(r.code, 0, r.output);
      assert.deepEqual(elf(join(dir, "dist", `shoal-${target}`)), { machine, musl });
    });
  });
}

test("tasks: compile runs deno compile, which builds dist/shoal-deno or fails only for want of denort", {
  skip,
  timeout: 120_000,
}, (t) => {
  withCopy((dir) => {
    const r = denoTask(dir, "compile");
    if (r.code === 0) {
      const version = spawnSync(join(dir, "dist", "shoal-deno"), ["--version"], { cwd: dir, encoding: "utf8" });
      assert.match(version.stdout, /^shoal \d+\.\d+\.\d+/, version.stderr);
      return;
    }
    // deno compile downloads its runtime (denort) from Deno's own servers, which these machines cannot reach.
    assert.match(r.output, /denort/, `a failure other than the denort download:\n${r.output}`);
    assert.ok(downloadFailure(r.output) || /error sending request|dns error/i.test(r.output), r.output);
    assert.ok(!existsSync(join(dir, "dist", "shoal-deno")));
    t.skip(
      `deno compile could not download denort here: ${r.output.split("\n").find((l) => /denort/.test(l))?.trim()}`,
    );
  });
});
