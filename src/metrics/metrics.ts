import { JWT_FAILURE_REASONS } from "../services/jwt_verifier.ts";
import { getLogger } from "@logtape/logtape";
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import type { Config } from "../config.ts";
import { ADMIN_COMMANDS, type Observer, REFUSAL_REASONS } from "../core/observer.ts";

const log = getLogger(["shoal", "metrics"]);

/** Seconds; service callbacks range from sub-millisecond to `http.timeout × http.tries` plus waits. */
const CALLBACK_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/**
 * SocketShark's metrics (same names under the `socketshark` prefix) plus Shoal's own, in a Prometheus registry
 * of their own with the default process metrics.
 */
export class PrometheusMetrics {
  readonly registry = new Registry();
  readonly observer: Observer;

  constructor(prefix: string) {
    const p = prefix === "" ? "" : `${prefix}_`;
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    const state = new Gauge({ name: `${p}service_state`, help: "Service status", registers });
    const connections = new Gauge({ name: `${p}connection_count`, help: "Active connections", registers });
    const connectionTotal = new Counter({ name: `${p}connection_total`, help: "Connection total", registers });
    const events = new Counter({
      name: `${p}event_success_counter`,
      help: "Event success counter",
      labelNames: ["event", "status"],
      registers,
    });
    const received = new Counter({
      name: `${p}messages_received_total`,
      help: "Broker messages for channels with local subscribers",
      registers,
    });
    const delivered = new Counter({
      name: `${p}messages_delivered_total`,
      help: "Message frames sent to clients",
      registers,
    });
    const filtered = new Counter({
      name: `${p}messages_filtered_total`,
      help: "Messages not delivered to a subscription, by reason (fields, order, throttle)",
      labelNames: ["reason"],
      registers,
    });
    const dropped = new Counter({
      name: `${p}connections_dropped_total`,
      help: "Connections closed for not keeping up, by reason",
      labelNames: ["reason"],
      registers,
    });
    const brokerLost = new Counter({
      name: `${p}broker_disconnects_total`,
      help: "Times the broker connection was lost (each one followed by a reconnect, or a shutdown)",
      registers,
    });
    const callbacks = new Histogram({
      name: `${p}callback_duration_seconds`,
      help: "Service callback duration including retries, by callback and outcome (ok, error, unavailable)",
      labelNames: ["callback", "outcome"],
      buckets: CALLBACK_BUCKETS,
      registers,
    });
    const refused = new Counter({
      name: `${p}refusals_total`,
      help: "Connections, frames, events and callbacks refused by a limit (extensions E5), by reason",
      labelNames: ["reason"],
      registers,
    });
    const recoveries = new Counter({
      name: `${p}recoveries_total`,
      help: "Subscribes with recover on a history service (extension E1), by result (recovered, not_recovered)",
      labelNames: ["result"],
      registers,
    });
    const replayed = new Counter({
      name: `${p}history_replayed_messages_total`,
      help: "Messages delivered from history by recoveries",
      registers,
    });
    const gaps = new Counter({
      name: `${p}history_insufficient_state_total`,
      help: "History subscriptions ended with Insufficient state. (a hole in the live stream)",
      registers,
    });
    const appends = new Histogram({
      name: `${p}history_append_duration_seconds`,
      help: "Appends to a history through POST /publish (append and publish in one step), seconds",
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
      registers,
    });
    const jwtFailures = new Counter({
      name: `${p}jwt_failures_total`,
      help: "JWTs refused at auth (extension E2), by reason",
      labelNames: ["reason"],
      registers,
    });
    for (const reason of JWT_FAILURE_REASONS) jwtFailures.labels(reason).inc(0);
    const adminCommands = new Counter({
      name: `${p}admin_commands_total`,
      help: "Admin API requests accepted by this node (extension E4), by command",
      labelNames: ["command"],
      registers,
    });
    for (const command of ADMIN_COMMANDS) adminCommands.labels(command).inc(0);
    const presenceQueries = new Counter({
      name: `${p}presence_queries_total`,
      help: "Presence reads (extension E3), by source (event: a client's presence event; api: the admin API)",
      labelNames: ["source"],
      registers,
    });
    presenceQueries.labels("event").inc(0);
    presenceQueries.labels("api").inc(0);
    // Label sets known up front are exported at 0, so rates and alerts work before the first occurrence.
    recoveries.labels("recovered").inc(0);
    recoveries.labels("not_recovered").inc(0);
    for (const reason of ["fields", "order", "throttle"]) filtered.labels(reason).inc(0);
    dropped.labels("backpressure").inc(0);
    for (const reason of REFUSAL_REASONS) refused.labels(reason).inc(0);
    this.observer = {
      ready: (ready) => state.set(ready ? 1 : 0),
      connectionOpened: () => {
        connections.inc();
        connectionTotal.inc();
      },
      connectionClosed: () => connections.dec(),
      event: (name, success) => events.labels(name, success ? "success" : "error").inc(),
      received: () => received.inc(),
      delivered: (count) => delivered.inc(count),
      filtered: (reason) => filtered.labels(reason).inc(),
      dropped: (reason) => dropped.labels(reason).inc(),
      refused: (reason) => refused.labels(reason).inc(),
      brokerLost: () => brokerLost.inc(),
      callback: (name, outcome, seconds) => callbacks.labels(name, outcome).observe(seconds),
      recovery: (recovered, count) => {
        recoveries.labels(recovered ? "recovered" : "not_recovered").inc();
        replayed.inc(count);
      },
      historyGap: () => gaps.inc(),
      historyAppend: (seconds) => appends.observe(seconds),
      jwtFailure: (reason) => jwtFailures.labels(reason).inc(),
      presenceQuery: (source) => presenceQueries.labels(source).inc(),
      adminCommand: (command) => adminCommands.labels(command).inc(),
    };
  }

  render(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

/** SocketShark's `log` metrics provider: a debug `metrics` line per change. */
export function logMetricsObserver(): Observer {
  let active = 0;
  let total = 0;
  return {
    ready: (ready) => log.debug("metrics", { ready }),
    connectionOpened: () => log.debug("metrics", { active_connections: ++active, total_connections: ++total }),
    connectionClosed: () => log.debug("metrics", { active_connections: --active, total_connections: total }),
    event: (evt, success) => log.debug("metrics", { evt, success }),
  };
}

/** One observer calling each of several. */
export function combineObservers(observers: readonly Observer[]): Observer {
  if (observers.length === 1) return observers[0];
  const combined: Record<string, (...args: never[]) => void> = {};
  for (const observer of observers) {
    for (const [key, hook] of Object.entries(observer) as [string, (...args: never[]) => void][]) {
      const previous = combined[key];
      combined[key] = previous ? (...args) => (previous(...args), hook(...args)) : hook;
    }
  }
  return combined as Observer;
}

/** The metrics a config asks for: the Prometheus registry (if any) and the observer for the router. */
export function createMetrics(config: Config["metrics"]): { prometheus?: PrometheusMetrics; observer: Observer } {
  const prometheus = config.prometheus ? new PrometheusMetrics(config.prometheus.prefix ?? "shoal") : undefined;
  const observers: Observer[] = [];
  if (prometheus) observers.push(prometheus.observer);
  if (config.log) observers.push(logMetricsObserver());
  return { prometheus, observer: observers.length ? combineObservers(observers) : {} };
}
