/// <reference types="@types/bun" />
// Smoke test of the benchmark peers against a private redis-server: each peer starts and says ready, two clients
// subscribe, three published messages reach both in order, unsubscribing releases the Redis channel, and SIGTERM
// ends the peer with exit code 0. Prints `peer <name>: ok` per peer; exits 1 if any failed.
//
//   bun run bench/peers/smoke.ts
import { type ChildProcess, spawn } from "node:child_process";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";
import { createClient } from "redis";
import { io as connectSocketIo, type Socket as SocketIoClient } from "socket.io-client";
import { createPublisher, type PublisherKind } from "./publish.ts";

interface Peer {
  readonly name: string;
  readonly command: readonly string[];
  readonly publisher: PublisherKind;
}

/** What a test client saw: the `data` of each delivery on the subscription, in order. */
interface SmokeClient {
  subscribe(name: string): Promise<void>;
  unsubscribe(name: string): Promise<void>;
  readonly received: unknown[];
  close(): void;
}

const here = (file: string): string => fileURLToPath(new URL(file, import.meta.url).href);

const PEERS: readonly Peer[] = [
  { name: "bun-limit", command: [process.execPath, "run", here("bun_limit.ts")], publisher: "redis" },
  { name: "node-ws", command: ["node", here("node_ws.mjs")], publisher: "redis" },
  { name: "socketio", command: ["node", here("socketio.mjs")], publisher: "socketio" },
];

const STEP_TIMEOUT_MS = 5_000;
const MESSAGES = [
  { n: 1, text: "first" },
  { n: 2, text: "zwei", nested: { ok: true } },
  { n: 3, list: [1, "ü", null] },
];

/** Children still running, killed by pid if the smoke test exits early. */
const children = new Set<ChildProcess>();
process.on("exit", () => {
  for (const child of children) child.kill("SIGKILL");
});

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** Reject with `what` after `ms`, clearing the timer when `promise` settles first. */
async function within<T>(promise: Promise<T>, what: string, ms = STEP_TIMEOUT_MS): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Resolve once `check()` is true, polling every 20 ms. */
async function until(check: () => boolean | Promise<boolean>, what: string): Promise<void> {
  await within(
    (async () => {
      while (!(await check())) await new Promise((resolve) => setTimeout(resolve, 20));
    })(),
    what,
  );
}

/** Start a process; `output` keeps its stderr (and stdout) for error messages, `lines` yields stdout lines. */
function start(command: readonly string[], env: Record<string, string>) {
  const child = spawn(command[0]!, command.slice(1), {
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.add(child);
  const exited = new Promise<number | null>((resolve) => {
    child.once("exit", (code, signal) => {
      children.delete(child);
      resolve(signal ? null : code);
    });
  });
  const output: string[] = [];
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => output.push(chunk));
  const stdoutLines: string[] = [];
  let partial = "";
  child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
    output.push(chunk);
    const parts = (partial + chunk).split("\n");
    partial = parts.pop()!;
    stdoutLines.push(...parts);
  });
  return { child, exited, output, stdoutLines };
}

async function startRedis(): Promise<{ url: string; stop(): Promise<void> }> {
  const port = await freePort();
  const redis = start(
    ["redis-server", "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
    {},
  );
  const url = `redis://127.0.0.1:${port}`;
  const stop = async () => {
    redis.child.kill("SIGKILL");
    await redis.exited;
  };
  try {
    await until(() => redis.stdoutLines.some((line) => line.includes("Ready to accept connections")), "redis-server");
  } catch (error) {
    await stop();
    throw new Error(`${(error as Error).message}\n${redis.output.join("")}`);
  }
  return { url, stop };
}

/** A Shoal-protocol client on the global WebSocket (bun-limit, node-ws). */
async function wsClient(port: number): Promise<SmokeClient> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/`);
  const received: unknown[] = [];
  const waiting = new Map<string, (frame: { status?: string; error?: unknown }) => void>();
  ws.onmessage = (event) => {
    // Shoal's protocol is text frames only: a binary one spoils the comparison of deliveries.
    if (typeof event.data !== "string") {
      received.push("<binary frame>");
      return;
    }
    const frame = JSON.parse(event.data);
    if (frame.event === "message") received.push(frame.data);
    else waiting.get(`${frame.event} ${frame.subscription}`)?.(frame);
  };
  await within(
    new Promise((resolve, reject) => {
      ws.onopen = resolve;
      ws.onerror = () => reject(new Error("WebSocket connection failed"));
    }),
    "WebSocket open",
  );
  const request = async (event: string, subscription: string): Promise<void> => {
    const reply = new Promise<{ status?: string; error?: unknown }>((resolve) => {
      waiting.set(`${event} ${subscription}`, resolve);
    });
    ws.send(JSON.stringify({ event, subscription }));
    const frame = await within(reply, `${event} reply`);
    if (frame.status !== "ok") throw new Error(`${event} failed: ${JSON.stringify(frame)}`);
  };
  return {
    subscribe: (name) => request("subscribe", name),
    unsubscribe: (name) => request("unsubscribe", name),
    received,
    close: () => ws.close(),
  };
}

/** A socket.io-client (socketio). */
async function socketIoClient(port: number): Promise<SmokeClient> {
  const socket: SocketIoClient = connectSocketIo(`http://127.0.0.1:${port}`, {
    transports: ["websocket"],
    reconnection: false,
  });
  const received: unknown[] = [];
  socket.on("message", (message: { data: unknown }) => received.push(message.data));
  await within(
    new Promise((resolve, reject) => {
      socket.once("connect", () => resolve(undefined));
      socket.once("connect_error", reject);
    }),
    "socket.io connect",
  );
  const request = async (event: string, name: string): Promise<void> => {
    const reply = await within(socket.emitWithAck(event, name) as Promise<{ status?: string }>, `${event} ack`);
    if (reply?.status !== "ok") throw new Error(`${event} failed: ${JSON.stringify(reply)}`);
  };
  return {
    subscribe: (name) => request("subscribe", name),
    unsubscribe: (name) => request("unsubscribe", name),
    received,
    close: () => void socket.close(),
  };
}

async function numsub(redisUrl: string, channel: string): Promise<number> {
  const client = createClient({ url: redisUrl, RESP: 2, maintNotifications: "disabled" });
  await client.connect();
  try {
    return (await client.pubSubNumSub(channel))[channel] ?? 0;
  } finally {
    await client.close();
  }
}

async function smoke(peer: Peer, redisUrl: string): Promise<void> {
  const port = await freePort();
  const proc = start(peer.command, { PORT: String(port), REDIS_URL: redisUrl });
  const clients: SmokeClient[] = [];
  try {
    try {
      await until(() => proc.stdoutLines.length > 0 || proc.child.exitCode !== null, "ready line");
      const ready = JSON.parse(proc.stdoutLines[0] ?? "null");
      if (ready?.message !== "ready" || ready.port !== port) {
        throw new Error(`unexpected first line: ${proc.stdoutLines[0]}`);
      }
    } catch (error) {
      throw new Error(`${(error as Error).message}\n${proc.output.join("")}`);
    }

    const subscription = `bench.smoke-${peer.name}`;
    const connect = peer.publisher === "socketio" ? socketIoClient : wsClient;
    clients.push(await connect(port), await connect(port));
    for (const client of clients) await client.subscribe(subscription);

    const publisher = await createPublisher(peer.publisher, redisUrl);
    try {
      for (const data of MESSAGES) await publisher.publish(subscription, data);
    } finally {
      await publisher.close();
    }
    await until(() => clients.every((client) => client.received.length >= MESSAGES.length), "3 deliveries");

    // A delivery after the third would arrive before the unsubscribe reply: the peer handles frames in order.
    for (const client of clients) await client.unsubscribe(subscription);
    const expected = JSON.stringify(MESSAGES);
    for (const [i, client] of clients.entries()) {
      if (JSON.stringify(client.received) !== expected) {
        throw new Error(`client ${i + 1} received ${JSON.stringify(client.received)}, expected ${expected}`);
      }
    }
    // The last local unsubscriber leaves the Redis channel (socketio holds one PSUBSCRIBE for all rooms instead).
    if (peer.publisher === "redis") {
      await until(async () => await numsub(redisUrl, subscription) === 0, "Redis UNSUBSCRIBE");
    }

    for (const client of clients.splice(0)) client.close();
    proc.child.kill("SIGTERM");
    const code = await within(proc.exited, "exit after SIGTERM");
    if (code !== 0) throw new Error(`exit code ${code} after SIGTERM\n${proc.output.join("")}`);
  } finally {
    for (const client of clients) client.close();
    if (proc.child.exitCode === null && proc.child.signalCode === null) {
      proc.child.kill("SIGKILL");
      await proc.exited;
    }
  }
}

let failed = false;
const redis = await startRedis();
try {
  for (const peer of PEERS) {
    try {
      await smoke(peer, redis.url);
      console.log(`peer ${peer.name}: ok`);
    } catch (error) {
      failed = true;
      console.log(`peer ${peer.name}: FAILED ${(error as Error).message}`);
    }
  }
} finally {
  await redis.stop();
}
process.exit(failed ? 1 : 0);
