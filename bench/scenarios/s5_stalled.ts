import { createPublisher } from "../peers/publish.ts";
import { phaseSummary } from "../harness/load_workers.ts";
import { TCP_ESTABLISHED, tcpStatesByRemotePort } from "../harness/proc_stats.ts";
import { PhasePublisher } from "../harness/publishing.ts";
import { ResourceWindow } from "../harness/resource_window.ts";
import type { ServerUnderTest } from "../harness/server_under_test.ts";
import { targetNamed } from "../harness/targets.ts";
import { median } from "../report.ts";
import { assertRunning, assertSubscribed, type Scenario, withServer } from "./scenario.ts";

const FULL = {
  clients: 1000,
  stalled: 10,
  workers: 2,
  rate: 20,
  padBytes: 16384,
  baselineMs: 8_000,
  durationMs: 20_000,
  resumeMs: 10_000,
};
const QUICK = {
  clients: 100,
  stalled: 5,
  workers: 2,
  rate: 20,
  padBytes: 16384,
  baselineMs: 300,
  durationMs: 500,
  resumeMs: 300,
};
const TOPIC = "bench.stall";
const SETTLE = { quietMs: 500, maxWaitMs: 5000 };
/** Shoal's settings for this scenario: a 1 MiB send buffer per client, and keep-alive pings. */
const SHOAL_WS = { maxBufferedBytes: 1048576, ping: { interval: 5, timeout: 5 } };

/** "1013×10", "open×6, 1006×4": how the stalled connections ended, most frequent first. */
function closeSummary(codes: readonly (number | null)[]): string {
  const counts = new Map<string, number>();
  for (const code of codes) {
    counts.set(code === null ? "open" : String(code), (counts.get(code === null ? "open" : String(code)) ?? 0) + 1);
  }
  return [...counts].sort((a, b) => b[1] - a[1]).map(([code, n]) => `${code}×${n}`).join(", ");
}

/** What Shoal logged about closing clients: "ping timeout×10", "slow consumer×3", or "none". */
function shoalReasons(server: ServerUnderTest): string {
  const reasons = [
    ["ping timeout", server.logged("ping timeout")],
    ["slow consumer", server.logged("slow consumer; closing")],
  ] as const;
  return reasons.filter(([, n]) => n > 0).map(([reason, n]) => `${reason}×${n}`).join(", ") || "none";
}

/** S5: a few clients stop reading on a busy topic: the others' latency, the server's memory, and the drop. */
export const s5Stalled: Scenario = {
  id: "S5",
  title: "Stalled clients on a hot topic",
  describe(quick) {
    const p = quick ? QUICK : FULL;
    return [
      `${p.clients} clients on \`${TOPIC}\`; ${p.stalled} of them stop reading from their socket (a raw TCP client`,
      "that pauses reading, so the kernel buffers fill and then the server has to buffer, drop or close).",
      `${p.rate} msg/s of ${p.padBytes}-byte messages: first ${p.baselineMs / 1000} s with every client reading (the`,
      `baseline), then ${p.durationMs / 1000} s with the ${p.stalled} stalled; the p99 change compares the others' p99`,
      "in the two windows, on the same server.",
      `Shoal runs with \`ws: ${JSON.stringify(SHOAL_WS)}\`; the peers with their own limits (bun-limit and node-ws`,
      "drop a client past 8 MiB buffered; socketio has none).",
      "Dropped is when the server's end of a stalled connection left ESTABLISHED in `/proc/net/tcp`, in seconds",
      "after publishing started (watched until the stalled clients have read again, so a later drop shows too).",
      "The close code is what the stalled client read once it resumed reading after the window",
      `(\`open\`: still connected ${p.resumeMs / 1000} s later; 1006: the connection ended without a close frame).`,
      "Memory growth is peak RSS minus RSS at the start of the window.",
    ].join(" ");
  },
  columns: (targets) => targets.map((t) => t.name),
  reference: "bun-limit",
  metrics: () => [
    { key: "othersP50", label: "others: p50 latency", format: "ms", ratio: true },
    { key: "othersP99", label: "others: p99 latency", format: "ms", ratio: true },
    { key: "baselineP99", label: "others: p99 before any client stalled", format: "ms", ratio: true },
    { key: "othersP99Change", label: "others: p99 change from that baseline", format: "pct" },
    { key: "othersLost", label: "others: lost deliveries", format: "int" },
    { key: "rssGrowth", label: "server memory growth", format: "bytes", ratio: true },
    { key: "serverCpu", label: "server CPU", format: "pct" },
    { key: "othersLoadCpu", label: "load CPU busy", format: "pct" },
    { key: "stalledDropped", label: "stalled clients dropped in the window", format: "int" },
    { key: "dropFirst", label: "first drop after", format: "s" },
    { key: "dropLast", label: "last drop after (– if one never was)", format: "s" },
    { key: "closeCodes", label: "close seen by the stalled clients", format: "text" },
    { key: "serverReason", label: "why Shoal closed them (its log)", format: "text" },
    { key: "stalledBacklog", label: "bytes a stalled client read on resuming (median)", format: "bytes" },
  ],
  async run(context, column) {
    const p = context.quick ? QUICK : FULL;
    const target = targetNamed(column);
    const pad = "x".repeat(p.padBytes);
    const publisher = new PhasePublisher(await createPublisher(target.publisher, context.redisUrl));
    try {
      const setup = { shoal: { ws: SHOAL_WS }, workers: [p.workers, 1] };
      return await withServer(context, target, setup, async (server, [others, stalled]) => {
        const options = { protocol: target.protocol, concurrency: 100, timeoutMs: 60_000 };
        assertSubscribed(
          await others.connect(Array.from({ length: p.clients - p.stalled }, () => [TOPIC]), options),
          server,
        );
        assertSubscribed(await stalled.connect(Array.from({ length: p.stalled }, () => [TOPIC]), options), server);
        // Baseline: the same load while every client reads.
        await others.begin(1);
        const baselineSent = await publisher.openLoop({
          phase: 1,
          rate: p.rate,
          durationMs: p.baselineMs,
          topicAt: () => TOPIC,
          pad,
        });
        const baseline = await others.end(1, baselineSent.published, SETTLE);
        const ports = await stalled.stall();
        await others.begin(2);

        const window = new ResourceWindow(server.pid, context.loadCpu);
        const started = performance.now();
        const droppedAt = new Map<number, number>();
        const watch = setInterval(() => {
          const states = tcpStatesByRemotePort(server.port);
          for (const port of ports) {
            if (!droppedAt.has(port) && states.get(port) !== TCP_ESTABLISHED) {
              droppedAt.set(port, (performance.now() - started) / 1000);
            }
          }
        }, 100);
        let sent, usage, counts, resumed;
        try {
          sent = await publisher.openLoop({
            phase: 2,
            rate: p.rate,
            durationMs: p.durationMs,
            topicAt: () => TOPIC,
            pad,
          });
          usage = window.finish();
          counts = await others.end(2, sent.published, SETTLE);
          assertRunning(server);
          resumed = await stalled.resume(p.resumeMs);
        } finally {
          clearInterval(watch);
        }
        const windowSeconds = p.durationMs / 1000;
        const drops = [...droppedAt.values()].sort((a, b) => a - b);
        const inWindow = drops.filter((s) => s <= windowSeconds);
        const othersP99 = counts.latency.percentile(0.99);
        const baselineP99 = baseline.latency.percentile(0.99);
        return {
          measurement: {
            othersP50: counts.latency.percentile(0.5),
            othersP99,
            baselineP99,
            othersP99Change: baselineP99 > 0 ? othersP99 / baselineP99 - 1 : null,
            othersLost: counts.lost,
            rssGrowth: usage.rssPeak - usage.rssStart,
            serverCpu: usage.serverCpu,
            othersLoadCpu: usage.loadCpuBusy,
            stalledDropped: inWindow.length,
            dropFirst: drops[0] ?? null,
            dropLast: drops.length === ports.length ? drops[drops.length - 1] : null,
            closeCodes: closeSummary(resumed.map((r) => r.code)),
            serverReason: target.shoal ? shoalReasons(server) : null,
            stalledBacklog: median(resumed.map((r) => r.bytes)),
          },
          details: {
            clients: p.clients,
            stalled: p.stalled,
            publish: { ...sent, published: undefined },
            usage,
            baseline: phaseSummary(baseline),
            others: phaseSummary(counts),
            stalledConnections: resumed.map((r) => ({ ...r, droppedAfterSeconds: droppedAt.get(r.port) ?? null })),
          },
        };
      });
    } finally {
      await publisher.close();
    }
  },
};
