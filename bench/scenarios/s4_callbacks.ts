import { Child } from "../harness/child.ts";
import { freePort } from "../harness/free_port.ts";
import { ResourceWindow } from "../harness/resource_window.ts";
import { targetNamed } from "../harness/targets.ts";
import type { RunContext } from "./scenario.ts";
import { assertRunning, assertSubscribed, type Scenario, sleep, withServer } from "./scenario.ts";

const FULL = { sessions: 5000, concurrency: 50, workers: 2 };
const QUICK = { sessions: 100, concurrency: 20, workers: 2 };
const RAW = "http-only";
const LIMIT = "bun-limit";
const TOPIC = "bench.s4";
const CALLBACKS = ["/authorize", "/before_subscribe", "/on_subscribe"];

type DoneLine = { message: "done"; sessions: number; failed: number; ms: number; cpuSeconds: number };

/** The 0-ms HTTP service, on the load CPU; resolves with its base URL. */
async function startService(context: RunContext): Promise<{ url: string; child: Child }> {
  const port = await freePort();
  const child = new Child("callback service", [
    context.tools.bun,
    "run",
    "bench/load/callback_service.ts",
    "--port",
    String(port),
  ], {
    cwd: context.cwd,
    cpu: context.loadCpu,
  });
  await child.waitFor((line) => (line as { message?: unknown })?.message === "ready", 15_000, "not ready");
  return { url: `http://127.0.0.1:${port}`, child };
}

/** Wait until the service has seen `sessions` calls on every callback path (on_subscribe comes after the OK). */
async function awaitCalls(url: string, sessions: number): Promise<Record<string, number>> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const counts = (await (await fetch(`${url}/counts`)).json()) as Record<string, number>;
    if (CALLBACKS.every((path) => (counts[path] ?? 0) >= sessions)) return counts;
    if (Date.now() > deadline) {
      throw new Error(`the service saw ${JSON.stringify(counts)}, not ${sessions} calls per callback`);
    }
    await sleep(50);
  }
}

/**
 * S4: subscribes that call authorizer, before_subscribe and on_subscribe; against bun-limit making the same three
 * calls by hand per subscribe, and a script making only the calls.
 */
export const s4Callbacks: Scenario = {
  id: "S4",
  title: "Subscribe with service callbacks",
  describe(quick) {
    const p = quick ? QUICK : FULL;
    return [
      `${p.sessions} sessions, ${p.concurrency} at a time: each connects and subscribes to \`${TOPIC}\` on a service`,
      "whose `authorizer`, `beforeSubscribe` and `onSubscribe` point at a Bun.serve service (on the load CPU) that",
      'answers `{"status":"ok"}` at once. Sessions/s = sessions / time until the last subscribe OK; every',
      "on_subscribe call is then checked to have arrived.",
      `The reference, \`${LIMIT}\`, is the raw Bun.serve peer with \`CALLBACK_URL\` set: per subscribe it POSTs to`,
      "the same three paths with `fetch`, one after another (on_subscribe after the OK), and nothing else: a raw",
      "script doing this work over WebSockets.",
      `\`${RAW}\` is \`bench/load/raw_subscribe.ts\` on the server CPU: the three POSTs per session, ${p.concurrency}`,
      "sessions at a time, with no WebSocket at all: the ceiling of a Bun process making these calls.",
      "node-ws and socketio have no service callbacks and sit this one out.",
    ].join(" ");
  },
  columns: (targets) => [RAW, ...targets.filter((t) => t.shoal || t.name === LIMIT).map((t) => t.name)],
  reference: LIMIT,
  metrics: () => [
    { key: "sessionsPerSecond", label: "sessions set up per second", format: "rate", ratio: true },
    { key: "cpuPerSession", label: "server CPU per session", format: "ms", ratio: true },
    { key: "serverCpu", label: "server CPU", format: "pct" },
    { key: "loadCpu", label: "load CPU busy (service, clients)", format: "pct" },
  ],
  async run(context, column) {
    const service = await startService(context);
    try {
      const result = column === RAW ? await runRaw(context, service.url) : await runServer(context, column, service.url);
      if (!service.child.running) throw service.child.error("exited during the scenario");
      return result;
    } finally {
      await service.child.stop("SIGTERM", 5000).catch(() => {});
    }
  },
};

async function runRaw(context: RunContext, url: string) {
  const p = context.quick ? QUICK : FULL;
  const child = new Child(
    RAW,
    [
      context.tools.bun,
      "run",
      "bench/load/raw_subscribe.ts",
      "--url",
      url,
      "--sessions",
      String(p.sessions),
      "--concurrency",
      String(p.concurrency),
    ],
    { cwd: context.cwd, cpu: context.serverCpu },
  );
  const window = new ResourceWindow(child.pid, context.loadCpu);
  const done = await child.waitFor(
    (line): line is DoneLine => (line as { message?: unknown })?.message === "done",
    120_000,
    "did not finish",
  );
  const usage = window.finish();
  await child.exited;
  if (done.failed > 0) throw child.error(`${done.failed} of ${done.sessions} sessions failed`);
  const serviceCalls = await awaitCalls(url, p.sessions);
  const seconds = done.ms / 1000;
  return {
    measurement: {
      sessionsPerSecond: p.sessions / seconds,
      cpuPerSession: (done.cpuSeconds * 1000) / p.sessions,
      serverCpu: done.cpuSeconds / seconds,
      loadCpu: usage.loadCpuBusy,
    },
    details: { sessions: p.sessions, seconds, cpuSeconds: done.cpuSeconds, serviceCalls },
  };
}

async function runServer(context: RunContext, column: string, url: string) {
  const p = context.quick ? QUICK : FULL;
  const target = targetNamed(column);
  const service = {
    authorizer: `${url}/authorize`,
    beforeSubscribe: `${url}/before_subscribe`,
    onSubscribe: `${url}/on_subscribe`,
  };
  const setup = { shoal: { service }, peerEnv: { CALLBACK_URL: url }, workers: [p.workers] };
  return await withServer(context, target, setup, async (server, [workers]) => {
    const window = new ResourceWindow(server.pid, context.loadCpu);
    const connected = await workers.connect(Array.from({ length: p.sessions }, () => [TOPIC]), {
      protocol: target.protocol,
      concurrency: Math.ceil(p.concurrency / p.workers),
      timeoutMs: 60_000,
    });
    const usage = window.finish();
    const seconds = usage.seconds;
    const cpu = usage.serverCpuSeconds;
    assertSubscribed(connected, server);
    const serviceCalls = await awaitCalls(url, p.sessions);
    assertRunning(server);
    return {
      measurement: {
        sessionsPerSecond: p.sessions / seconds,
        cpuPerSession: (cpu * 1000) / p.sessions,
        serverCpu: cpu / seconds,
        loadCpu: usage.loadCpuBusy,
      },
      details: { sessions: p.sessions, seconds, cpuSeconds: cpu, serviceCalls },
    };
  });
}
