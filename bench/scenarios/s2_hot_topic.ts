import { createHistoryPublisher, createPublisher, type HistorySettings } from "../peers/publish.ts";
import { phaseSummary } from "../harness/load_workers.ts";
import { PhasePublisher } from "../harness/publishing.ts";
import { ResourceWindow } from "../harness/resource_window.ts";
import { type Target, targetNamed } from "../harness/targets.ts";
import type { Measurement, Metric, RunContext } from "./scenario.ts";
import { assertRunning, assertSubscribed, type Scenario, withServer } from "./scenario.ts";

const FULL = { clients: 1000, workers: 2, window: 32, closedMs: 10_000, rates: [30, 100, 300, 1000], stepMs: 4000 };
const QUICK = { clients: 100, workers: 2, window: 32, closedMs: 300, rates: [30, 300], stepMs: 200 };
/** A step past this p99, or with undelivered messages or closed clients, saturated the server: the ladder stops. */
const SATURATED_P99_MS = 1000;
const TOPIC = "bench.hot";
const SETTLE = { quietMs: 500, maxWaitMs: 5000 };
/** S2H: the history of the hot topic's service, and the column that has it. */
const HISTORY: HistorySettings = { size: 1000, ttl: 60 };
const HISTORY_PEER = "shoal-bun";
const HISTORY_COLUMN = `${HISTORY_PEER} history`;

/** S2: one hot topic: closed-loop throughput and its CPU cost, then an open-loop rate ladder. */
export const s2HotTopic: Scenario = {
  id: "S2",
  title: "One hot topic",
  describe(quick) {
    const p = quick ? QUICK : FULL;
    return [
      `${p.clients} clients subscribe to \`${TOPIC}\`.`,
      `Closed loop: for ${p.closedMs / 1000} s the publisher keeps ${p.window} messages in flight beyond the last one`,
      "every client has received, so it publishes as fast as deliveries keep up; deliveries/s counts messages every",
      "client received × clients.",
      `Open loop: ${p.rates.join(", ")} msg/s for ${p.stepMs / 1000} s each, stopping after a step that saturated`,
      `(p99 over ${SATURATED_P99_MS / 1000} s, undelivered messages or closed clients; later steps show –).`,
      "Latency is publish → client, through Redis and the server.",
      `Undelivered counts deliveries that had not arrived ${SETTLE.maxWaitMs / 1000} s after the step (lost, or very`,
      "late). Messages are `{seq, t, p}` (about 60 bytes of data). Load CPU busy near 100 % means the load side",
      "(clients, Redis and publisher on one core) was the limit, not the server.",
    ].join(" ");
  },
  columns: (targets) => targets.map((t) => t.name),
  reference: "bun-limit",
  metrics: hotTopicMetrics,
  run: (context, column) => runHotTopic(context, targetNamed(column)),
};

/**
 * S2H: S2 on Shoal under Bun with the hot topic's service keeping a history, beside the same run without: what
 * appending (the history script in Redis) and offset-carrying frames cost per delivery.
 */
export const s2HotTopicHistory: Scenario = {
  id: "S2H",
  title: "One hot topic, history on and off",
  describe(quick) {
    const history = JSON.stringify(HISTORY);
    return [
      `S2 on Shoal under Bun, twice: \`${HISTORY_PEER}\` exactly as in S2 (plain \`PUBLISH\`, history off), and`,
      `\`${HISTORY_COLUMN}\`, where the \`bench\` service has \`history: ${history}\` and the publisher appends every`,
      "message with `scripts/shoal_history_publish.lua` (EVALSHA: XADD with MAXLEN, the meta hash, PUBLISH of the",
      "envelope), so each frame carries `offset` and `epoch` and Shoal checks every offset of the live stream.",
      "×N is history on / off. The script runs in Redis on the load CPU: a lower deliveries/s with the load CPU at",
      "100 % is the load side's cost, deliveries per server CPU-second is Shoal's. S2's own description:",
      s2HotTopic.describe(quick),
    ].join(" ");
  },
  columns: (targets) => (targets.some((t) => t.name === HISTORY_PEER) ? [HISTORY_PEER, HISTORY_COLUMN] : []),
  reference: HISTORY_PEER,
  metrics: hotTopicMetrics,
  run: (context, column) =>
    runHotTopic(context, targetNamed(HISTORY_PEER), column === HISTORY_COLUMN ? HISTORY : undefined),
};

function hotTopicMetrics(quick: boolean): Metric[] {
  const p = quick ? QUICK : FULL;
  const rows: Metric[] = [
    { key: "closedDeliveriesPerSecond", label: "closed loop: deliveries/s", format: "rate", ratio: true },
    {
      key: "deliveriesPerCpuSecond",
      label: "closed loop: deliveries per server CPU-second",
      format: "rate",
      ratio: true,
    },
    { key: "closedServerCpu", label: "closed loop: server CPU", format: "pct" },
    { key: "closedLoadCpu", label: "closed loop: load CPU busy", format: "pct" },
    { key: "closedP99", label: "closed loop: p99 latency", format: "ms" },
  ];
  for (const rate of p.rates) {
    rows.push(
      { key: `r${rate}P50`, label: `${rate} msg/s: p50 latency`, format: "ms", ratio: true },
      { key: `r${rate}P99`, label: `${rate} msg/s: p99 latency`, format: "ms", ratio: true },
      { key: `r${rate}Lost`, label: `${rate} msg/s: undelivered`, format: "int" },
      { key: `r${rate}Cpu`, label: `${rate} msg/s: server CPU`, format: "pct" },
      { key: `r${rate}Load`, label: `${rate} msg/s: load CPU busy`, format: "pct" },
    );
  }
  return rows;
}

async function runHotTopic(
  context: RunContext,
  target: Target,
  history?: HistorySettings,
): Promise<{ measurement: Measurement; details: unknown }> {
  const p = context.quick ? QUICK : FULL;
  const publisher = new PhasePublisher(
    history
      ? await createHistoryPublisher(context.redisUrl, history)
      : await createPublisher(target.publisher, context.redisUrl),
  );
  const setup = { shoal: history && { service: { history } }, workers: [p.workers] };
  try {
    return await withServer(context, target, setup, async (server, [workers]) => {
      const connected = await workers.connect(Array.from({ length: p.clients }, () => [TOPIC]), {
        protocol: target.protocol,
        concurrency: 100,
        timeoutMs: 60_000,
      });
      assertSubscribed(connected, server);
      const measurement: Measurement = {};
      const steps: unknown[] = [];

      let phase = 1;
      await workers.begin(phase, true);
      let wake: (() => void) | undefined;
      workers.onProgress = () => wake?.();
      let probe = new ResourceWindow(server.pid, context.loadCpu);
      const closed = await publisher.closedLoop({
        phase,
        topic: TOPIC,
        window: p.window,
        durationMs: p.closedMs,
        complete: () => workers.complete,
        progress: () => new Promise<void>((resolve) => (wake = resolve)),
      });
      let usage = probe.finish();
      workers.onProgress = undefined;
      let counts = await workers.end(phase, closed.published, SETTLE);
      assertRunning(server);
      const delivered = closed.completed * p.clients;
      measurement.closedDeliveriesPerSecond = delivered / usage.seconds;
      measurement.closedMessagesPerSecond = closed.completed / usage.seconds;
      measurement.deliveriesPerCpuSecond = usage.serverCpuSeconds > 0 ? delivered / usage.serverCpuSeconds : null;
      measurement.closedServerCpu = usage.serverCpu;
      measurement.closedLoadCpu = usage.loadCpuBusy;
      measurement.closedP99 = counts.latency.percentile(0.99);
      measurement.closedLost = counts.lost;
      steps.push({ kind: "closed", publish: { ...closed, published: undefined }, usage, ...phaseSummary(counts) });

      for (const rate of p.rates) {
        phase++;
        await workers.begin(phase);
        probe = new ResourceWindow(server.pid, context.loadCpu);
        const sent = await publisher.openLoop({ phase, rate, durationMs: p.stepMs, topicAt: () => TOPIC });
        usage = probe.finish();
        counts = await workers.end(phase, sent.published, SETTLE);
        assertRunning(server);
        measurement[`r${rate}P50`] = counts.latency.percentile(0.5);
        measurement[`r${rate}P99`] = counts.latency.percentile(0.99);
        measurement[`r${rate}Lost`] = counts.lost;
        measurement[`r${rate}Cpu`] = usage.serverCpu;
        measurement[`r${rate}Load`] = usage.loadCpuBusy;
        measurement[`r${rate}Sent`] = sent.rate;
        steps.push({
          kind: "open",
          rate,
          publish: { ...sent, published: undefined },
          usage,
          ...phaseSummary(counts),
        });
        const closes = Object.values(counts.closes).reduce((a, b) => a + b, 0);
        if (counts.latency.percentile(0.99) > SATURATED_P99_MS || counts.lost > 0 || closes > 0) break;
      }
      return { measurement, details: { clients: p.clients, steps } };
    });
  } finally {
    await publisher.close();
  }
}
