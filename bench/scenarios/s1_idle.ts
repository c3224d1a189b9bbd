import { targetNamed } from "../harness/targets.ts";
import { assertRunning, assertSubscribed, type Scenario, sleep, withServer } from "./scenario.ts";

const FULL = { clients: 5000, workers: 2, concurrency: 100, settleMs: 2000 };
const QUICK = { clients: 200, workers: 2, concurrency: 50, settleMs: 300 };

/** S1: idle subscribed clients, each on a topic of its own: memory per connection and set-up rate. */
export const s1Idle: Scenario = {
  id: "S1",
  title: "Idle subscribed clients",
  describe(quick) {
    const p = quick ? QUICK : FULL;
    return [
      `${p.clients} clients connect (${p.workers} workers × ${p.concurrency} at a time) and each subscribes to a`,
      `topic of its own (\`bench.s1.<i>\`, so the server also holds ${p.clients} Redis channels).`,
      `Memory per connection is (RSS ${p.settleMs / 1000} s after the last subscribe OK − RSS before the first`,
      "connect) / clients; the rate is clients / time from the first connect to the last subscribe OK.",
    ].join(" ");
  },
  columns: (targets) => targets.map((t) => t.name),
  reference: "bun-limit",
  metrics: () => [
    { key: "memPerConnection", label: "memory per connection", format: "bytes", ratio: true },
    { key: "connectRate", label: "connect + subscribe rate (clients/s)", format: "rate", ratio: true },
    { key: "cpuPerThousand", label: "server CPU per 1,000 set-ups", format: "ms", ratio: true },
    { key: "rssIdle", label: "RSS before connecting", format: "bytes" },
    { key: "rssLoaded", label: `RSS with every client subscribed`, format: "bytes" },
  ],
  async run(context, column) {
    const p = context.quick ? QUICK : FULL;
    const target = targetNamed(column);
    return await withServer(context, target, { workers: [p.workers] }, async (server, [workers]) => {
      await sleep(p.settleMs / 2);
      const rssIdle = server.rssBytes();
      const cpuBefore = server.cpuSeconds();
      const started = performance.now();
      const subscriptions = Array.from({ length: p.clients }, (_, i) => [`bench.s1.${i}`]);
      const connected = await workers.connect(subscriptions, {
        protocol: target.protocol,
        concurrency: p.concurrency,
        timeoutMs: 60_000,
      });
      const seconds = (performance.now() - started) / 1000;
      assertSubscribed(connected, server);
      const cpu = server.cpuSeconds() - cpuBefore;
      await sleep(p.settleMs);
      assertRunning(server);
      const rssLoaded = server.rssBytes();
      return {
        measurement: {
          memPerConnection: (rssLoaded - rssIdle) / p.clients,
          connectRate: p.clients / seconds,
          cpuPerThousand: (cpu * 1000 * 1000) / p.clients,
          rssIdle,
          rssLoaded,
        },
        details: { clients: p.clients, connectSeconds: seconds, serverCpuSeconds: cpu },
      };
    });
  },
};
