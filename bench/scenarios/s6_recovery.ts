import { randomBytes } from "node:crypto";
import { latencySummary } from "../harness/load_workers.ts";
import { PhasePublisher } from "../harness/publishing.ts";
import { ResourceWindow } from "../harness/resource_window.ts";
import { targetNamed } from "../harness/targets.ts";
import { createHistoryPublisher } from "../peers/publish.ts";
import { assertRunning, assertSubscribed, type Measurement, type Scenario, sleep, withServer } from "./scenario.ts";

/**
 * `rate` is the column `shoal-bun`'s, `lightRate` the column `shoal-bun light`'s. Drops happen during `dropMs`; the
 * publisher goes on for `tailMs` more, so the last recoveries have live messages to reach.
 */
const FULL = {
  clients: 1000,
  workers: 2,
  rate: 1000,
  lightRate: 100,
  dropMs: 30_000,
  tailMs: 5000,
  dropEveryMs: 2000,
  dropShare: 0.1,
  offlineMs: 500,
  history: { size: 10_000, ttl: 60 },
};
const QUICK = {
  clients: 100,
  workers: 2,
  rate: 200,
  lightRate: 50,
  dropMs: 2000,
  tailMs: 500,
  dropEveryMs: 500,
  dropShare: 0.1,
  offlineMs: 100,
  history: { size: 2000, ttl: 60 },
};
/** S6 runs Shoal on Bun only (history is Shoal's own feature; the peers have none), at two rates. */
const PEER = "shoal-bun";
const LIGHT = `${PEER} light`;
const SETTLE = { quietMs: 1000, maxWaitMs: 15_000 };

/**
 * Shoal's /metrics counters of history and recovery (0 when absent), or undefined when /metrics did not answer in
 * time (an overloaded run: the counters are a cross-check, not the measurement).
 */
async function historyMetrics(port: number): Promise<Record<string, number> | undefined> {
  let text: string;
  try {
    const response = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(30_000) });
    text = await response.text();
  } catch {
    return undefined;
  }
  const value = (pattern: RegExp) => Number(pattern.exec(text)?.[1] ?? 0);
  return {
    recovered: value(/^shoal_recoveries_total\{result="recovered"\} (\S+)$/m),
    notRecovered: value(/^shoal_recoveries_total\{result="not_recovered"\} (\S+)$/m),
    replayed: value(/^shoal_history_replayed_messages_total (\S+)$/m),
    insufficientState: value(/^shoal_history_insufficient_state_total (\S+)$/m),
  };
}

/**
 * S6: 1,000 clients on one history subscription while a tenth of them drop their connection every 2 s and come
 * back with `recover`: is every offset delivered exactly once, and how long does a recovery take.
 */
export const s6Recovery: Scenario = {
  id: "S6",
  title: "History: recovery after dropped connections",
  describe(quick) {
    const p = quick ? QUICK : FULL;
    return [
      `${p.clients} clients subscribe to one subscription (\`bench.recovery.<run>\`) of a service with`,
      `\`history: ${JSON.stringify(p.history)}\`, Shoal on Bun with the Redis broker.`,
      `The publisher (on the load CPU, as in every scenario) appends ${p.rate} msg/s (column \`${PEER}\`, the load`,
      `the issue asks for) or ${p.lightRate} msg/s (\`${LIGHT}\`) for ${(p.dropMs + p.tailMs) / 1000} s through`,
      "Redis with `scripts/shoal_history_publish.lua` (EVALSHA: append to the stream and PUBLISH in one step, what a",
      "service does; the other scenarios PUBLISH directly), so every frame carries `offset` and `epoch`.",
      `Every ${p.dropEveryMs / 1000} s for the first ${p.dropMs / 1000} s, ${p.dropShare * 100} % of the clients`,
      "(picked at random among those not recovering) destroy their TCP connection without a closing handshake,",
      `stay away ${p.offlineMs} ms, connect again and subscribe with \`recover\` from the last offset they`,
      "received. Delivered is the share of client × offset pairs received at least once (each client expects every",
      "offset after its first subscribe OK); a hole is an offset a client never received although a later one came,",
      "undelivered an offset past the last one it received when counting stopped",
      `(${SETTLE.maxWaitMs / 1000} s at most after the publisher); duplicates are offsets received again, out of`,
      "order an offset received after a higher one. `recovered: false` (the client had fallen further behind than",
      "the history holds) excuses the offsets between its position and the OK's; the row after the holes subtracts",
      "them. Recovery latency runs from the reconnect (the new TCP connect) to the first live message (one with",
      "`received_at`) after the replay, for `recovered: true`; the OK latency to the recovering subscribe's OK.",
      "Replayed counts the messages a client received between a recovered OK and its first live message (the",
      "stored ones, and those held while the subscribe was set up); Shoal's own count of stored messages replayed",
      "is from its /metrics. Live latency is publish → client of live messages: when it reaches seconds, the clients",
      "were that far behind, and so was every recovery's starting point. Load CPU busy near 100 % means the load",
      "side (clients, Redis with its scripts, the publisher) set the pace.",
    ].join(" ");
  },
  columns: (targets) => (targets.some((t) => t.name === PEER) ? [PEER, LIGHT] : []),
  reference: PEER,
  metrics: () => [
    { key: "deliveredShare", label: "delivered (every offset once per client)", format: "pct3" },
    { key: "holes", label: "holes (an offset never received, a later one was)", format: "int" },
    { key: "unexplainedHoles", label: "holes not excused by a recovered: false", format: "int" },
    { key: "undelivered", label: "undelivered at the end (past a client's last offset)", format: "int" },
    { key: "duplicates", label: "duplicates", format: "int" },
    { key: "outOfOrder", label: "out of order", format: "int" },
    { key: "drops", label: "connections dropped", format: "int" },
    { key: "recovered", label: "recovered: true", format: "int" },
    { key: "notRecovered", label: "recovered: false", format: "int" },
    { key: "insufficientState", label: "Insufficient state. notices", format: "int" },
    { key: "awaitingLive", label: "recoveries without a live message by the end", format: "int" },
    { key: "recoveryP50", label: "recovery latency p50 (reconnect → first live message)", format: "ms" },
    { key: "recoveryP99", label: "recovery latency p99", format: "ms" },
    { key: "recoveryMax", label: "recovery latency max", format: "ms" },
    { key: "okP50", label: "reconnect → recovering subscribe's OK p50", format: "ms" },
    { key: "okP99", label: "reconnect → recovering subscribe's OK p99", format: "ms" },
    { key: "replayed", label: "messages replayed (client count)", format: "int" },
    { key: "replayedPerRecovery", label: "replayed per recovery", format: "float" },
    { key: "serverReplayed", label: "stored messages replayed (Shoal's metric)", format: "int" },
    { key: "liveP50", label: "live messages: p50 latency", format: "ms" },
    { key: "liveP99", label: "live messages: p99 latency", format: "ms" },
    { key: "publishRate", label: "appends/s reached", format: "rate" },
    { key: "serverCpu", label: "server CPU", format: "pct" },
    { key: "loadCpu", label: "load CPU busy", format: "pct" },
  ],
  async run(context, column) {
    const p = context.quick ? QUICK : FULL;
    const target = targetNamed(PEER);
    const rate = column === LIGHT ? p.lightRate : p.rate;
    // A subscription of its own per run: Redis lives for the whole run, and so would an older run's history.
    const topic = `bench.recovery.${randomBytes(4).toString("hex")}`;
    const history = await createHistoryPublisher(context.redisUrl, p.history);
    const publisher = new PhasePublisher(history);
    const setup = { shoal: { service: { history: p.history }, metrics: { prometheus: {} } }, workers: [p.workers] };
    try {
      return await withServer(context, target, setup, async (server, [workers]) => {
        assertSubscribed(
          await workers.connectRecovering(topic, p.clients, { concurrency: 100, timeoutMs: 60_000 }),
          server,
        );
        const before = await historyMetrics(server.port);
        history.resetRanges();
        const window = new ResourceWindow(server.pid, context.loadCpu);
        const started = performance.now();
        const publishing = publisher.openLoop({
          phase: 1,
          rate,
          durationMs: p.dropMs + p.tailMs,
          topicAt: () => topic,
        });
        const rounds: { atMs: number; dropped: number; skipped: number }[] = [];
        for (let at = p.dropEveryMs; at <= p.dropMs; at += p.dropEveryMs) {
          await sleep(Math.max(0, started + at - performance.now()));
          const { count, skipped } = await workers.drop(p.dropShare, p.offlineMs);
          rounds.push({ atMs: Math.round(performance.now() - started), dropped: count, skipped });
        }
        const sent = await publishing;
        const usage = window.finish();
        assertRunning(server);
        const range = history.appended(topic);
        if (!range || sent.failures > 0) {
          throw new Error(`the history publisher failed: ${sent.failures} failures (${String(publisher.lastError)})`);
        }
        if (range.epochChanges > 0 || range.count !== range.last - range.first + 1) {
          context.note(`the publisher's offsets were not contiguous: ${JSON.stringify(range)}`);
        }
        const counts = await workers.endRecovery(range.first, range.last, SETTLE);
        assertRunning(server);
        const after = await historyMetrics(server.port);
        const shoalCounts = before && after
          ? Object.fromEntries(Object.entries(after).map(([k, v]) => [k, v - (before[k] ?? 0)]))
          : undefined;
        if (!shoalCounts) context.note("Shoal's /metrics did not answer within 30 s");
        // The clients cannot have read more OKs than Shoal sent (fewer, when some were still on their way).
        else if (shoalCounts.recovered < counts.recovered || shoalCounts.notRecovered < counts.notRecovered) {
          context.note(
            `Shoal counted ${shoalCounts.recovered} recovered and ${shoalCounts.notRecovered} not recovered, the ` +
              `clients ${counts.recovered} and ${counts.notRecovered}`,
          );
        }
        const measurement: Measurement = {
          deliveredShare: counts.expected > 0 ? counts.delivered / counts.expected : null,
          holes: counts.holes,
          unexplainedHoles: counts.holes - counts.unrecoverable,
          undelivered: counts.undelivered,
          duplicates: counts.duplicates,
          outOfOrder: counts.outOfOrder,
          drops: counts.drops,
          recovered: counts.recovered,
          notRecovered: counts.notRecovered,
          insufficientState: counts.insufficientState,
          awaitingLive: counts.awaitingLive,
          recoveryP50: counts.recoveryLatency.percentile(0.5),
          recoveryP99: counts.recoveryLatency.percentile(0.99),
          recoveryMax: counts.recoveryLatency.count > 0 ? counts.recoveryLatency.max : null,
          okP50: counts.okLatency.percentile(0.5),
          okP99: counts.okLatency.percentile(0.99),
          replayed: counts.replayed,
          replayedPerRecovery: counts.recovered > 0 ? counts.replayed / counts.recovered : null,
          serverReplayed: shoalCounts?.replayed ?? null,
          liveP50: counts.liveLatency.percentile(0.5),
          liveP99: counts.liveLatency.percentile(0.99),
          publishRate: sent.rate,
          serverCpu: usage.serverCpu,
          loadCpu: usage.loadCpuBusy,
        };
        const { recoveryLatency, okLatency, handshakeLatency, liveLatency, ...rest } = counts;
        return {
          measurement,
          details: {
            topic,
            rate,
            history: p.history,
            appended: range,
            unconfirmedAppends: sent.sent - range.count,
            publish: { ...sent, published: undefined },
            rounds,
            usage,
            serverMetrics: shoalCounts ?? null,
            ...rest,
            recoveryLatencyMs: latencySummary(recoveryLatency),
            okLatencyMs: latencySummary(okLatency),
            handshakeLatencyMs: latencySummary(handshakeLatency),
            liveLatencyMs: latencySummary(liveLatency),
          },
        };
      });
    } finally {
      await publisher.close();
    }
  },
};
