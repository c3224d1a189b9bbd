import { createPublisher } from "../peers/publish.ts";
import { phaseSummary } from "../harness/load_workers.ts";
import { PhasePublisher } from "../harness/publishing.ts";
import { ResourceWindow } from "../harness/resource_window.ts";
import { targetNamed } from "../harness/targets.ts";
import type { Measurement, Metric } from "./scenario.ts";
import { assertRunning, assertSubscribed, type Scenario, withServer } from "./scenario.ts";

const FULL = {
  clients: 5000,
  group: 10,
  workers: 2,
  rates: [2000, 4000, 8000, 16000, 24000, 32000, 40000, 48000],
  stepMs: 4000,
};
const QUICK = { clients: 200, group: 10, workers: 2, rates: [500, 2000], stepMs: 200 };
const TARGET_P99_MS = 50;
/** A step whose publisher reached less than this share of the asked rate says nothing about the server. */
const MIN_RATE_SHARE = 0.95;
const SETTLE = { quietMs: 500, maxWaitMs: 5000 };

/** Every personal and group topic, in a fixed shuffled order so that consecutive messages go to different topics. */
function topics(clients: number, group: number): string[] {
  const names = [
    ...Array.from({ length: clients }, (_, i) => `bench.u${i}`),
    ...Array.from({ length: Math.ceil(clients / group) }, (_, g) => `bench.g${g}`),
  ];
  let seed = 42;
  for (let i = names.length - 1; i > 0; i--) {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    const j = seed % (i + 1);
    [names[i], names[j]] = [names[j], names[i]];
  }
  return names;
}

/** S3: a personal topic per client plus a group topic per ten clients; the highest rate that stays on target. */
export const s3Spread: Scenario = {
  id: "S3",
  title: "Many topics",
  describe(quick) {
    const p = quick ? QUICK : FULL;
    const groups = Math.ceil(p.clients / p.group);
    const perMessage = (p.clients + groups * p.group) / (p.clients + groups);
    return [
      `${p.clients} clients, each subscribed to a personal topic (\`bench.u<i>\`) and a group topic shared by`,
      `${p.group} (\`bench.g<i/${p.group}>\`): ${p.clients + groups} topics.`,
      "Publishes go round-robin over all topics in a fixed shuffled order",
      `(${perMessage.toFixed(2)} deliveries per message on average).`,
      `The rate ladder ${p.rates.join(", ")} msg/s runs ${p.stepMs / 1000} s per step and stops at the first step`,
      `with p99 > ${TARGET_P99_MS} ms, a lost message, or a publisher that reached less than ${MIN_RATE_SHARE * 100} %`,
      "of the rate (then the load side, not the server, was the limit); the result is the highest step that passed.",
    ].join(" ");
  },
  columns: (targets) => targets.map((t) => t.name),
  reference: "bun-limit",
  metrics(quick) {
    const p = quick ? QUICK : FULL;
    const rows: Metric[] = [
      { key: "maxRate", label: `max msg/s with p99 ≤ ${TARGET_P99_MS} ms and no loss`, format: "rate", ratio: true },
      { key: "maxRateDeliveries", label: "deliveries/s at that rate", format: "rate", ratio: true },
      { key: "maxRateCpu", label: "server CPU at that rate", format: "pct" },
      { key: "limit", label: "what stopped the ladder", format: "text" },
    ];
    for (const rate of p.rates) rows.push({ key: `r${rate}P99`, label: `${rate} msg/s: p99 latency`, format: "ms" });
    return rows;
  },
  async run(context, column) {
    const p = context.quick ? QUICK : FULL;
    const target = targetNamed(column);
    const all = topics(p.clients, p.group);
    const publisher = new PhasePublisher(await createPublisher(target.publisher, context.redisUrl));
    try {
      return await withServer(context, target, { workers: [p.workers] }, async (server, [workers]) => {
        const subscriptions = Array.from(
          { length: p.clients },
          (_, i) => [`bench.u${i}`, `bench.g${Math.floor(i / p.group)}`],
        );
        const connected = await workers.connect(subscriptions, {
          protocol: target.protocol,
          concurrency: 100,
          timeoutMs: 60_000,
        });
        assertSubscribed(connected, server);
        const measurement: Measurement = {
          maxRate: 0,
          maxRateDeliveries: null,
          maxRateCpu: null,
          limit: "passed every step",
        };
        const steps: unknown[] = [];
        let phase = 0;
        for (const rate of p.rates) {
          phase++;
          await workers.begin(phase);
          const window = new ResourceWindow(server.pid, context.loadCpu);
          const sent = await publisher.openLoop({
            phase,
            rate,
            durationMs: p.stepMs,
            topicAt: (i) => all[i % all.length],
          });
          const usage = window.finish();
          const counts = await workers.end(phase, sent.published, SETTLE);
          assertRunning(server);
          const p99 = counts.latency.percentile(0.99);
          measurement[`r${rate}P99`] = p99;
          steps.push({ rate, publish: { ...sent, published: undefined }, usage, ...phaseSummary(counts) });
          const limit = sent.rate < rate * MIN_RATE_SHARE
            ? `publisher reached ${Math.round(sent.rate)} of ${rate} msg/s`
            : counts.lost > 0
            ? `${rate} msg/s: ${counts.lost} lost`
            : p99 > TARGET_P99_MS
            ? `${rate} msg/s: p99 ${p99.toFixed(0)} ms`
            : undefined;
          if (limit) {
            measurement.limit = limit;
            break;
          }
          measurement.maxRate = rate;
          measurement.maxRateDeliveries = counts.deliveries / usage.seconds;
          measurement.maxRateCpu = usage.serverCpu;
        }
        return { measurement, details: { clients: p.clients, topics: all.length, steps } };
      });
    } finally {
      await publisher.close();
    }
  },
};
