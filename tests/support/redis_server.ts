import { type ChildProcess, spawn } from "node:child_process";
import { accessSync, constants, mkdtempSync, rmSync } from "node:fs";
import { createConnection, createServer } from "node:net";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import process from "node:process";

/** A RESP2 reply as `command()` returns it: simple and bulk strings, integers, nil and arrays. */
export type RespValue = string | number | null | readonly RespValue[];

export interface RedisServerOptions {
  /** Listen on this port; default a free one (another is tried if Redis cannot bind it). */
  readonly port?: number;
  /** More `redis-server` arguments, after the defaults, e.g. `["--requirepass", "secret"]`. */
  readonly args?: readonly string[];
  /** Working directory (`--dir`), kept on close; default a fresh temporary directory, removed on close. */
  readonly dir?: string;
  /** Milliseconds to wait for the server to answer PING. */
  readonly startupTimeoutMs?: number;
}

export interface RedisClusterOptions {
  /** Milliseconds to wait for `cluster_state:ok` on every node. */
  readonly timeoutMs?: number;
}

const INSTALL_HINT =
  "redis-server not found: install it with `sudo apt-get install -y redis-server` (the test command `npm test` does this itself)";

/** Redis Cluster's slot count; a key's slot is CRC16(key or its {hash tag}) modulo this. */
const CLUSTER_SLOTS = 16384;

/** The cluster bus listens on the client port + 10000, so a cluster node's port must leave room for it. */
const CLUSTER_BUS_OFFSET = 10000;

/**
 * Every redis-server still running and every temporary directory, killed and removed when the test process exits
 * so none outlives a crashed test run. By pid: see `signal()`.
 */
const livePids = new Set<number>();
const liveDirs = new Set<string>();
process.on("exit", () => {
  for (const pid of livePids) signal(pid, "SIGKILL");
  for (const dir of liveDirs) rmSync(dir, { recursive: true, force: true });
});

type Exit = { readonly code: number | null; readonly signal: string | null };

/** One run of the redis-server process; `restart()` makes a new one on the same port. */
interface Run {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly exited: Promise<Exit>;
  /** The last lines redis-server wrote (its log goes to stdout), for error messages. */
  readonly output: string[];
}

/** redis-server exited at start-up because its port (or cluster bus port) was taken: try another. */
class PortTakenError extends Error {}

/** An error reply (`-ERR ...`), as opposed to a failed connection. */
class ErrorReply extends Error {}

/**
 * A private `redis-server` on 127.0.0.1 for one test, never the machine's default Redis: no persistence, its own
 * port and working directory. `stop()` kills it (SIGKILL, an outage), `restart()` brings it back on the same port
 * with the same arguments, `close()` (or `await using`) kills it for good.
 */
export class RedisServer {
  readonly #port: number;
  readonly #args: readonly string[];
  readonly #dir: string;
  readonly #ownsDir: boolean;
  readonly #startupTimeoutMs: number;
  #run: Run | undefined;
  #closed = false;

  private constructor(
    port: number,
    options: { args: readonly string[]; dir: string; ownsDir: boolean; startupTimeoutMs: number },
  ) {
    this.#port = port;
    this.#args = options.args;
    this.#dir = options.dir;
    this.#ownsDir = options.ownsDir;
    this.#startupTimeoutMs = options.startupTimeoutMs;
  }

  /**
   * Start redis-server and resolve once it answers PING. Throws with install instructions when redis-server is
   * missing, and with its output when it does not start.
   */
  static async start(options: RedisServerOptions = {}): Promise<RedisServer> {
    executable("redis-server");
    const ownsDir = options.dir === undefined;
    const dir = options.dir ?? mkdtempSync(join(tmpdir(), "shoal-redis-"));
    if (ownsDir) liveDirs.add(dir);
    const settings = { args: options.args ?? [], dir, ownsDir, startupTimeoutMs: options.startupTimeoutMs ?? 10_000 };
    for (let attempt = 1;; attempt++) {
      const server = new RedisServer(options.port ?? await freePort(), settings);
      try {
        await server.#launch();
        return server;
      } catch (error) {
        await server.stop();
        // Another process took the port between freePort() and redis-server's bind: pick another.
        if (error instanceof PortTakenError && options.port === undefined && attempt < 5) continue;
        if (ownsDir) removeDir(dir);
        throw error;
      }
    }
  }

  get port(): number {
    return this.#port;
  }

  /** `redis://127.0.0.1:PORT` */
  get url(): string {
    return `redis://127.0.0.1:${this.#port}`;
  }

  /** Whether the process is running: false after `stop()` (until `restart()`) or when it exited by itself. */
  get running(): boolean {
    return this.#run !== undefined && livePids.has(this.#run.pid);
  }

  /** The working directory (`--dir`), where a cluster node keeps its nodes.conf. */
  get dir(): string {
    return this.#dir;
  }

  /** Kill the server at once (SIGKILL, as in an outage) and wait until it has exited. Safe to call when stopped. */
  async stop(): Promise<void> {
    const run = this.#run;
    if (!run) return;
    this.#run = undefined;
    signal(run.pid, "SIGKILL");
    await run.exited;
  }

  /** Stop the server if it is running, then start it again on the same port and arguments; resolves on PING. */
  async restart(): Promise<void> {
    if (this.#closed) throw new Error(`redis-server ${this.#port} is closed`);
    await this.stop();
    // Redis binds with SO_REUSEADDR, so the port is free again as soon as the old process is gone, unless
    // another process took it meanwhile: retry for a while rather than fail at once.
    for (let attempt = 1;; attempt++) {
      try {
        return await this.#launch();
      } catch (error) {
        await this.stop();
        if (!(error instanceof PortTakenError) || attempt >= 20) throw error;
        await delay(100);
      }
    }
  }

  /**
   * Run `redis-cli -h 127.0.0.1 -p PORT ...args` and resolve with its output without trailing newlines. Rejects
   * when redis-cli fails (exit code not 0, e.g. the server is down). An error reply is output, not a failure:
   * redis-cli prints it (`ERR ...`) and exits 0.
   */
  cli(...args: string[]): Promise<string> {
    return runCli(["-h", "127.0.0.1", "-p", String(this.#port), ...args]);
  }

  /** Send one command over a fresh connection and resolve with the parsed reply; rejects on an error reply. */
  command(...args: string[]): Promise<RespValue> {
    return respCommand(this.#port, args);
  }

  /** Kill the server for good and remove its temporary directory. Safe to call more than once. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.stop();
    if (this.#ownsDir) removeDir(this.#dir);
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async #launch(): Promise<void> {
    const args = [
      "--port",
      String(this.#port),
      "--bind",
      "127.0.0.1",
      "--save",
      "",
      "--appendonly",
      "no",
      "--dir",
      this.#dir,
      ...this.#args,
    ];
    const child = spawn(executable("redis-server"), args, { cwd: this.#dir, stdio: ["ignore", "pipe", "pipe"] });
    const output: string[] = [];
    const exited = new Promise<Exit>((resolve) => {
      child.once("exit", (code, signal) => resolve({ code, signal }));
      child.once("error", (error) => resolve({ code: null, signal: `spawn error: ${error.message}` }));
    });
    if (child.pid === undefined) {
      const exit = await exited;
      throw new Error(`redis-server did not start: ${exit.signal}`);
    }
    const run: Run = { child, pid: child.pid, exited, output };
    livePids.add(run.pid);
    void exited.then(() => livePids.delete(run.pid));
    this.#run = run;

    // Settles when redis-server logged that it accepts connections, or exited, or the time is up.
    let timer: ReturnType<typeof setTimeout> | undefined;
    const outcome = await new Promise<"ready" | "exited" | "timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), this.#startupTimeoutMs);
      let tail = ""; // a chunk may end inside the line looked for
      const onData = (chunk: string) => {
        output.push(...chunk.split("\n").filter((line) => line !== ""));
        output.splice(0, Math.max(0, output.length - 50));
        tail = (tail + chunk).slice(-200);
        if (/Ready to accept connections/.test(tail)) resolve("ready");
      };
      for (const stream of [child.stdout!, child.stderr!]) {
        stream.setEncoding("utf8");
        stream.on("data", onData);
      }
      void exited.then(() => resolve("exited"));
    });
    clearTimeout(timer);
    const describe = () => `redis-server ${args.join(" ")}:\n${output.join("\n")}`;
    if (outcome === "exited") {
      const exit = await exited;
      const message = `redis-server exited at start-up (code ${exit.code}, signal ${exit.signal}): ${describe()}`;
      if (/Address already in use/i.test(output.join("\n"))) throw new PortTakenError(message);
      throw new Error(message);
    }
    if (outcome === "timeout") {
      throw new Error(`redis-server not ready within ${this.#startupTimeoutMs} ms: ${describe()}`);
    }
    // The log line comes right before the event loop starts; an answer to PING (NOAUTH with --requirepass) proves
    // it serves.
    const reply = await respCommand(this.#port, ["PING"]).catch((error: Error) => error);
    if (reply !== "PONG" && !(reply instanceof ErrorReply && reply.message.startsWith("NOAUTH"))) {
      throw new Error(`redis-server did not answer PING (${String(reply)}): ${describe()}`);
    }
  }
}

/**
 * A Redis Cluster of private redis-server masters (no replicas) in one temporary directory, created with
 * `redis-cli --cluster create`. A node's `stop()` and `restart()` keep its nodes.conf, so it rejoins the cluster
 * with its slots; `waitUntilOk()` waits for that. `close()` (or `await using`) kills every node and removes the
 * directory.
 */
export class RedisCluster {
  readonly nodes: readonly RedisServer[];
  readonly #dir: string;

  private constructor(nodes: readonly RedisServer[], dir: string) {
    this.nodes = nodes;
    this.#dir = dir;
  }

  /** Start `nodes` (at least 3) masters, assign every slot and resolve once each reports `cluster_state:ok`. */
  static async start(nodes = 3, options: RedisClusterOptions = {}): Promise<RedisCluster> {
    if (!Number.isInteger(nodes) || nodes < 3) {
      throw new RangeError(`a Redis Cluster needs at least 3 masters, not ${nodes}`);
    }
    executable("redis-server");
    executable("redis-cli");
    const dir = mkdtempSync(join(tmpdir(), "shoal-redis-cluster-"));
    liveDirs.add(dir);
    const servers: RedisServer[] = [];
    const cluster = new RedisCluster(servers, dir);
    try {
      while (servers.length < nodes) servers.push(await startClusterNode(dir));
      const addresses = servers.map((s) => `127.0.0.1:${s.port}`);
      await runCli(["--cluster", "create", ...addresses, "--cluster-replicas", "0", "--cluster-yes"], 30_000);
      await cluster.waitUntilOk(options.timeoutMs ?? 15_000);
      return cluster;
    } catch (error) {
      await cluster.close();
      throw error;
    }
  }

  /** `redis://127.0.0.1:PORT` of every node. */
  get urls(): string[] {
    return this.nodes.map((node) => node.url);
  }

  /** Resolve once every node answers CLUSTER INFO with `cluster_state:ok`; reject after `timeoutMs` naming the states. */
  async waitUntilOk(timeoutMs = 15_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let states: string[] = [];
    while (Date.now() < deadline) {
      states = await Promise.all(this.nodes.map((node) => clusterState(node.port)));
      if (states.every((state) => state === "ok")) return;
      await delay(50);
    }
    const seen = this.nodes.map((node, i) => `${node.port}: ${states[i]}`).join(", ");
    throw new Error(`redis cluster not ok within ${timeoutMs} ms (${seen})`);
  }

  /** The port of the master that owns `key`'s slot, as CLUSTER SLOTS on a running node reports it. */
  async slotOwner(key: string): Promise<number> {
    return ownerOf(await this.#slotRanges(), keySlot(key));
  }

  /**
   * `count` channel names (`${prefix}0`, `${prefix}1`, ...) whose slots are owned by `count` different masters,
   * for sharded pub/sub (SSUBSCRIBE/SPUBLISH route a channel by its slot, like a key).
   */
  async channelsOnDistinctShards(count: number = this.nodes.length, prefix = "shoal-test-"): Promise<string[]> {
    if (count > this.nodes.length) throw new RangeError(`only ${this.nodes.length} shards, not ${count}`);
    const ranges = await this.#slotRanges();
    const byOwner = new Map<number, string>();
    for (let i = 0; byOwner.size < count; i++) {
      if (i > 100_000) throw new Error(`no ${count} channels on distinct shards among ${prefix}0..${i}`);
      const channel = `${prefix}${i}`;
      const owner = ownerOf(ranges, keySlot(channel));
      if (!byOwner.has(owner)) byOwner.set(owner, channel);
    }
    return [...byOwner.values()];
  }

  /** Kill every node and remove the cluster's directory. Safe to call more than once. */
  async close(): Promise<void> {
    await Promise.all(this.nodes.map((node) => node.close()));
    removeDir(this.#dir);
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async #slotRanges(): Promise<SlotRange[]> {
    const errors: string[] = [];
    for (const node of this.nodes.filter((n) => n.running)) {
      try {
        return parseSlots(await respCommand(node.port, ["CLUSTER", "SLOTS"]));
      } catch (error) {
        errors.push(`${node.port}: ${(error as Error).message}`);
      }
    }
    throw new Error(`no cluster node answered CLUSTER SLOTS (${errors.join("; ") || "none running"})`);
  }
}

/** The Redis Cluster slot of a key (or channel, for sharded pub/sub): CRC16 of its hash tag if it has one. */
export function keySlot(key: string): number {
  let bytes = Buffer.from(key, "utf8");
  const open = bytes.indexOf("{");
  if (open >= 0) {
    const close = bytes.indexOf("}", open + 1);
    if (close > open + 1) bytes = bytes.subarray(open + 1, close);
  }
  return crc16(bytes) % CLUSTER_SLOTS;
}

/** A free TCP port on 127.0.0.1 (bound to port 0 and released); with `clusterBus`, port + 10000 is free too. */
export async function freePort(options: { readonly clusterBus?: boolean } = {}): Promise<number> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const port = await bind(0);
    if (port === undefined) continue;
    if (!options.clusterBus) return port;
    const bus = port + CLUSTER_BUS_OFFSET;
    if (bus <= 65535 && (await bind(bus)) !== undefined) return port;
  }
  throw new Error("no free port found on 127.0.0.1");
}

/** Send one command to 127.0.0.1:`port` over a fresh connection; rejects on an error reply or after `timeoutMs`. */
export function respCommand(port: number, args: readonly string[], timeoutMs = 2000): Promise<RespValue> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ host: "127.0.0.1", port });
    let buffer = Buffer.alloc(0);
    let settled = false;
    const finish = (error: Error | undefined, value?: RespValue) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      if (error) reject(error);
      else resolve(value ?? null);
    };
    const timer = setTimeout(
      () => finish(new Error(`redis ${port}: no reply to ${args[0]} within ${timeoutMs} ms`)),
      timeoutMs,
    );
    socket.once("connect", () => socket.write(encodeCommand(args)));
    socket.on("data", (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      try {
        const parsed = parseReply(buffer, 0);
        if (parsed) finish(undefined, parsed.value);
      } catch (error) {
        finish(error as Error);
      }
    });
    socket.once("error", (error) => finish(new Error(`redis ${port}: ${error.message}`)));
    socket.once("close", () => finish(new Error(`redis ${port}: connection closed before a reply to ${args[0]}`)));
  });
}

/** A cluster node: a free port whose bus port is free too, retried when redis-server cannot bind either. */
async function startClusterNode(dir: string): Promise<RedisServer> {
  for (let attempt = 1;; attempt++) {
    const port = await freePort({ clusterBus: true });
    try {
      return await RedisServer.start({
        port,
        dir,
        args: [
          "--cluster-enabled",
          "yes",
          "--cluster-config-file",
          join(dir, `nodes-${port}.conf`),
          "--cluster-node-timeout",
          "2000",
        ],
      });
    } catch (error) {
      if (!(error instanceof PortTakenError) || attempt >= 5) throw error;
    }
  }
}

async function clusterState(port: number): Promise<string> {
  try {
    const info = await respCommand(port, ["CLUSTER", "INFO"]);
    return /cluster_state:(\w+)/.exec(String(info))?.[1] ?? "unknown";
  } catch (error) {
    return `unreachable (${(error as Error).message})`;
  }
}

type SlotRange = { readonly start: number; readonly end: number; readonly port: number };

function parseSlots(reply: RespValue): SlotRange[] {
  if (!Array.isArray(reply)) throw new Error(`CLUSTER SLOTS: unexpected reply ${JSON.stringify(reply)}`);
  return reply.map((entry: RespValue) => {
    const [start, end, master] = entry as readonly RespValue[];
    return { start: Number(start), end: Number(end), port: Number((master as readonly RespValue[])[1]) };
  });
}

function ownerOf(ranges: readonly SlotRange[], slot: number): number {
  const range = ranges.find((r) => slot >= r.start && slot <= r.end);
  if (!range) throw new Error(`slot ${slot} is not assigned to any node`);
  return range.port;
}

/** CRC16-CCITT (XMODEM), the checksum Redis Cluster uses for key slots. */
function crc16(bytes: Uint8Array): number {
  let crc = 0;
  for (const byte of bytes) {
    crc ^= byte << 8;
    for (let bit = 0; bit < 8; bit++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc;
}

function encodeCommand(args: readonly string[]): string {
  return `*${args.length}\r\n` + args.map((arg) => `$${Buffer.byteLength(arg)}\r\n${arg}\r\n`).join("");
}

/** Parse one RESP2 reply starting at `offset`; undefined when `buffer` does not hold all of it yet. */
function parseReply(buffer: Buffer, offset: number): { value: RespValue; end: number } | undefined {
  const lineEnd = buffer.indexOf("\r\n", offset);
  if (lineEnd < 0) return undefined;
  const type = String.fromCharCode(buffer[offset]);
  const line = buffer.toString("utf8", offset + 1, lineEnd);
  const next = lineEnd + 2;
  switch (type) {
    case "+":
      return { value: line, end: next };
    case "-":
      throw new ErrorReply(line);
    case ":":
      return { value: Number(line), end: next };
    case "$": {
      const length = Number(line);
      if (length < 0) return { value: null, end: next };
      if (buffer.length < next + length + 2) return undefined;
      return { value: buffer.toString("utf8", next, next + length), end: next + length + 2 };
    }
    case "*": {
      const count = Number(line);
      if (count < 0) return { value: null, end: next };
      const items: RespValue[] = [];
      let at = next;
      for (let i = 0; i < count; i++) {
        const item = parseReply(buffer, at);
        if (!item) return undefined;
        items.push(item.value);
        at = item.end;
      }
      return { value: items, end: at };
    }
    default:
      throw new Error(`unexpected RESP type ${JSON.stringify(type)} in ${JSON.stringify(buffer.toString("utf8"))}`);
  }
}

/** Run redis-cli with `args`; resolve with its stdout without trailing newlines, reject when it exits non-zero. */
function runCli(args: readonly string[], timeoutMs = 10_000): Promise<string> {
  const child = spawn(executable("redis-cli"), args, { stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout!.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  const pid = child.pid;
  if (pid !== undefined) livePids.add(pid);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => pid !== undefined && signal(pid, "SIGKILL"), timeoutMs);
    child.once("error", (error) => {
      clearTimeout(timer);
      reject(new Error(`redis-cli ${args.join(" ")}: ${error.message}`));
    });
    // "close" comes after stdout and stderr have ended, so the output is complete.
    child.once("close", (code, sig) => {
      clearTimeout(timer);
      if (pid !== undefined) livePids.delete(pid);
      if (code === 0) return resolve(stdout.replace(/\n+$/, ""));
      const why = sig ? `killed by ${sig}` : `exit code ${code}`;
      reject(new Error(`redis-cli ${args.join(" ")}: ${why}: ${(stderr || stdout).trim()}`));
    });
  });
}

/** The path of `name` on PATH (or in the usual system directories); throws the install hint when it is missing. */
function executable(name: string): string {
  const dirs = [...(process.env.PATH ?? "").split(delimiter), "/usr/bin", "/usr/local/bin", "/usr/sbin"];
  for (const dir of dirs.filter((d) => d !== "")) {
    const path = join(dir, name);
    try {
      accessSync(path, constants.X_OK);
      return path;
    } catch {
      // not here
    }
  }
  throw new Error(
    name === "redis-server" ? INSTALL_HINT : INSTALL_HINT.replace("redis-server not found", `${name} not found`),
  );
}

/** Bind `port` on 127.0.0.1 and release it; the bound port, or undefined when it is taken. */
function bind(port: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", () => resolve(undefined));
    server.listen(port, "127.0.0.1", () => {
      const address = server.address();
      const bound = typeof address === "object" && address ? address.port : undefined;
      server.close(() => resolve(bound));
    });
  });
}

/**
 * Signal a process by pid, ignoring one that is already gone: Deno's `node:child_process` reports a child that was
 * sent a signal with `ChildProcess.kill()` oddly, so signals go through `process.kill()`.
 */
function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch (error) {
    if ((error as { code?: string }).code !== "ESRCH") throw error;
  }
}

function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  liveDirs.delete(dir);
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
