import { LatencyHistogram } from "../load/histogram.ts";
import type { RecoveryCounts, ResumedConnection, WireProtocol, WorkerCommand, WorkerReport } from "../load/messages.ts";
import { Child } from "./child.ts";
import { cpuSeconds } from "./proc_stats.ts";

export interface LoadWorkersOptions {
  readonly count: number;
  /** The server's port. */
  readonly port: number;
  readonly cwd: string;
  /** The bun executable. */
  readonly bun: string;
  readonly cpu?: number;
  /** Names the workers in error messages. */
  readonly label: string;
}

/** Connections per worker stay well under the ~20,000 open files a process may hold here. */
const MAX_CONNECTIONS_PER_WORKER = 15_000;

/** What every worker counted in one phase, merged. */
export interface MergedPhase {
  readonly deliveries: number;
  readonly duplicates: number;
  readonly lost: number;
  readonly foreign: number;
  readonly closes: Readonly<Record<string, number>>;
  readonly latency: LatencyHistogram;
  readonly settleMs: number;
}

/** What every worker's recovering clients counted (S6), merged. */
export type MergedRecovery =
  & Omit<RecoveryCounts, "recoveryLatency" | "okLatency" | "handshakeLatency" | "liveLatency">
  & {
    readonly recoveryLatency: LatencyHistogram;
    readonly okLatency: LatencyHistogram;
    readonly handshakeLatency: LatencyHistogram;
    readonly liveLatency: LatencyHistogram;
  };

/** A latency histogram as plain numbers, for the raw results. */
export function latencySummary(latency: LatencyHistogram): Record<string, number> {
  return {
    p50: latency.percentile(0.5),
    p90: latency.percentile(0.9),
    p99: latency.percentile(0.99),
    p999: latency.percentile(0.999),
    max: latency.max,
    mean: latency.mean,
    samples: latency.count,
  };
}

/** A merged phase as plain numbers, for the raw results. */
export function phaseSummary(phase: MergedPhase): Record<string, unknown> {
  const { latency, ...counts } = phase;
  return { ...counts, latencyMs: latencySummary(latency) };
}

type Report<T extends WorkerReport["type"]> = Extract<WorkerReport, { type: T }>;

const typeOf = (
  line: unknown,
): unknown => (typeof line === "object" && line !== null ? (line as { type?: unknown }).type : undefined);

/** Matches the report of type `type`, or an "error" report (which fails the command that awaited it). */
const isAnswer = <T extends WorkerReport["type"]>(type: T) => (line: unknown): line is Report<T> | Report<"error"> =>
  typeOf(line) === type || typeOf(line) === "error";

/**
 * Load-generator worker processes (`bench/load/client.ts`) against one server: spreads connections over them,
 * sends each command to all and merges their answers. A worker's "error" report fails the command.
 */
export class LoadWorkers {
  readonly #workers: Child[];
  /** Per worker: the last `progress.complete` of the tracked phase. */
  readonly #complete: number[];
  #onProgress: (() => void) | undefined;

  private constructor(workers: Child[]) {
    this.#workers = workers;
    this.#complete = workers.map(() => 0);
    workers.forEach((worker, i) => {
      worker.onLine = (line) => {
        if (typeOf(line) === "progress") {
          this.#complete[i] = (line as Report<"progress">).complete;
          this.#onProgress?.();
        }
      };
    });
  }

  static async start(options: LoadWorkersOptions): Promise<LoadWorkers> {
    const workers = Array.from({ length: options.count }, (_, i) =>
      new Child(
        `${options.label} load worker ${i + 1}`,
        [options.bun, "run", "bench/load/client.ts", "--port", String(options.port)],
        { cwd: options.cwd, cpu: options.cpu, stdin: true },
      ));
    const pool = new LoadWorkers(workers);
    try {
      await Promise.all(workers.map((w) => w.waitFor(isAnswer("started"), 15_000, "worker did not start")));
    } catch (error) {
      await pool.kill();
      throw error;
    }
    return pool;
  }

  get pids(): number[] {
    return this.#workers.map((w) => w.pid);
  }

  /** CPU seconds all workers used so far. */
  cpuSeconds(): number {
    return this.#workers.reduce((sum, w) => sum + (w.running ? cpuSeconds(w.pid) : 0), 0);
  }

  /** The highest sequence number every tracked subscription of every worker has reached. */
  get complete(): number {
    return Math.min(...this.#complete);
  }

  /** Called on every progress report (closed-loop publishing waits on it). */
  set onProgress(callback: (() => void) | undefined) {
    this.#onProgress = callback;
  }

  /**
   * Open one connection per entry (its subscription names), spread in contiguous slices over the workers, each
   * setting up `concurrency` at a time; resolves when every worker is done.
   */
  async connect(
    subscriptions: readonly (readonly string[])[],
    options: { readonly protocol: WireProtocol; readonly concurrency: number; readonly timeoutMs: number },
  ): Promise<{ ok: number; failed: number; errors: string[] }> {
    const n = this.#workers.length;
    if (subscriptions.length > n * MAX_CONNECTIONS_PER_WORKER) {
      throw new RangeError(`${subscriptions.length} connections need more than ${n} workers`);
    }
    const answers = await Promise.all(this.#workers.map((worker, i) => {
      const slice = subscriptions.slice(
        Math.floor((i * subscriptions.length) / n),
        Math.floor(((i + 1) * subscriptions.length) / n),
      );
      return this.#ask(
        worker,
        { cmd: "connect", subscriptions: slice, ...options },
        "connected",
        options.timeoutMs + 10_000,
      );
    }));
    return {
      ok: answers.reduce((sum, a) => sum + a.ok, 0),
      failed: answers.reduce((sum, a) => sum + a.failed, 0),
      errors: answers.flatMap((a) => a.errors),
    };
  }

  /**
   * S6: open `count` recovering clients of the history subscription `topic`, spread evenly over the workers (see
   * `RecoveringSubscriber`).
   */
  async connectRecovering(
    topic: string,
    count: number,
    options: { readonly concurrency: number; readonly timeoutMs: number },
  ): Promise<{ ok: number; failed: number; errors: string[] }> {
    const n = this.#workers.length;
    if (count > n * MAX_CONNECTIONS_PER_WORKER) {
      throw new RangeError(`${count} connections need more than ${n} workers`);
    }
    const answers = await Promise.all(this.#workers.map((worker, i) => {
      const share = Math.floor(((i + 1) * count) / n) - Math.floor((i * count) / n);
      return this.#ask(
        worker,
        { cmd: "recoverers", topic, count: share, ...options },
        "connected",
        options.timeoutMs + 10_000,
      );
    }));
    return {
      ok: answers.reduce((sum, a) => sum + a.ok, 0),
      failed: answers.reduce((sum, a) => sum + a.failed, 0),
      errors: answers.flatMap((a) => a.errors),
    };
  }

  /**
   * Drop `share` of every worker's recovering clients; each recovers after `offlineMs`. Resolves with the count. A
   * worker far behind its sockets (an overloaded run) may answer only seconds later: it has a minute.
   */
  async drop(share: number, offlineMs: number): Promise<{ count: number; skipped: number }> {
    const answers = await Promise.all(
      this.#workers.map((w) => this.#ask(w, { cmd: "drop", share, offlineMs }, "dropped", 60_000)),
    );
    return {
      count: answers.reduce((sum, a) => sum + a.count, 0),
      skipped: answers.reduce((sum, a) => sum + a.skipped, 0),
    };
  }

  /** End S6's window (offsets `first` to `last`): each worker waits for its clients to catch up; merged counts. */
  async endRecovery(
    first: number,
    last: number,
    options: { readonly quietMs: number; readonly maxWaitMs: number },
  ): Promise<MergedRecovery> {
    const answers = await Promise.all(
      this.#workers.map((w) =>
        this.#ask(w, { cmd: "recoveryEnd", first, last, ...options }, "recovery", options.maxWaitMs + 10_000)
      ),
    );
    const merged = (key: "recoveryLatency" | "okLatency" | "handshakeLatency" | "liveLatency") => {
      const histogram = new LatencyHistogram();
      for (const answer of answers) histogram.add(answer[key]);
      return histogram;
    };
    const closes: Record<string, number> = {};
    for (const answer of answers) {
      for (const [code, n] of Object.entries(answer.closes)) closes[code] = (closes[code] ?? 0) + n;
    }
    const sum = (
      key: Exclude<
        keyof RecoveryCounts,
        "recoveryLatency" | "okLatency" | "handshakeLatency" | "liveLatency" | "closes"
      >,
    ) => answers.reduce((s, a) => s + a[key], 0);
    return {
      clients: sum("clients"),
      expected: sum("expected"),
      delivered: sum("delivered"),
      holes: sum("holes"),
      undelivered: sum("undelivered"),
      duplicates: sum("duplicates"),
      outOfOrder: sum("outOfOrder"),
      foreign: sum("foreign"),
      drops: sum("drops"),
      recovered: sum("recovered"),
      notRecovered: sum("notRecovered"),
      unrecoverable: sum("unrecoverable"),
      insufficientState: sum("insufficientState"),
      reconnectFailures: sum("reconnectFailures"),
      reconnects: sum("reconnects"),
      recoveringSubscribes: sum("recoveringSubscribes"),
      replayed: sum("replayed"),
      awaitingLive: sum("awaitingLive"),
      behind: sum("behind"),
      recoveryLatency: merged("recoveryLatency"),
      okLatency: merged("okLatency"),
      handshakeLatency: merged("handshakeLatency"),
      liveLatency: merged("liveLatency"),
      closes,
      settleMs: Math.max(...answers.map((a) => a.settleMs)),
    };
  }

  /** Start counting phase `id` in every worker; resolves once all have. */
  async begin(id: number, track = false): Promise<void> {
    this.#complete.fill(0);
    await Promise.all(this.#workers.map((w) => this.#ask(w, { cmd: "phase", id, track }, "begun", 10_000)));
  }

  /** End phase `id`: each worker waits for what was `published` (see `WorkerCommand` "end"); merged counts. */
  async end(
    id: number,
    published: Readonly<Record<string, number>>,
    options: { readonly quietMs: number; readonly maxWaitMs: number },
  ): Promise<MergedPhase> {
    const answers = await Promise.all(
      this.#workers.map((w) =>
        this.#ask(w, { cmd: "end", id, published, ...options }, "phase", options.maxWaitMs + 10_000)
      ),
    );
    const latency = new LatencyHistogram();
    const closes: Record<string, number> = {};
    for (const answer of answers) {
      latency.add(answer.latency);
      for (const [code, n] of Object.entries(answer.closes)) closes[code] = (closes[code] ?? 0) + n;
    }
    const sum = (key: "deliveries" | "duplicates" | "lost" | "foreign") => answers.reduce((s, a) => s + a[key], 0);
    return {
      deliveries: sum("deliveries"),
      duplicates: sum("duplicates"),
      lost: sum("lost"),
      foreign: sum("foreign"),
      closes,
      latency,
      settleMs: Math.max(...answers.map((a) => a.settleMs)),
    };
  }

  /** Stop reading on every connection; resolves with their local ports. */
  async stall(): Promise<number[]> {
    const answers = await Promise.all(this.#workers.map((w) => this.#ask(w, { cmd: "stall" }, "stalled", 10_000)));
    return answers.flatMap((a) => [...a.ports]);
  }

  /** Read again and wait up to `timeoutMs` for the server's close of each connection. */
  async resume(timeoutMs: number): Promise<ResumedConnection[]> {
    const answers = await Promise.all(
      this.#workers.map((w) => this.#ask(w, { cmd: "resume", timeoutMs }, "resumed", timeoutMs + 30_000)),
    );
    return answers.flatMap((a) => [...a.closes]);
  }

  /** Close every connection and let the workers exit; resolves with the closes nobody asked for, by code. */
  async close(): Promise<Record<string, number>> {
    const closes: Record<string, number> = {};
    await Promise.all(this.#workers.map(async (w) => {
      if (!w.running) return;
      try {
        const answer = await this.#ask(w, { cmd: "close" }, "closed", 10_000);
        for (const [code, n] of Object.entries(answer.unexpectedCloses)) closes[code] = (closes[code] ?? 0) + n;
      } finally {
        await w.stop("SIGTERM", 5000).catch(() => {});
      }
    }));
    return closes;
  }

  /** Kill every worker at once. */
  async kill(): Promise<void> {
    await Promise.all(this.#workers.map((w) => w.stop("SIGKILL", 5000).catch(() => {})));
  }

  async #ask<T extends WorkerReport["type"]>(
    worker: Child,
    command: WorkerCommand,
    answer: T,
    timeoutMs: number,
  ): Promise<Report<T>> {
    const reply = worker.waitFor(isAnswer(answer), timeoutMs, `no "${answer}" answer to ${command.cmd}`);
    worker.write(JSON.stringify(command));
    const line = await reply;
    if (line.type === "error") throw worker.error(`${command.cmd} failed: ${(line as Report<"error">).message}`);
    return line as Report<T>;
  }
}
