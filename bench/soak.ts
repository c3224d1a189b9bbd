/**
 * The churn soak: `bun run bench/soak.ts --target bun|deno|binary [--connections 10000] [--minutes 5]`.
 * Waves of connections are opened against one Shoal, each subscribes (to shared topics and to names of its own),
 * and then every socket of the wave is destroyed at once: no close frame, as when a network drops. Before the
 * waves and after them it reports the server's RSS (/proc/PID/status), the connection gauge and any session,
 * subscription or timer gauges /metrics exposes, and the channels of its private redis-server (PUBSUB CHANNELS).
 * Loopback only; the server runs alone on CPU 0, the load workers, redis and the publisher on CPU 1 (as
 * bench/run.ts). It stops by itself after `--minutes` or `--waves`; it exits 1 if a leak was left (connections,
 * channels, or RSS more than `--rss-tolerance` above the baseline) or something broke.
 *
 * `--worker --port P` is the load-generator mode this runner starts (one JSON command per stdin line).
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { createInterface } from "node:readline";
import { spawnSync } from "node:child_process";
import { parseArgs } from "node:util";
import { Child } from "./harness/child.ts";
import { freePort } from "./harness/free_port.ts";
import { rssBytes } from "./harness/proc_stats.ts";
import { RedisServer } from "./harness/redis_server.ts";
import { targetNamed, type Tools } from "./harness/targets.ts";
import { WsConnection } from "./load/ws_connection.ts";
import { respCommand } from "../tests/support/redis_server.ts";

const ROOT = join(import.meta.dirname ?? ".", "..");
const SERVER_CPU = 0;
const LOAD_CPU = 1;
/** Connections per worker process: well under the ~20,000 files a process may hold here. */
const PER_WORKER = 8000;

// ---------------------------------------------------------------------------------------------------------------
// Worker mode

type WorkerCommand =
  | {
    readonly cmd: "open";
    readonly wave: number;
    readonly from: number;
    readonly count: number;
    readonly subscriptions: number;
    readonly topics: number;
    /** Share of connections that also subscribe to a name of their own (a broker channel each). */
    readonly unique: number;
    /** Share of connections dropped right after sending their subscribes, before any answer. */
    readonly early: number;
    readonly concurrency: number;
    readonly timeoutMs: number;
  }
  | { readonly cmd: "drop" };

type WorkerReport =
  | { readonly type: "started" }
  | {
    readonly type: "opened";
    readonly ok: number;
    readonly early: number;
    readonly failed: number;
    readonly errors: string[];
    readonly ms: number;
  }
  | { readonly type: "dropped"; readonly count: number; readonly closedByServer: Record<string, number> }
  | { readonly type: "error"; readonly message: string };

async function worker(port: number): Promise<void> {
  const report = (r: WorkerReport) => process.stdout.write(`${JSON.stringify(r)}\n`);
  /** Subscribed connections of the current wave, each with the way to drop it (so its close is not the server's). */
  let held: (() => void)[] = [];
  /** Connections the server closed while held, by code: there should be none. */
  let closedByServer: Record<string, number> = {};
  const open = async (c: Extract<WorkerCommand, { cmd: "open" }>) => {
    const started = performance.now();
    let next = 0;
    let ok = 0;
    let early = 0;
    let failed = 0;
    const errors: string[] = [];
    const one = async (i: number) => {
      const names = Array.from({ length: c.subscriptions }, () => `soak.t${Math.floor(Math.random() * c.topics)}`);
      if (Math.random() < c.unique) names[names.length - 1] = `soak.u${c.wave}-${c.from + i}`;
      const wanted = new Set(names);
      const isEarly = Math.random() < c.early;
      let dropped = false;
      let answered = 0;
      let settle: ((error?: Error) => void) | undefined;
      const done = new Promise<void>((resolve, reject) => (settle = (error) => (error ? reject(error) : resolve())));
      const connection = await WsConnection.open({
        host: "127.0.0.1",
        port,
        path: "/",
        timeoutMs: c.timeoutMs,
        handlers: {
          message(payload) {
            const text = payload.toString("utf8");
            if (!text.includes('"event":"subscribe"')) return; // a delivery
            if (!text.includes('"status":"ok"')) return settle?.(new Error(`subscribe answered ${text.slice(0, 200)}`));
            if (++answered === wanted.size) settle?.();
          },
          close(code) {
            if (dropped) return;
            closedByServer[code] = (closedByServer[code] ?? 0) + 1;
            settle?.(new Error(`closed by the server with ${code}`));
          },
        },
      });
      for (const name of wanted) connection.send(JSON.stringify({ event: "subscribe", subscription: name }));
      if (isEarly) {
        dropped = true;
        connection.destroy();
        early++;
        return;
      }
      const timer = setTimeout(() => settle?.(new Error(`no subscribe answers within ${c.timeoutMs} ms`)), c.timeoutMs);
      try {
        await done;
        held.push(() => {
          dropped = true;
          connection.destroy();
        });
        ok++;
      } catch (error) {
        dropped = true;
        connection.destroy();
        throw error;
      } finally {
        clearTimeout(timer);
      }
    };
    const lane = async () => {
      while (next < c.count) {
        const i = next++;
        try {
          await one(i);
        } catch (error) {
          failed++;
          if (errors.length < 5) errors.push((error as Error).message);
        }
      }
    };
    await Promise.all(Array.from({ length: c.concurrency }, lane));
    report({ type: "opened", ok, early, failed, errors, ms: performance.now() - started });
  };
  const drop = () => {
    const drops = held;
    const closes = closedByServer;
    held = [];
    closedByServer = {};
    for (const dropOne of drops) dropOne();
    report({ type: "dropped", count: drops.length, closedByServer: closes });
  };
  const lines = createInterface({ input: process.stdin });
  lines.on("line", (line) => {
    if (line.trim() === "") return;
    const command = JSON.parse(line) as WorkerCommand;
    const run = command.cmd === "open" ? open(command) : Promise.resolve(drop());
    run.catch((error) => report({ type: "error", message: String(error) }));
  });
  lines.on("close", () => process.exit(0));
  report({ type: "started" });
}

// ---------------------------------------------------------------------------------------------------------------
// Runner

const USAGE = `Usage: bun run bench/soak.ts --target bun|deno|binary [options]
  --connections N     connections per wave, all open at once (default 10000; at most the fd limit less 1000)
  --minutes M         stop starting waves after M minutes (default 5)
  --waves N           and after N waves (default: no limit but the time)
  --subscriptions N   subscriptions per connection (default 2)
  --topics N          shared topics (default 1000)
  --unique F          share of connections whose last subscription is a name of its own (default 0.5)
  --early F           share of connections dropped before their subscribe answers (default 0.1)
  --publish-rate N    messages a second to shared topics while waves run (default 200; 0: none)
  --ping S            ws.ping.interval of the server (default 15: the keep-alive timers must go too)
  --settle S          at most this many seconds, after the last wave, for RSS to come back (default 30)
  --rss-tolerance P   allowed RSS growth over the baseline, percent (default 5)
  --binary PATH       the compiled server for --target binary (default: dist/shoal, built if missing)
  --json PATH         also write the results as JSON
  -h, --help          this help`;

function parseCli() {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    strict: true,
    options: {
      worker: { type: "boolean", default: false },
      port: { type: "string" },
      target: { type: "string" },
      connections: { type: "string", default: "10000" },
      minutes: { type: "string", default: "5" },
      waves: { type: "string" },
      subscriptions: { type: "string", default: "2" },
      topics: { type: "string", default: "1000" },
      unique: { type: "string", default: "0.5" },
      early: { type: "string", default: "0.1" },
      "publish-rate": { type: "string", default: "200" },
      ping: { type: "string", default: "15" },
      settle: { type: "string", default: "30" },
      "rss-tolerance": { type: "string", default: "5" },
      binary: { type: "string" },
      json: { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const num = (name: keyof typeof values, min = 0): number => {
    const n = Number(values[name]);
    if (!Number.isFinite(n) || n < min) {
      throw new Error(`--${name} must be a number ≥ ${min}, not ${JSON.stringify(values[name])}`);
    }
    return n;
  };
  if (values.worker) return { worker: true as const, port: num("port", 1) };
  if (!values.target || !["bun", "deno", "binary"].includes(values.target)) {
    throw new Error("--target must be bun, deno or binary");
  }
  return {
    worker: false as const,
    target: values.target as "bun" | "deno" | "binary",
    connections: Math.floor(num("connections", 1)),
    minutes: num("minutes"),
    waves: values.waves === undefined ? Infinity : Math.floor(num("waves", 1)),
    subscriptions: Math.floor(num("subscriptions", 1)),
    topics: Math.floor(num("topics", 1)),
    unique: num("unique"),
    early: num("early"),
    publishRate: num("publish-rate"),
    ping: num("ping"),
    settle: num("settle"),
    rssTolerance: num("rss-tolerance"),
    binary: values.binary,
    json: values.json,
  };
}

type Options = Exclude<ReturnType<typeof parseCli>, { worker: true }>;

function log(message: string): void {
  console.log(`[${new Date().toISOString().slice(11, 19)}] ${message}`);
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const mib = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MiB`;

/** Max open files of this process (inherited by the server). */
function fdLimit(): number {
  const line = readFileSync("/proc/self/limits", "utf8").split("\n").find((l) => l.startsWith("Max open files"));
  return Number(line?.split(/\s+/)[3] ?? 1024);
}

/** What the server's /metrics says about what it holds: the connection gauge and any gauge of sessions,
 * subscriptions, channels, timers or resources. */
async function gauges(port: number): Promise<Record<string, number>> {
  const response = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(10_000) });
  const out: Record<string, number> = {};
  for (const line of (await response.text()).split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const space = line.lastIndexOf(" ");
    const name = line.slice(0, space);
    if (
      /^shoal_(connection_count|sessions?|subscriptions?|channels?|\w*_count)\b|^nodejs_active_|^nodejs_heap_size_used_bytes$/
        .test(name)
    ) {
      out[name] = Number(line.slice(space + 1));
    }
  }
  return out;
}

async function channelCount(redisPort: number): Promise<number> {
  const reply = await respCommand(redisPort, ["PUBSUB", "CHANNELS"], 10_000);
  return Array.isArray(reply) ? reply.length : -1;
}

interface Snapshot {
  readonly at: string;
  /** VmRSS; for "after", the lowest seen while settling. */
  readonly rss: number;
  readonly gauges: Record<string, number>;
  readonly channels: number;
}

interface Wave {
  readonly wave: number;
  readonly opened: number;
  readonly early: number;
  readonly failed: number;
  readonly openMs: number;
  readonly connectionsAtPeak: number;
  readonly channelsAtPeak: number;
  readonly rssAtPeak: number;
  readonly teardownMs: number;
  readonly rssAfter: number;
  readonly closedByServer: Record<string, number>;
  readonly errors: string[];
}

async function snapshot(at: string, pid: number, port: number, redisPort: number): Promise<Snapshot> {
  return { at, rss: rssBytes(pid), gauges: await gauges(port), channels: await channelCount(redisPort) };
}

/** Wait until the server holds no connection and redis no channel; the milliseconds it took, or -1. */
async function drained(port: number, redisPort: number, timeoutMs: number): Promise<number> {
  const started = performance.now();
  while (performance.now() - started < timeoutMs) {
    const g = await gauges(port).catch(() => undefined);
    if (g && g.shoal_connection_count === 0 && (await channelCount(redisPort)) === 0) {
      return performance.now() - started;
    }
    await sleep(100);
  }
  return -1;
}

async function soak(options: Options): Promise<number> {
  const limit = fdLimit();
  const perWave = Math.min(options.connections, limit - 1000);
  if (perWave < options.connections) {
    log(`--connections ${options.connections} is more than the fd limit (${limit}) allows: ${perWave} per wave`);
  }
  const pin = spawnSync("taskset", ["-a", "-p", "-c", String(LOAD_CPU), String(process.pid)], { encoding: "utf8" });
  if (pin.status !== 0) log(`could not pin the runner to CPU ${LOAD_CPU}: ${pin.stderr.trim()}`);
  const bin = join(ROOT, "node_modules", ".bin");
  const tools: Tools = {
    bun: join(bin, "bun"),
    deno: join(bin, "deno"),
    node: "node",
    binary: options.binary ?? join(ROOT, "dist", "shoal"),
  };
  if (options.target === "binary" && !options.binary && stale(tools.binary)) {
    log("building dist/shoal (bun build --compile)");
    const built = spawnSync(tools.bun, ["build", "--compile", "main.ts", "--outfile", "dist/shoal"], {
      cwd: ROOT,
      stdio: "inherit",
    });
    if (built.status !== 0) throw new Error("bun build --compile failed");
  }
  const redis = await RedisServer.start({ cwd: ROOT, cpu: LOAD_CPU });
  const redisPort = redis.port;
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "shoal-soak-"));
  const configPath = join(dir, "soak.config.ts");
  const config = {
    ws: { host: "127.0.0.1", port, ping: { interval: options.ping } },
    services: { soak: { requireAuthentication: false } },
    broker: { kind: "redis", url: redis.url },
    metrics: { prometheus: {} },
    log: { level: "info", format: "json" },
  };
  writeFileSync(configPath, `// Written by bench/soak.ts\nexport default ${JSON.stringify(config, null, 2)};\n`);
  const target = targetNamed(`shoal-${options.target}`);
  const server = new Child(target.name, target.command(tools, configPath), { cwd: ROOT, cpu: SERVER_CPU });
  const workers: Child[] = [];
  const waves: Wave[] = [];
  let publisher: ReturnType<typeof setInterval> | undefined;
  let published = 0;
  let exitCode: number | null = null;
  const started = Date.now();
  try {
    await server.waitFor((l) => (l as { message?: unknown })?.message === "shoal ready", 30_000, "not ready");
    log(
      `${target.name} pid ${server.pid} on port ${port}; redis ${redisPort}; fd limit ${limit}; ${perWave} connections a wave`,
    );
    const fresh = await snapshot("fresh", server.pid, port, redisPort);
    const count = Math.max(1, Math.ceil(perWave / PER_WORKER));
    for (let i = 0; i < count; i++) {
      workers.push(
        new Child(`soak worker ${i + 1}`, [tools.bun, "run", "bench/soak.ts", "--worker", "--port", String(port)], {
          cwd: ROOT,
          cpu: LOAD_CPU,
          stdin: true,
        }),
      );
    }
    await Promise.all(
      workers.map((w) =>
        w.waitFor((l) => (l as { type?: unknown })?.type === "started", 15_000, "worker did not start")
      ),
    );
    if (options.publishRate > 0) {
      // A light stream of messages to the shared topics: deliveries to sockets that are about to go away.
      const { RespConnection } = await import("../tests/support/fuzz.ts");
      const resp = await RespConnection.open(redisPort);
      const perTick = Math.max(1, Math.round(options.publishRate / 20));
      publisher = setInterval(() => {
        for (let i = 0; i < perTick; i++) {
          const name = `soak.t${Math.floor(Math.random() * options.topics)}`;
          resp.command("PUBLISH", name, JSON.stringify({ subscription: name, data: { n: published++ } })).catch(
            () => {},
          );
        }
      }, 50);
    }

    const ask = async <T extends WorkerReport["type"]>(
      w: Child,
      command: WorkerCommand,
      type: T,
      timeoutMs: number,
    ) => {
      const answer = w.waitFor(
        (l) => ["error", type].includes((l as { type?: string })?.type ?? ""),
        timeoutMs,
        `no ${type}`,
      );
      w.write(JSON.stringify(command));
      const line = (await answer) as WorkerReport;
      if (line.type === "error") throw w.error(line.message);
      return line as Extract<WorkerReport, { type: T }>;
    };

    const runWave = async (wave: number, size: number): Promise<Wave> => {
      const waveStarted = performance.now();
      const opened = await Promise.all(workers.map((w, i) => {
        const from = Math.floor((i * size) / workers.length);
        const to = Math.floor(((i + 1) * size) / workers.length);
        const command: WorkerCommand = {
          cmd: "open",
          wave,
          from,
          count: to - from,
          subscriptions: options.subscriptions,
          topics: options.topics,
          unique: options.unique,
          early: options.early,
          concurrency: 100,
          timeoutMs: 30_000,
        };
        return ask(w, command, "opened", 300_000);
      }));
      const openMs = performance.now() - waveStarted;
      const peak = await snapshot(`wave ${wave} open`, server.pid, port, redisPort);
      const dropStarted = performance.now();
      const dropped = await Promise.all(workers.map((w) => ask(w, { cmd: "drop" }, "dropped", 60_000)));
      const teardown = await drained(port, redisPort, 120_000);
      const teardownMs = teardown < 0 ? -1 : performance.now() - dropStarted;
      const closedByServer: Record<string, number> = {};
      for (const d of dropped) {
        for (const [code, n] of Object.entries(d.closedByServer)) {
          closedByServer[code] = (closedByServer[code] ?? 0) + n;
        }
      }
      const result: Wave = {
        wave,
        opened: opened.reduce((n, o) => n + o.ok, 0),
        early: opened.reduce((n, o) => n + o.early, 0),
        failed: opened.reduce((n, o) => n + o.failed, 0),
        openMs,
        connectionsAtPeak: peak.gauges.shoal_connection_count ?? -1,
        channelsAtPeak: peak.channels,
        rssAtPeak: peak.rss,
        teardownMs,
        rssAfter: rssBytes(server.pid),
        closedByServer,
        errors: opened.flatMap((o) => o.errors).slice(0, 5),
      };
      log(
        `wave ${wave}: ${result.opened} subscribed + ${result.early} dropped early, ${result.failed} failed, in ${
          (openMs / 1000).toFixed(1)
        } s; ` +
          `peak ${result.connectionsAtPeak} connections, ${result.channelsAtPeak} channels, RSS ${
            mib(result.rssAtPeak)
          }; ` +
          `drained in ${teardownMs < 0 ? "NOT within 120 s" : `${(teardownMs / 1000).toFixed(1)} s`}, RSS ${
            mib(result.rssAfter)
          }` +
          (result.errors.length ? `; errors: ${result.errors.join(" | ")}` : ""),
      );
      return result;
    };

    // Warm-up: a first full wave allocates what any server keeps (code, pools, high-water marks); the baseline is
    // taken after it.
    const warm = await runWave(0, perWave);
    await sleep(2000);
    const baseline = await snapshot("baseline", server.pid, port, redisPort);
    log(
      `fresh RSS ${mib(fresh.rss)}; baseline (after a warm-up wave of ${warm.opened + warm.early}) RSS ${
        mib(baseline.rss)
      }`,
    );
    const deadline = started + options.minutes * 60_000;
    for (let wave = 1; wave <= options.waves && Date.now() < deadline; wave++) {
      waves.push(await runWave(wave, perWave));
      if (!server.running) throw server.error("the server exited during the soak");
    }
    clearInterval(publisher);
    publisher = undefined;
    // Settle: with nothing connected, watch RSS until it is back within the tolerance (the collector runs when
    // it likes) or the time is up.
    let settleMin = Infinity;
    const settleEnd = Date.now() + options.settle * 1000;
    while (Date.now() < settleEnd) {
      settleMin = Math.min(settleMin, rssBytes(server.pid));
      if (settleMin <= baseline.rss * (1 + options.rssTolerance / 100)) break;
      await sleep(500);
    }
    const measured = await snapshot("after", server.pid, port, redisPort);
    const after: Snapshot = { ...measured, rss: Math.min(measured.rss, settleMin) };
    const stopStarted = performance.now();
    exitCode = await server.stop("SIGTERM", 30_000).catch(() => null);
    const stopSeconds = (performance.now() - stopStarted) / 1000;

    const growth = (after.rss - baseline.rss) / baseline.rss * 100;
    const leaks: string[] = [];
    for (const [name, value] of Object.entries(after.gauges)) {
      if (/^shoal_/.test(name) && name !== "shoal_connection_total" && value !== 0) leaks.push(`${name} = ${value}`);
    }
    if (after.channels !== 0) leaks.push(`${after.channels} redis channels still subscribed`);
    if (growth > options.rssTolerance) {
      leaks.push(`RSS ${growth.toFixed(1)} % over the baseline (tolerance ${options.rssTolerance} %)`);
    }
    const failed = waves.reduce((n, w) => n + w.failed, 0);
    const undrained = waves.filter((w) => w.teardownMs < 0).length;
    const closedByServer = waves.reduce((n, w) => n + Object.values(w.closedByServer).reduce((a, b) => a + b, 0), 0);

    console.log(`\n## Churn soak: ${target.name}`);
    console.log(`command: bun run bench/soak.ts ${process.argv.slice(2).join(" ")}`);
    console.log(
      `${waves.length} waves of ${perWave} connections (${options.subscriptions} subscriptions each, ${
        options.unique * 100
      } % with a channel of their own, ${options.early * 100} % dropped before the answers) in ${
        ((Date.now() - started) / 1000).toFixed(0)
      } s; ${published} messages published meanwhile`,
    );
    console.log(
      `connections subscribed: ${waves.reduce((n, w) => n + w.opened, 0)}, dropped early: ${
        waves.reduce((n, w) => n + w.early, 0)
      }, failed: ${failed}, closed by the server while held: ${closedByServer}`,
    );
    console.log(
      `peak per wave: ${Math.max(...waves.map((w) => w.connectionsAtPeak))} connections, ${
        Math.max(...waves.map((w) => w.channelsAtPeak))
      } redis channels, RSS ${mib(Math.max(...waves.map((w) => w.rssAtPeak)))}`,
    );
    console.log(
      `drain after a drop (gauge and channels at 0): median ${
        median(waves.map((w) => w.teardownMs)).toFixed(0)
      } ms, max ${Math.max(...waves.map((w) => w.teardownMs)).toFixed(0)} ms${
        undrained ? `; ${undrained} wave(s) did not drain` : ""
      }`,
    );
    console.log("");
    console.log("| | RSS | connections | redis channels | other gauges |");
    console.log("|---|---|---|---|---|");
    for (const s of [fresh, baseline, after]) {
      const other = Object.entries(s.gauges).filter(([k]) => k !== "shoal_connection_count").map(([k, v]) =>
        `${k}=${v}`
      ).join(", ");
      console.log(`| ${s.at} | ${mib(s.rss)} | ${s.gauges.shoal_connection_count ?? "?"} | ${s.channels} | ${other} |`);
    }
    const heap = (s: Snapshot) => s.gauges.nodejs_heap_size_used_bytes;
    const heapGrowth = (heap(after) - heap(baseline)) / heap(baseline) * 100;
    console.log(
      `\nRSS after vs baseline: ${growth >= 0 ? "+" : ""}${growth.toFixed(1)} % (lowest while settling: ${
        mib(settleMin)
      }); ` +
        `JS heap used: ${mib(heap(baseline))} → ${mib(heap(after))} (${heapGrowth >= 0 ? "+" : ""}${
          heapGrowth.toFixed(1)
        } %); SIGTERM: exit ${exitCode} in ${stopSeconds.toFixed(1)} s`,
    );
    console.log(
      leaks.length === 0 && failed === 0 && undrained === 0 && exitCode === 0 ? "verdict: no leak" : `verdict: ${
        [
          ...leaks,
          failed ? `${failed} connections failed` : "",
          undrained ? `${undrained} waves did not drain` : "",
          exitCode !== 0 ? `exit code ${exitCode}` : "",
        ].filter(Boolean).join("; ")
      }`,
    );
    if (options.json) {
      writeFileSync(
        options.json,
        `${
          JSON.stringify(
            {
              options,
              perWave,
              fresh,
              baseline,
              after,
              settleMin,
              growth,
              waves,
              published,
              exitCode,
              stopSeconds,
              leaks,
            },
            null,
            2,
          )
        }\n`,
      );
    }
    return leaks.length === 0 && failed === 0 && undrained === 0 && exitCode === 0 ? 0 : 1;
  } finally {
    clearInterval(publisher);
    await Promise.all(workers.map((w) => w.stop("SIGKILL", 5000).catch(() => {})));
    if (server.running) await server.stop("SIGKILL", 5000).catch(() => {});
    await redis.stop().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Whether the compiled server is missing or older than main.ts or anything in src/. */
function stale(binary: string): boolean {
  if (!existsSync(binary)) return true;
  const newest = (path: string): number => {
    const stat = statSync(path);
    if (!stat.isDirectory()) return stat.mtimeMs;
    return readdirSync(path).reduce((m, name) => Math.max(m, newest(join(path, name))), stat.mtimeMs);
  };
  return statSync(binary).mtimeMs < Math.max(newest(join(ROOT, "main.ts")), newest(join(ROOT, "src")));
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.length === 0 ? NaN : sorted[Math.floor(sorted.length / 2)];
}

const cli = (() => {
  try {
    return parseCli();
  } catch (error) {
    console.error(`soak: ${(error as Error).message}\n\n${USAGE}`);
    process.exit(2);
  }
})();

if (cli.worker) {
  void worker(cli.port);
} else {
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.on(signal, () => {
      console.error(`soak: ${signal}; stopping`);
      process.exit(130);
    });
  }
  soak(cli).then(
    (code) => process.exit(code),
    (error) => {
      console.error(`soak: ${(error as Error).stack ?? error}`);
      process.exit(1);
    },
  );
}
