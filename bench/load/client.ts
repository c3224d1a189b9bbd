/**
 * A load-generator worker: `bun run bench/load/client.ts --port PORT`. Holds many client connections to one
 * server, reads commands from stdin and writes reports to stdout, one JSON object per line (see `messages.ts`).
 * The runner starts several, each under the ~20k open files a process may hold here.
 */
import process from "node:process";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import { DeliveryStats } from "./delivery_stats.ts";
import type { WorkerCommand, WorkerReport } from "./messages.ts";
import { RecoveringSubscriber } from "./recovering_subscriber.ts";
import { RecoveryStats } from "./recovery_stats.ts";
import { Subscriber } from "./subscriber.ts";

const HOST = "127.0.0.1";

const { values } = parseArgs({ options: { port: { type: "string" } }, strict: true });
const port = Number(values.port);
if (!Number.isInteger(port) || port <= 0) {
  console.error("client: --port PORT is required");
  process.exit(2);
}

const stats = new DeliveryStats();
/** Connections that subscribed successfully. */
const subscribers: Subscriber[] = [];
/** S6's clients of one history subscription, and their counters. */
const recoverers: RecoveringSubscriber[] = [];
const recoveryStats = new RecoveryStats();
/** Closes the worker did not ask for, over its whole life. */
const unexpectedCloses: Record<string, number> = {};
let closing = false;
let progressTimer: ReturnType<typeof setInterval> | undefined;

function report(message: WorkerReport): void {
  process.stdout.write(`${JSON.stringify(message)}\n`);
}

function onClose(_subscriber: Subscriber, code: number): void {
  if (closing) return;
  stats.closed(code);
  unexpectedCloses[code] = (unexpectedCloses[code] ?? 0) + 1;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

async function connect(command: Extract<WorkerCommand, { cmd: "connect" }>): Promise<void> {
  const started = performance.now();
  let next = 0;
  let failed = 0;
  const errors: string[] = [];
  const lane = async () => {
    while (next < command.subscriptions.length) {
      const names = command.subscriptions[next++];
      const subscriber = new Subscriber({
        host: HOST,
        port,
        protocol: command.protocol,
        timeoutMs: command.timeoutMs,
        stats,
        onClose,
      });
      try {
        await subscriber.start(names);
        subscribers.push(subscriber);
      } catch (error) {
        failed++;
        if (errors.length < 5) errors.push((error as Error).message);
        subscriber.close();
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, command.concurrency) }, lane));
  report({
    type: "connected",
    ok: command.subscriptions.length - failed,
    failed,
    ms: performance.now() - started,
    errors,
  });
}

function begin(command: Extract<WorkerCommand, { cmd: "phase" }>): void {
  let tracked = 0;
  for (const subscriber of subscribers) tracked += subscriber.topics.size;
  stats.begin(command.id, command.track, tracked);
  clearInterval(progressTimer);
  progressTimer = undefined;
  report({ type: "begun", phase: command.id });
  if (!command.track) return;
  let reported = 0;
  progressTimer = setInterval(() => {
    if (stats.complete === reported) return;
    reported = stats.complete;
    report({ type: "progress", phase: command.id, complete: reported });
  }, 1);
}

async function end(command: Extract<WorkerCommand, { cmd: "end" }>): Promise<void> {
  clearInterval(progressTimer);
  progressTimer = undefined;
  const started = performance.now();
  let expected = 0;
  for (const subscriber of subscribers) {
    for (const name of subscriber.topics.keys()) expected += command.published[name] ?? 0;
  }
  while (stats.deliveries < expected) {
    const now = performance.now();
    if (now - Math.max(stats.lastArrival, started) >= command.quietMs || now - started >= command.maxWaitMs) break;
    await sleep(10);
  }
  let lost = 0;
  for (const subscriber of subscribers) {
    for (const [name, state] of subscriber.topics) {
      const received = state.phase === command.id ? state.count : 0;
      lost += Math.max(0, (command.published[name] ?? 0) - received);
    }
  }
  report({ type: "phase", phase: command.id, ...stats.counts(lost, performance.now() - started) });
}

async function connectRecoverers(command: Extract<WorkerCommand, { cmd: "recoverers" }>): Promise<void> {
  const started = performance.now();
  let next = 0;
  let failed = 0;
  const errors: string[] = [];
  const lane = async () => {
    while (next < command.count) {
      next++;
      const subscriber = new RecoveringSubscriber({
        host: HOST,
        port,
        topic: command.topic,
        timeoutMs: command.timeoutMs,
        stats: recoveryStats,
      });
      try {
        await subscriber.start();
        recoverers.push(subscriber);
      } catch (error) {
        failed++;
        if (errors.length < 5) errors.push((error as Error).message);
        subscriber.close();
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, command.concurrency) }, lane));
  report({ type: "connected", ok: command.count - failed, failed, ms: performance.now() - started, errors });
}

/** Drop `share` of all recovering clients, picked at random among the live ones. */
function drop(command: Extract<WorkerCommand, { cmd: "drop" }>): void {
  const wanted = Math.round(command.share * recoverers.length);
  const live = recoverers.filter((s) => s.live);
  for (let i = live.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [live[i], live[j]] = [live[j], live[i]];
  }
  const picked = live.slice(0, wanted);
  for (const subscriber of picked) subscriber.drop(command.offlineMs);
  report({ type: "dropped", count: picked.length, skipped: wanted - picked.length });
}

async function recoveryEnd(command: Extract<WorkerCommand, { cmd: "recoveryEnd" }>): Promise<void> {
  const started = performance.now();
  const caughtUp = () => recoverers.every((s) => s.highest >= command.last && !s.recovering);
  while (!caughtUp()) {
    const now = performance.now();
    const quiet = now - Math.max(recoveryStats.lastArrival, started) >= command.quietMs;
    if ((quiet && !recoverers.some((s) => s.recovering)) || now - started >= command.maxWaitMs) break;
    await sleep(10);
  }
  let expected = 0;
  let delivered = 0;
  let holes = 0;
  let tail = 0;
  for (const subscriber of recoverers) {
    const counted = subscriber.count(command.first, command.last);
    expected += counted.expected;
    delivered += counted.delivered;
    holes += counted.holes;
    tail += counted.tail;
  }
  const s = recoveryStats;
  report({
    type: "recovery",
    clients: recoverers.length,
    expected,
    delivered,
    holes,
    undelivered: tail,
    duplicates: s.duplicates,
    outOfOrder: s.outOfOrder,
    foreign: s.foreign,
    drops: s.drops,
    recovered: s.recovered,
    notRecovered: s.notRecovered,
    unrecoverable: s.unrecoverable,
    insufficientState: s.insufficientState,
    reconnects: s.reconnects,
    recoveringSubscribes: s.recoveringSubscribes,
    reconnectFailures: s.reconnectFailures,
    replayed: s.replayed,
    awaitingLive: recoverers.filter((r) => r.awaitingLive).length,
    behind: recoverers.filter((r) => r.highest < command.last).length,
    recoveryLatency: s.recoveryLatency.toJSON(),
    okLatency: s.okLatency.toJSON(),
    handshakeLatency: s.handshakeLatency.toJSON(),
    liveLatency: s.liveLatency.toJSON(),
    closes: { ...s.closes },
    settleMs: performance.now() - started,
  });
}

function stall(): void {
  for (const subscriber of subscribers) subscriber.pause();
  report({ type: "stalled", ports: subscribers.map((s) => s.localPort) });
}

async function resume(timeoutMs: number): Promise<void> {
  for (const subscriber of subscribers) subscriber.resume();
  const started = performance.now();
  while (subscribers.some((s) => s.closeCode === undefined) && performance.now() - started < timeoutMs) await sleep(20);
  report({
    type: "resumed",
    closes: subscribers.map((s) => ({ port: s.localPort, code: s.closeCode ?? null, bytes: s.bytesSinceResume })),
  });
}

async function closeAll(): Promise<never> {
  closing = true;
  clearInterval(progressTimer);
  for (const subscriber of subscribers) subscriber.close();
  for (const subscriber of recoverers) subscriber.close();
  const started = performance.now();
  while (subscribers.some((s) => s.closeCode === undefined) && performance.now() - started < 2000) await sleep(20);
  report({ type: "closed", unexpectedCloses });
  process.exit(0);
}

async function handle(command: WorkerCommand): Promise<void> {
  switch (command.cmd) {
    case "connect":
      return connect(command);
    case "phase":
      return begin(command);
    case "end":
      return end(command);
    case "stall":
      return stall();
    case "resume":
      return resume(command.timeoutMs);
    case "recoverers":
      return connectRecoverers(command);
    case "drop":
      return drop(command);
    case "recoveryEnd":
      return recoveryEnd(command);
    case "close":
      await closeAll();
  }
}

const lines = createInterface({ input: process.stdin });
lines.on("line", (line) => {
  if (line.trim() === "") return;
  handle(JSON.parse(line) as WorkerCommand).catch((error) => report({ type: "error", message: String(error) }));
});
// The runner went away: nothing is left to report to.
lines.on("close", () => process.exit(0));
report({ type: "started", pid: process.pid });
