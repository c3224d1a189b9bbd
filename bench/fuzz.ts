/**
 * The long fuzz run: `bun run bench/fuzz.ts [--targets bun,deno,binary] [--minutes 3] [--seed N]`. For each target
 * it starts Shoal on the fuzz config (tests/support/fuzz.ts: a private redis-server, a scripted HTTP service),
 * then runs rounds until its time is up, one seed per round: random and hostile client frames on several
 * connections at once, hostile publications through `POST /publish` and Redis `PUBLISH`, and (every fifth round)
 * the frames that must close a connection. After each round every client has gone, and the connection gauge and
 * Redis' channels must be back to zero. A server that dies is restarted and counted. Prints the counts and each
 * distinct violation once, with the seed that replays it; exits 1 if anything broke.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { parseArgs } from "node:util";
import {
  clip,
  FuzzStats,
  fuzzWorld,
  leakCheck,
  livenessProblem,
  Rng,
  runClosingFrames,
  runFrameFuzz,
  runPublishFuzz,
  scriptServices,
  serverErrors,
  type Violation,
} from "../tests/support/fuzz.ts";
import { RedisServer } from "../tests/support/redis_server.ts";
import { REPO_ROOT, ShoalProcess, type ShoalTarget } from "../tests/support/shoal_process.ts";
import { TestService } from "../tests/support/test_service.ts";

const USAGE = `Usage: bun run bench/fuzz.ts [options]
  --targets LIST     comma-separated: bun, deno, binary (default: bun,deno)
  --minutes M        time per target (default 3)
  --seed N           first seed (default: random); round i uses seed N+i
  --connections N    client connections per round (default 8)
  --frames N         frames per connection per round (default 150)
  --clients N        subscribers in the publish part of a round (default 4)
  --batches N        publish batches per round (default 15)
  --slow             service answers slower than the HTTP timeout, too (each costs its connection ~0.6 s)
  --binary PATH      the compiled server for the binary target (default: env SHOAL_BINARY, else built into a
                     temporary directory with bun build --compile)
  --json PATH        also write the results as JSON
  -h, --help         this help`;

interface TargetResult {
  target: ShoalTarget;
  rounds: number;
  seeds: string;
  seconds: number;
  crashes: string[];
  leaks: string[];
  serverErrors: string[];
  stats: FuzzStats;
  /** Distinct violations: signature → the first one seen and how often. */
  violations: Map<string, { first: Violation; seed: number; count: number }>;
}

function parseCli() {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    strict: true,
    options: {
      targets: { type: "string", default: "bun,deno" },
      minutes: { type: "string", default: "3" },
      seed: { type: "string" },
      connections: { type: "string", default: "8" },
      frames: { type: "string", default: "150" },
      clients: { type: "string", default: "4" },
      batches: { type: "string", default: "15" },
      slow: { type: "boolean", default: false },
      binary: { type: "string" },
      json: { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const number = (name: string, value: string) => {
    const n = Number(value);
    if (!Number.isFinite(n) || n <= 0) {
      throw new Error(`--${name} must be a positive number, not ${JSON.stringify(value)}`);
    }
    return n;
  };
  const targets = values.targets.split(",").map((t) => t.trim()) as ShoalTarget[];
  for (const t of targets) {
    if (!["bun", "deno", "binary"].includes(t)) throw new Error(`unknown target ${JSON.stringify(t)}`);
  }
  return {
    targets,
    minutes: number("minutes", values.minutes),
    seed: values.seed === undefined ? (Math.random() * 0x100000000) >>> 0 : Number(values.seed) >>> 0,
    connections: Math.floor(number("connections", values.connections)),
    frames: Math.floor(number("frames", values.frames)),
    clients: Math.floor(number("clients", values.clients)),
    batches: Math.floor(number("batches", values.batches)),
    slow: values.slow,
    binary: values.binary ?? process.env.SHOAL_BINARY,
    json: values.json,
  };
}

function log(message: string): void {
  console.log(`[${new Date().toISOString().slice(11, 19)}] ${message}`);
}

/** A violation's kind without its particulars (names, values, numbers), to count each kind once. */
function signature(v: Violation): string {
  return v.problem.replace(/"(?:[^"\\]|\\.)*"/g, '"…"').replace(/\[[^\]]*\]/g, "[…]").replace(/\d+/g, "N").slice(
    0,
    160,
  );
}

async function fuzzTarget(
  target: ShoalTarget,
  options: ReturnType<typeof parseCli>,
  redis: RedisServer,
  service: TestService,
  env: Record<string, string>,
): Promise<TargetResult> {
  const world = fuzzWorld({ service, redisUrl: redis.url, target });
  const result: TargetResult = {
    target,
    rounds: 0,
    seeds: "",
    seconds: 0,
    crashes: [],
    leaks: [],
    serverErrors: [],
    stats: new FuzzStats(),
    violations: new Map(),
  };
  const started = Date.now();
  const deadline = started + options.minutes * 60_000;
  let shoal = await ShoalProcess.start(world.config, { target, env });
  let logged = 0;
  try {
    for (let round = 0; Date.now() < deadline; round++) {
      const seed = (options.seed + round) >>> 0;
      const label = `${target} seed ${seed}`;
      const rng = new Rng(seed);
      scriptServices(service, rng.fork("services"), { slowAnswers: options.slow });
      const violations: Violation[] = [];
      const frames = await runFrameFuzz({
        shoal,
        world,
        rng,
        connections: options.connections,
        framesPerConnection: options.frames,
        label,
        stats: result.stats,
      });
      violations.push(...frames.violations);
      const published = await runPublishFuzz({
        shoal,
        world,
        redisPort: redis.port,
        rng,
        clients: options.clients,
        batches: options.batches,
        label,
        stats: result.stats,
      });
      violations.push(...published.violations);
      if (round % 5 === 0) {
        violations.push(...(await runClosingFrames({ shoal, world, rng, label, stats: result.stats })).violations);
      }
      for (const v of violations) {
        const key = signature(v);
        const seen = result.violations.get(key);
        if (seen) seen.count++;
        else result.violations.set(key, { first: v, seed, count: 1 });
      }
      const leaks = await leakCheck(shoal, redis.port);
      for (const leak of leaks) result.leaks.push(`${label}: ${leak}`);
      const errors = serverErrors(shoal, logged);
      logged = shoal.logs.length;
      result.serverErrors.push(...errors.map((e) => `${label}: ${e}`));
      const alive = await livenessProblem(shoal);
      result.rounds = round + 1;
      result.seeds = `${options.seed}…${seed}`;
      log(
        `${label}: ${violations.length} violation(s), ${leaks.length} leak(s), ${errors.length} error line(s)${
          alive ? `; DOWN: ${clip(alive, 300)}` : ""
        }`,
      );
      if (alive) {
        result.crashes.push(`${label}: ${clip(alive, 3000)}`);
        await shoal.kill();
        shoal = await ShoalProcess.start(world.config, { target, env });
        logged = 0;
      }
    }
  } finally {
    await shoal.stop().catch(() => shoal.kill());
  }
  result.seconds = (Date.now() - started) / 1000;
  return result;
}

function printResult(r: TargetResult): void {
  const s = r.stats;
  console.log(`\n## ${r.target}: ${r.rounds} rounds (seeds ${r.seeds}) in ${r.seconds.toFixed(0)} s`);
  console.log(`frames sent: ${s.total("frames.")} (${s.summary("frames.")})`);
  console.log(`as the oracle reads them: ${s.summary("envelopes.")}`);
  console.log(`answers: ${s.summary("replies.")}`);
  console.log(`closing frames: ${s.summary("closes.") || "none"}`);
  console.log(`publications: ${s.total("publish.http ") + s.total("publish.redis ")} (${s.summary("publish.")})`);
  console.log(`deliveries checked: ${s.get("deliveries")}`);
  console.log(`crashes: ${r.crashes.length}; leaks: ${r.leaks.length}; server error lines: ${r.serverErrors.length}`);
  console.log(
    `distinct violations: ${r.violations.size} (${[...r.violations.values()].reduce((n, v) => n + v.count, 0)} in all)`,
  );
  for (const { first, seed, count } of r.violations.values()) {
    console.log(`- ×${count}: ${first.where}: ${clip(first.problem, 600)}`);
    if (first.frame) console.log(`    frame: ${first.frame}`);
    console.log(`    replay: SHOAL_FUZZ_SEED=${seed}`);
  }
  for (const line of [...r.crashes, ...r.leaks.slice(0, 10), ...r.serverErrors.slice(0, 10)]) console.log(`- ${line}`);
}

async function main(): Promise<number> {
  const options = parseCli();
  log(`fuzz: targets ${options.targets.join(",")}, ${options.minutes} min each, first seed ${options.seed}`);
  const env: Record<string, string> = {};
  let built: string | undefined;
  if (options.targets.includes("binary")) {
    if (!options.binary) {
      built = mkdtempSync(join(tmpdir(), "shoal-fuzz-"));
      options.binary = join(built, "shoal");
      log(`building ${options.binary} (bun build --compile)`);
      execFileSync(join(REPO_ROOT, "node_modules", ".bin", "bun"), [
        "build",
        "--compile",
        "main.ts",
        "--outfile",
        options.binary,
      ], {
        cwd: REPO_ROOT,
        stdio: "inherit",
      });
    }
    env.SHOAL_BINARY = options.binary;
    process.env.SHOAL_BINARY = options.binary;
  }
  const redis = await RedisServer.start();
  const service = await TestService.start();
  const results: TargetResult[] = [];
  try {
    for (const target of options.targets) results.push(await fuzzTarget(target, options, redis, service, env));
  } finally {
    await service.close();
    await redis.close();
    if (built) rmSync(built, { recursive: true, force: true });
  }
  for (const r of results) printResult(r);
  if (options.json) {
    const plain = results.map((r) => ({
      ...r,
      stats: Object.fromEntries(r.stats.counts),
      violations: [...r.violations.values()].map(({ first, seed, count }) => ({ ...first, seed, count })),
    }));
    writeFileSync(options.json, `${JSON.stringify({ options, results: plain }, null, 2)}\n`);
  }
  const broken = results.some((r) =>
    r.violations.size > 0 || r.crashes.length > 0 || r.leaks.length > 0 || r.serverErrors.length > 0
  );
  return broken ? 1 : 0;
}

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    console.error(`fuzz: ${signal}; stopping`);
    process.exit(130);
  });
}

main().then(
  (code) => process.exit(code),
  (error) => {
    console.error(`fuzz: ${(error as Error).stack ?? error}`);
    process.exit(1);
  },
);
