/**
 * The benchmark runner: `bun run bench/run.ts [--quick] [--scenarios S1,S2] [--peers bun-limit,shoal-bun] [--runs N]`.
 * Starts a private redis-server, then for each scenario, run and column starts the server pinned to CPU 0 and
 * the load on CPU 1, and writes the raw numbers to bench/results/<timestamp>.json and the tables to BENCHMARKS.md
 * (or to bench/results/<timestamp>.md for a quick or partial run; `--report PATH` chooses). Benchmarks assert
 * no timing: the exit code is 1 only if something broke (a server did not start or crashed, clients could not
 * subscribe, a worker failed).
 */
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import os from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { RedisServer } from "./harness/redis_server.ts";
import { targetNamed, TARGETS, type Tools } from "./harness/targets.ts";
import { type BenchResults, renderMarkdown, type RunRecord, updateMarkdown } from "./report.ts";
import type { RunContext, Scenario } from "./scenarios/scenario.ts";
import { s1Idle } from "./scenarios/s1_idle.ts";
import { s2HotTopic, s2HotTopicHistory } from "./scenarios/s2_hot_topic.ts";
import { s3Spread } from "./scenarios/s3_spread.ts";
import { s4Callbacks } from "./scenarios/s4_callbacks.ts";
import { s5Stalled } from "./scenarios/s5_stalled.ts";
import { s6Recovery } from "./scenarios/s6_recovery.ts";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const SCENARIOS: readonly Scenario[] = [
  s1Idle,
  s2HotTopic,
  s2HotTopicHistory,
  s3Spread,
  s4Callbacks,
  s5Stalled,
  s6Recovery,
];
const SERVER_CPU = 0;
const LOAD_CPU = 1;
const FINDINGS_START = "<!-- findings:start -->";
const FINDINGS_END = "<!-- findings:end -->";

const USAGE = `Usage: bun run bench/run.ts [options]
  --quick              small sizes and short windows, 1 run: every code path in well under a minute
  --scenarios LIST     comma-separated scenario ids (default: ${SCENARIOS.map((s) => s.id).join(",")})
  --peers LIST         comma-separated targets (default: ${TARGETS.map((t) => t.name).join(",")})
  --runs N             runs per cell (default 3, or 1 with --quick)
  --profile DIR        shoal-bun and shoal-deno write a CPU profile (Markdown, one per server run) into DIR
  --results DIR        where the raw JSON goes (default bench/results)
  --report PATH        where the Markdown tables go (default: BENCHMARKS.md for a full run of everything,
                       else bench/results/<timestamp>.md)
  --update PATH        put the sections of the scenarios run into the existing report PATH (e.g. BENCHMARKS.md),
                       replacing those of the same ids, each marked with this run's command and date; the rest stays
  -h, --help           this help`;

function parseCli() {
  try {
    const { values } = parseArgs({
      args: process.argv.slice(2),
      strict: true,
      options: {
        quick: { type: "boolean", default: false },
        scenarios: { type: "string" },
        peers: { type: "string" },
        runs: { type: "string" },
        report: { type: "string" },
        profile: { type: "string" },
        results: { type: "string" },
        update: { type: "string" },
        help: { type: "boolean", short: "h", default: false },
      },
    });
    if (values.help) {
      console.log(USAGE);
      process.exit(0);
    }
    const scenarios = values.scenarios
      ? values.scenarios.split(",").map((id) => {
        const scenario = SCENARIOS.find((s) => s.id.toLowerCase() === id.trim().toLowerCase());
        if (!scenario) throw new Error(`unknown scenario ${JSON.stringify(id)}`);
        return scenario;
      })
      : [...SCENARIOS];
    const targets = values.peers ? values.peers.split(",").map((name) => targetNamed(name.trim())) : [...TARGETS];
    const runs = values.runs ? Number(values.runs) : values.quick ? 1 : 3;
    if (!Number.isInteger(runs) || runs < 1) throw new Error("--runs must be a positive integer");
    const everything = !values.scenarios && !values.peers;
    if (values.update && values.report) throw new Error("--update and --report exclude each other");
    if (values.update && !existsSync(values.update)) throw new Error(`--update: no report at ${values.update}`);
    return {
      quick: values.quick,
      scenarios,
      targets,
      runs,
      report: values.report,
      update: values.update,
      profile: values.profile,
      results: values.results,
      everything,
    };
  } catch (error) {
    console.error(`bench: ${(error as Error).message}\n\n${USAGE}`);
    process.exit(2);
  }
}

function log(message: string): void {
  console.log(`[${new Date().toISOString().slice(11, 19)}] ${message}`);
}

function tools(profileDir?: string): Tools {
  const bin = join(ROOT, "node_modules", ".bin");
  const local = (name: string) => (existsSync(join(bin, name)) ? join(bin, name) : name);
  const binary = join(ROOT, "dist", "shoal");
  if (profileDir) mkdirSync(profileDir, { recursive: true });
  return { bun: local("bun"), deno: local("deno"), node: "node", binary, profileDir };
}

function version(command: string, args: string[]): string {
  const result = spawnSync(command, args, { encoding: "utf8" });
  return (result.stdout || result.stderr || "?").split("\n")[0].trim();
}

function machine(): Record<string, string | number> {
  const cpuinfo = readFileSync("/proc/cpuinfo", "utf8");
  const meminfo = readFileSync("/proc/meminfo", "utf8");
  const memKb = Number(/^MemTotal:\s+(\d+)/m.exec(meminfo)?.[1] ?? 0);
  return {
    nproc: os.availableParallelism?.() ?? os.cpus().length,
    cpuModel: /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1]?.trim() ?? "unknown",
    memory: `${(memKb / 1024 / 1024).toFixed(1)} GiB`,
    kernel: os.release(),
    serverCpu: SERVER_CPU,
    loadCpu: LOAD_CPU,
  };
}

/** The 1-minute load average (/proc/loadavg). */
function loadAverage(): number {
  return Number(readFileSync("/proc/loadavg", "utf8").split(" ")[0]);
}

/** Newest modification time under `path` (a file or a directory tree), ms. */
function newest(path: string): number {
  const stat = statSync(path);
  if (!stat.isDirectory()) return stat.mtimeMs;
  return readdirSync(path).reduce((m, name) => Math.max(m, newest(join(path, name))), stat.mtimeMs);
}

/** Build dist/shoal with `bun build --compile` unless it is newer than main.ts and src/. */
function ensureBinary(t: Tools): void {
  const sources = Math.max(newest(join(ROOT, "main.ts")), newest(join(ROOT, "src")));
  if (existsSync(t.binary) && statSync(t.binary).mtimeMs > sources) return;
  log("building dist/shoal (bun build --compile)");
  execFileSync(t.bun, ["build", "--compile", "main.ts", "--outfile", "dist/shoal"], { cwd: ROOT, stdio: "inherit" });
}

/** Pin this process (all its threads) to the load CPU: the publisher runs here. */
function pinSelf(): void {
  const result = spawnSync("taskset", ["-a", "-p", "-c", String(LOAD_CPU), String(process.pid)], { encoding: "utf8" });
  if (result.status !== 0) throw new Error(`taskset failed: ${result.stderr}`);
}

/** Keep the hand-written findings section of an existing report. */
function withFindings(markdown: string, path: string): string {
  if (!existsSync(path)) return markdown;
  const old = readFileSync(path, "utf8");
  const start = old.indexOf(FINDINGS_START);
  const end = old.indexOf(FINDINGS_END);
  if (start < 0 || end < start) return markdown;
  const findings = old.slice(start, end + FINDINGS_END.length);
  const firstSection = markdown.indexOf("\n## ");
  return `${markdown.slice(0, firstSection)}\n${findings}\n${markdown.slice(firstSection)}`;
}

async function main(): Promise<number> {
  const options = parseCli();
  if (os.availableParallelism?.() < 2) throw new Error("the benchmark needs 2 CPUs (server on one, load on the other)");
  pinSelf();
  const t = tools(options.profile);
  if (options.targets.some((target) => target.name === "shoal-binary")) ensureBinary(t);
  const stamp = new Date().toISOString().replace(/[:.]/g, "-").replace(/-\d{3}Z$/, "Z");
  const resultsDir = options.results ? resolve(options.results) : join(ROOT, "bench", "results");
  const jsonPath = join(resultsDir, `${stamp}.json`);
  const configDir = join(resultsDir, "tmp", stamp);
  mkdirSync(configDir, { recursive: true });
  const results: BenchResults = {
    startedAt: new Date().toISOString(),
    finishedAt: "",
    command: `bun run bench/run.ts${process.argv.length > 2 ? ` ${process.argv.slice(2).join(" ")}` : ""}`,
    rawFile: relative(ROOT, jsonPath),
    mode: options.quick ? "quick" : "full",
    runs: options.runs,
    machine: machine(),
    versions: {
      bun: version(t.bun, ["--version"]),
      deno: version(t.deno, ["--version"]).replace(/^deno /, "").replace(/ \(.*$/, ""),
      node: version(t.node, ["--version"]),
      "redis-server": /v=(\S+)/.exec(version("redis-server", ["--version"]))?.[1] ?? "?",
    },
    notes: [] as string[],
    scenarios: [],
    errors: [],
  };
  const loadStart = loadAverage();
  const redis = await RedisServer.start({ cwd: ROOT, cpu: LOAD_CPU });
  log(`redis-server on port ${redis.port}`);
  let current = "";
  const context: RunContext = {
    note(message) {
      results.notes.push(`${current}: ${message}`);
      log(`  note: ${message}`);
    },
    quick: options.quick,
    cwd: ROOT,
    tools: t,
    redisUrl: redis.url,
    configDir,
    serverCpu: SERVER_CPU,
    loadCpu: LOAD_CPU,
    log,
  };
  try {
    scenarios: for (const scenario of options.scenarios) {
      const columns = scenario.columns(options.targets);
      if (columns.length === 0) {
        log(`${scenario.id}: none of the selected peers takes part; skipped`);
        continue;
      }
      const result = {
        id: scenario.id,
        title: scenario.title,
        description: scenario.describe(options.quick),
        reference: scenario.reference,
        metrics: scenario.metrics(options.quick),
        columns,
        runs: Object.fromEntries(columns.map((c) => [c, [] as RunRecord[]])),
      };
      results.scenarios.push(result);
      for (let run = 1; run <= options.runs; run++) {
        for (const column of columns) {
          log(`${scenario.id} run ${run}/${options.runs}: ${column}`);
          current = `${scenario.id} ${column} run ${run}`;
          const started = performance.now();
          try {
            const outcome = await scenario.run(context, column);
            result.runs[column].push({ run, ...outcome });
            log(`  ${summary(outcome.measurement)} (${((performance.now() - started) / 1000).toFixed(1)} s)`);
          } catch (error) {
            const message = (error as Error).stack ?? String(error);
            result.runs[column].push({ run, error: (error as Error).message ?? String(error) });
            results.errors.push(`${scenario.id} ${column} run ${run}: ${(error as Error).message}`);
            log(`  FAILED: ${message}`);
          }
          if (!redis.running) {
            results.errors.push("redis-server exited: the run stops here");
            break scenarios;
          }
        }
      }
    }
  } finally {
    await redis.stop().catch(() => {});
    rmSync(configDir, { recursive: true, force: true });
  }
  results.finishedAt = new Date().toISOString();
  results.loadAverage = { start: loadStart, end: loadAverage() };
  writeFileSync(jsonPath, `${JSON.stringify(results, null, 2)}\n`);
  const reportPath = options.update ?? options.report ??
    (options.quick || !options.everything ? join(resultsDir, `${stamp}.md`) : join(ROOT, "BENCHMARKS.md"));
  const markdown = options.update
    ? updateMarkdown(readFileSync(options.update, "utf8"), results, SCENARIOS.map((s) => s.id))
    : withFindings(renderMarkdown(results), reportPath);
  writeFileSync(reportPath, markdown);
  log(`wrote ${relative(ROOT, jsonPath)} and ${relative(ROOT, reportPath)}`);
  if (results.errors.length > 0) {
    log(`${results.errors.length} failure(s):\n  ${results.errors.map((e) => e.split("\n")[0]).join("\n  ")}`);
    return 1;
  }
  return 0;
}

function summary(measurement: Record<string, unknown>): string {
  return Object.entries(measurement)
    .slice(0, 6)
    .map(([k, v]) => `${k}=${typeof v === "number" ? Number(v.toPrecision(4)) : v}`)
    .join(" ");
}

// Interrupted: exit through process.exit so that every child (servers, workers, redis) is killed on the way out.
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    console.error(`bench: ${signal}; stopping`);
    process.exit(130);
  });
}

main().then(
  (code) => process.exit(code),
  (error) => {
    console.error(`bench: ${(error as Error).stack ?? error}`);
    process.exit(1);
  },
);
