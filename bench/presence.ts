/**
 * Presence at scale (extension E3): one subscription held by 10,000 sessions of 10,000 distinct users, and a client
 * asking `presence` on it. Shoal on Bun, pinned to CPU 0, with the memory broker and with Redis (redis-server, this
 * script, its clients and its ticket service on CPU 1). Not part of `bench/run.ts`' scenarios: run it alone.
 *
 *   taskset -c 1 bun run bench/presence.ts                          # 10,000 sessions, 200 queries, memory and redis
 *   taskset -c 1 bun run bench/presence.ts --sessions 1000 --queries 20   # quick
 *   taskset -c 1 bun run bench/presence.ts --update BENCHMARKS.md   # also write the "Presence" section there
 *   taskset -c 1 bun run bench/presence.ts --brokers redis --profile /tmp/prof   # a CPU profile of the server
 *
 * (`taskset -c 1` keeps this script, the clients, on the load CPU, as bench/run.ts does.)
 *
 * Latency is measured by the asking client: from sending `{"event":"presence",...}` to the whole reply frame
 * (every user's auth fields) having arrived, queries one after another. Server CPU per query is the server's
 * utime+stime over the queries divided by their number.
 */
import { spawnSync } from "node:child_process";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { parseArgs } from "node:util";
import { Child } from "./harness/child.ts";
import { freePort } from "./harness/free_port.ts";
import { cpuSeconds, rssBytes } from "./harness/proc_stats.ts";
import { RedisServer } from "./harness/redis_server.ts";
import { WsConnection } from "./load/ws_connection.ts";

const ROOT = join(import.meta.dirname ?? ".", "..");
const SUBSCRIPTION = "room.big";
const SECTION = "## Presence (E3): one subscription with 10,000 sessions";

const { values: args } = parseArgs({
  options: {
    sessions: { type: "string", default: "10000" },
    queries: { type: "string", default: "200" },
    brokers: { type: "string", default: "memory,redis" },
    update: { type: "string" },
    profile: { type: "string" },
  },
});
const SESSIONS = Number(args.sessions);
const QUERIES = Number(args.queries);
const BROKERS = args.brokers!.split(",") as ("memory" | "redis")[];

/** The ticket service: ticket `u<n>` is user n. */
async function ticketService(): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    let body = "";
    req.on("data", (chunk) => (body += chunk));
    req.on("end", () => {
      const ticket = String(JSON.parse(body).ticket);
      const id = Number(ticket.slice(1));
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ status: "ok", user_id: id, name: `user ${id}` }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/ticket` };
}

/** A client whose replies are awaited one at a time. */
class Client {
  #waiting: ((text: string) => void) | undefined;
  readonly #queue: string[] = [];
  private constructor(readonly connection: WsConnection) {}

  static async open(port: number): Promise<Client> {
    let client: Client | undefined;
    const connection = await WsConnection.open({
      host: "127.0.0.1",
      port,
      path: "/",
      timeoutMs: 30_000,
      handlers: {
        message: (payload) => client!.#received(payload.toString("utf8")),
        close: () => {},
      },
    });
    client = new Client(connection);
    return client;
  }

  #received(text: string): void {
    const waiting = this.#waiting;
    this.#waiting = undefined;
    if (waiting) waiting(text);
    else this.#queue.push(text);
  }

  /** Send and resolve with the next frame's text. */
  request(frame: unknown): Promise<string> {
    const reply = this.#queue.length > 0 ? Promise.resolve(this.#queue.shift()!) : new Promise<string>((resolve) => (this.#waiting = resolve));
    this.connection.send(JSON.stringify(frame));
    return reply;
  }
}

async function session(port: number, user: number): Promise<Client> {
  const client = await Client.open(port);
  const auth = JSON.parse(await client.request({ event: "auth", ticket: `u${user}` }));
  if (auth.status !== "ok") throw new Error(`auth: ${JSON.stringify(auth)}`);
  const ok = JSON.parse(await client.request({ event: "subscribe", subscription: SUBSCRIPTION }));
  if (ok.status !== "ok") throw new Error(`subscribe: ${JSON.stringify(ok)}`);
  return client;
}

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];

interface Result {
  readonly broker: string;
  readonly subscribeRate: number;
  readonly replyBytes: number;
  readonly count: number;
  readonly users: number;
  readonly p50: number;
  readonly p95: number;
  readonly p99: number;
  readonly max: number;
  readonly cpuPerQuery: number;
  readonly rss: number;
}

async function measure(broker: "memory" | "redis", redisUrl: string, ticketUrl: string, dir: string): Promise<Result> {
  const port = await freePort();
  const config = {
    ws: { host: "127.0.0.1", port, ping: { interval: 0 } },
    authentication: { ticket: { validationUrl: ticketUrl, authFields: ["user_id", "name"] } },
    services: { room: { presence: true } },
    broker: broker === "redis" ? { kind: "redis", url: redisUrl } : { kind: "memory" },
    limits: { maxCallbacksPerService: 256 },
    log: { level: "info", format: "json" },
  };
  const configPath = join(dir, `presence-${broker}.config.ts`);
  writeFileSync(configPath, `// Written by bench/presence.ts\nexport default ${JSON.stringify(config, null, 2)};\n`);
  // --profile DIR: a Markdown CPU profile of each server run (as bench/run.ts --profile).
  const profile = args.profile ? ["--cpu-prof-md", `--cpu-prof-dir=${args.profile}`, "--cpu-prof-interval=250"] : [];
  const command = [process.execPath, ...profile, "run", "main.ts", "-c", configPath];
  const server = new Child(`shoal-bun (${broker})`, command, { cwd: ROOT, cpu: 0 });
  const clients: Client[] = [];
  try {
    await server.waitFor((line) => (line as { message?: unknown } | null)?.message === "shoal ready", 30_000, "not ready");
    const started = performance.now();
    for (let next = 1; next <= SESSIONS;) {
      const batch: Promise<Client>[] = [];
      for (let i = 0; i < 200 && next <= SESSIONS; i++) batch.push(session(port, next++));
      clients.push(...await Promise.all(batch));
    }
    const subscribeRate = SESSIONS / ((performance.now() - started) / 1000);
    const asker = await session(port, 0);
    clients.push(asker);
    // Warm up (JIT, the script cache), then measure.
    for (let i = 0; i < 5; i++) await asker.request({ event: "presence", subscription: SUBSCRIPTION });
    const latencies: number[] = [];
    let reply = "";
    const cpuBefore = cpuSeconds(server.pid);
    for (let i = 0; i < QUERIES; i++) {
      const sent = performance.now();
      reply = await asker.request({ event: "presence", subscription: SUBSCRIPTION });
      latencies.push(performance.now() - sent);
    }
    const cpuPerQuery = (cpuSeconds(server.pid) - cpuBefore) / QUERIES;
    const parsed = JSON.parse(reply) as { status: string; data: { count: number; users: unknown[] } };
    if (parsed.status !== "ok" || parsed.data.count !== SESSIONS + 1 || parsed.data.users.length !== SESSIONS + 1) {
      throw new Error(`unexpected presence reply: ${reply.slice(0, 200)}`);
    }
    latencies.sort((a, b) => a - b);
    const rss = rssBytes(server.pid);
    return {
      broker,
      subscribeRate,
      replyBytes: Buffer.byteLength(reply),
      count: parsed.data.count,
      users: parsed.data.users.length,
      p50: percentile(latencies, 50),
      p95: percentile(latencies, 95),
      p99: percentile(latencies, 99),
      max: latencies[latencies.length - 1],
      cpuPerQuery,
      rss,
    };
  } finally {
    for (const client of clients) client.connection.destroy();
    const code = await server.stop("SIGTERM", 30_000);
    if (code !== 0) throw new Error(`shoal (${broker}) exited with ${code}`);
  }
}

function version(command: string[]): string {
  return spawnSync(command[0], command.slice(1), { encoding: "utf8" }).stdout.trim().split("\n")[0];
}

function report(results: readonly Result[], load: readonly number[]): string {
  const ms = (n: number) => `${n.toFixed(1)} ms`;
  const row = (label: string, cell: (r: Result) => string) => `| ${label} | ${results.map(cell).join(" | ")} |`;
  return [
    SECTION,
    "",
    `Measured by \`taskset -c 1 bun run bench/presence.ts${SESSIONS === 10_000 && QUERIES === 200 ? "" : ` --sessions ${SESSIONS} --queries ${QUERIES}`}\`, ` +
    `${new Date().toISOString()} (bun ${process.versions.bun}, ${version(["redis-server", "--version"]).replace(/^Redis server v=/, "redis-server ").split(" sha=")[0]}; ` +
    `load average ${load[0].toFixed(2)} at the start, ${loadavg()[0].toFixed(2)} at the end, above 2 means other processes shared the cores).`,
    "",
    `${SESSIONS.toLocaleString("en")} sessions of as many distinct users (ticket auth, auth fields \`user_id\` and \`name\`) ` +
    `subscribe to one subscription of a service with \`presence: true\`; one more session then sends ${QUERIES} ` +
    "`presence` events one after another. Latency runs from sending the event to the whole reply having arrived " +
    `(count ${(SESSIONS + 1).toLocaleString("en")} and every user's auth fields: the worst case, no two sessions share ` +
    "a user). Shoal on Bun alone on CPU 0; the clients, the ticket service and redis-server on CPU 1. " +
    "With Redis, each query is a Lua script that removes expired entries, then `HVALS` of the subscription's hash, " +
    "each distinct value parsed once; with the memory broker, the list of distinct users the process keeps.",
    "",
    `| | ${results.map((r) => `shoal-bun, ${r.broker} broker`).join(" | ")} |`,
    `|---|${results.map(() => "---").join("|")}|`,
    row("presence latency p50", (r) => ms(r.p50)),
    row("presence latency p95", (r) => ms(r.p95)),
    row("presence latency p99", (r) => ms(r.p99)),
    row("presence latency max", (r) => ms(r.max)),
    row("server CPU per query", (r) => ms(r.cpuPerQuery * 1000)),
    row("reply frame", (r) => `${(r.replyBytes / 1024).toFixed(0)} KiB (${r.users.toLocaleString("en")} users)`),
    row("auth + subscribe rate (sessions/s)", (r) => r.subscribeRate.toFixed(0)),
    row("server RSS with every session subscribed", (r) => `${(r.rss / 2 ** 20).toFixed(0)} MiB`),
    "",
    `Within the 100 ms the issue asks for: ${results.every((r) => r.max < 100) ? "yes" : "**no**"}, the slowest of ` +
    `${QUERIES} queries took ${results.map((r) => `${ms(r.max)} (${r.broker})`).join(" and ")}. ` +
    "Where the time goes (microbenchmarks of the same steps on this machine): with Redis, the purge script costs Redis " +
    "tens of microseconds and `HVALS` of 10,000 values about 3 ms (the same values returned through Lua cost it 8 to " +
    "12 ms, which is why the read is a script then a plain command), node-redis decodes them in 4 to 5 ms, and each " +
    "distinct value is parsed once (about 3 ms); with either broker the reply is joined from the stored JSON texts " +
    "rather than serialized again, and the memory broker keeps its distinct users up to date as entries come and go, " +
    "so a read walks no entry. A node also rewrites its entries every `refreshInterval` (10 s): 10,000 entries are " +
    "ten script calls of 1,000 (about 4 ms of Redis each).",
    "",
  ].join("\n");
}

/** Put the section into a report: replace one of the same heading, else append it. */
function update(path: string, section: string): void {
  const text = readFileSync(path, "utf8");
  const start = text.indexOf(SECTION);
  let next: string;
  if (start < 0) next = `${text.replace(/\n*$/, "\n")}\n${section}`;
  else {
    const end = text.indexOf("\n## ", start + SECTION.length);
    next = text.slice(0, start) + section + (end < 0 ? "" : text.slice(end + 1));
  }
  writeFileSync(path, next);
}

const load = loadavg();
const dir = mkdtempSync(join(tmpdir(), "shoal-presence-bench-"));
const redis = BROKERS.includes("redis") ? await RedisServer.start({ cwd: dir, cpu: 1 }) : undefined;
const tickets = await ticketService();
try {
  const results: Result[] = [];
  for (const broker of BROKERS) {
    const result = await measure(broker, redis?.url ?? "", tickets.url, dir);
    console.error(JSON.stringify(result));
    results.push(result);
  }
  const section = report(results, load);
  console.log(section);
  if (args.update) update(args.update, section);
} finally {
  tickets.server.close();
  await redis?.stop();
  rmSync(dir, { recursive: true, force: true });
}
