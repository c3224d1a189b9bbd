#!/usr/bin/env node
// Runs every Shoal test suite and prints a last line "N passed, M failed".
// Needs only Node and `npm ci` before it: deno and bun come from npm; redis-server is installed from the
// system packages when missing (as root with apt-get), otherwise this stops and says how to install it.
//
//   node tests/run.mjs              all suites
//   node tests/run.mjs unit e2e-bun the named suites only (typecheck, unit-deno, unit-bun, e2e-deno, e2e-bun, e2e-binary,
//                                   browser, bench-quick)
// browser drives the system Chromium (installed from the system packages when missing) with playwright-core.
// bench-quick runs the benchmark suite small and short (bench/run.ts --quick) so the harness cannot rot: each
// scenario × server run counts as a test that passes when it completed; no timing is judged.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const bin = join(root, "node_modules", ".bin");
const results = join(root, ".test-results");
const env = { ...process.env, PATH: `${bin}:${process.env.PATH}`, NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1" };

function run(cmd, args, extraEnv = {}) {
  const r = spawnSync(cmd, args, { cwd: root, stdio: "inherit", env: { ...env, ...extraEnv } });
  return r.status ?? 1;
}

function have(cmd) {
  return spawnSync("sh", ["-c", `command -v ${cmd}`], { env }).status === 0;
}

function ensureRuntimes() {
  for (const tool of ["deno", "bun"]) {
    if (!existsSync(join(bin, tool))) {
      console.error(`tests: ${tool} is missing from node_modules/.bin; run "npm ci" first.`);
      process.exit(1);
    }
  }
}

/** Install a Debian package (as root, or with password-less sudo); true when `installed()` holds afterwards. */
function aptInstall(pkg, installed) {
  const root = typeof process.getuid === "function" && process.getuid() === 0;
  const sudo = !root && have("sudo") ? ["sudo", "-n"] : [];
  if (!(root || sudo.length) || !have("apt-get")) return false;
  console.log(`tests: ${pkg} is missing; installing it from the system packages`);
  const apt = (args) => spawnSync(sudo[0] ?? "apt-get", [...sudo.slice(1), ...(sudo.length ? ["apt-get"] : []), ...args], {
    stdio: "inherit",
    env: { ...env, DEBIAN_FRONTEND: "noninteractive" },
  }).status;
  return apt(["update", "-qq"]) === 0 && apt(["install", "-y", "-qq", pkg]) === 0 && installed();
}

function ensureRedis() {
  const installed = () => have("redis-server") && have("redis-cli");
  if (installed() || aptInstall("redis-server", installed)) return;
  console.error("tests: redis-server is needed. Install it with: sudo apt-get install -y redis-server");
  process.exit(1);
}

/** Test cases and failures in a JUnit file (flat node:test tests: one testcase each on both runners). */
function countJunit(path) {
  if (!existsSync(path)) return undefined;
  const xml = readFileSync(path, "utf8");
  const cases = xml.split("<testcase").slice(1);
  const failed = cases.filter((c) => {
    const body = c.slice(0, c.search(/<\/testcase>|\/>\s*(?:<testcase|<\/testsuite)/) + 12);
    return /<failure|<error/.test(body);
  }).length;
  return { passed: cases.length - failed, failed };
}

/** The system Chromium, if installed. */
function chromiumPath() {
  for (const name of ["chromium", "chromium-browser", "google-chrome"]) {
    const r = spawnSync("sh", ["-c", `command -v ${name}`], { env, encoding: "utf8" });
    if (r.status === 0) return r.stdout.trim();
  }
  return undefined;
}

/** Chromium for the browser suite: installed from the system packages when missing, as redis-server is. */
function ensureChromium() {
  if (chromiumPath() || aptInstall("chromium", () => chromiumPath() !== undefined)) return;
  console.error("tests: chromium is needed for the browser suite. Install it with: sudo apt-get install -y chromium");
  process.exit(1);
}

const unitDirs = readdirSync(join(root, "tests"), { withFileTypes: true })
  .filter((d) => d.isDirectory() && !["e2e", "support", "browser"].includes(d.name))
  .map((d) => `./tests/${d.name}`);

const suites = {
  typecheck: () => {
    const code = run("deno", ["check", "main.ts", "config.example.ts", "src/", "tests/", "bench/", "client/", "examples/"]);
    return { passed: code === 0 ? 1 : 0, failed: code === 0 ? 0 : 1 };
  },
  "unit-deno": () => junit("unit-deno", "deno", ["test", "-A", "--no-check", "--reporter=junit", `--junit-path=${xml("unit-deno")}`, ...unitDirs]),
  // Under Bun the core runs on the fan-out path, as it does in production there; under Deno, per session.
  "unit-bun": () =>
    junit("unit-bun", "bun", ["test", "--timeout", "20000", "--reporter=junit", `--reporter-outfile=${xml("unit-bun")}`, ...unitDirs], {
      SHOAL_TEST_FANOUT: "1",
    }),
  "e2e-deno": () =>
    junit("e2e-deno", "deno", ["test", "-A", "--no-check", "--reporter=junit", `--junit-path=${xml("e2e-deno")}`, "./tests/e2e", "./tests/support"], { SHOAL_TARGET: "deno" }),
  "e2e-bun": () =>
    junit("e2e-bun", "bun", ["test", "--timeout", "60000", "--reporter=junit", `--reporter-outfile=${xml("e2e-bun")}`, "./tests/e2e", "./tests/support"], { SHOAL_TARGET: "bun" }),
  "e2e-binary": () => {
    const out = join(root, "dist", "shoal");
    if (run("bun", ["build", "--compile", "main.ts", "--outfile", out]) !== 0) return { passed: 0, failed: 1 };
    return junit("e2e-binary", "bun", ["test", "--timeout", "60000", "--reporter=junit", `--reporter-outfile=${xml("e2e-binary")}`, "./tests/e2e"], {
      SHOAL_TARGET: "binary",
      SHOAL_BINARY: out,
    });
  },
  // Real Chromium (the system package, driven by playwright-core) against real Shoal processes under Bun.
  browser: () =>
    junit("browser", "bun", ["test", "--timeout", "60000", "--reporter=junit", `--reporter-outfile=${xml("browser")}`, "./tests/browser"], {
      SHOAL_TARGET: "bun",
      CHROMIUM: chromiumPath() ?? "",
    }),
  "bench-quick": () => {
    const dir = join(results, "bench");
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    const code = run("bun", ["run", "bench/run.ts", "--quick", "--results", dir, "--report", join(dir, "quick.md")]);
    const file = readdirSync(dir).find((name) => name.endsWith(".json"));
    if (!file) return { passed: 0, failed: 1 }; // the runner died before writing results
    const { scenarios } = JSON.parse(readFileSync(join(dir, file), "utf8"));
    const records = scenarios.flatMap((s) => Object.entries(s.runs).flatMap(([column, runs]) => runs.map((r) => ({ s, column, r }))));
    const failures = records.filter(({ r }) => "error" in r);
    for (const { s, column, r } of failures) console.log(`bench-quick: ${s.id} ${column} failed: ${r.error.split("\n")[0]}`);
    const counts = { passed: records.length - failures.length, failed: failures.length };
    if (code !== 0 && counts.failed === 0) counts.failed = 1;
    return counts;
  },
};

function xml(name) {
  return join(results, `${name}.xml`);
}

function junit(name, cmd, args, extraEnv) {
  rmSync(xml(name), { force: true });
  const code = run(cmd, args, extraEnv);
  const counts = countJunit(xml(name));
  if (!counts) return { passed: 0, failed: 1 }; // the runner died before writing results
  // A runner that failed without a failing test case (a crash between tests) still counts as a failure.
  if (code !== 0 && counts.failed === 0) counts.failed = 1;
  return counts;
}

const wanted = process.argv.slice(2);
const selected = Object.keys(suites).filter((s) => wanted.length === 0 || wanted.some((w) => s === w || s.startsWith(`${w}-`)));
if (selected.length === 0) {
  console.error(`tests: no suite matches ${wanted.join(" ")}; suites: ${Object.keys(suites).join(", ")}`);
  process.exit(2);
}
ensureRuntimes();
if (selected.some((s) => s.startsWith("e2e") || s.startsWith("bench") || s === "browser")) ensureRedis();
if (selected.includes("browser")) ensureChromium();
mkdirSync(results, { recursive: true });

const totals = { passed: 0, failed: 0 };
const lines = [];
for (const name of selected) {
  console.log(`\n=== ${name}`);
  const r = suites[name]();
  totals.passed += r.passed;
  totals.failed += r.failed;
  lines.push(`${name.padEnd(11)} ${r.passed} passed, ${r.failed} failed`);
}
console.log(`\n${lines.join("\n")}`);
console.log(`${totals.passed} passed, ${totals.failed} failed`);
process.exit(totals.failed === 0 && totals.passed > 0 ? 0 : 1);
