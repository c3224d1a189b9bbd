import { freePort } from "../harness/free_port.ts";
import { LoadWorkers } from "../harness/load_workers.ts";
import { ServerUnderTest, type ShoalConfigExtras } from "../harness/server_under_test.ts";
import type { Target, Tools } from "../harness/targets.ts";

/** What every scenario run gets from the runner. */
export interface RunContext {
  readonly quick: boolean;
  /** The repository root. */
  readonly cwd: string;
  readonly tools: Tools;
  readonly redisUrl: string;
  /** Scratch directory for config modules. */
  readonly configDir: string;
  /** The server's CPU, and the CPU of everything else (redis, workers, publisher). */
  readonly serverCpu: number;
  readonly loadCpu: number;
  log(message: string): void;
  /** Something the report should mention beside the numbers (e.g. a slow shutdown). */
  note(message: string): void;
}

/** One run's numbers (null: not measured, e.g. a stalled client that was never dropped) and texts. */
export type Measurement = Record<string, number | string | null>;

/** How a metric is shown: its row label, unit and which direction is better. */
export interface Metric {
  readonly key: string;
  readonly label: string;
  /** `pct3`: a share near 100 % with three decimals (99.998 %), "100 %" only when exact. */
  readonly format: "int" | "rate" | "bytes" | "ms" | "s" | "pct" | "pct3" | "float" | "text";
  /** Show the ratio to the reference column. */
  readonly ratio?: boolean;
}

/** A benchmark scenario: which columns it compares and how one run of one column goes. */
export interface Scenario {
  readonly id: string;
  readonly title: string;
  /** What the scenario does, with the sizes of this mode, for the report. */
  describe(quick: boolean): string;
  /** The columns to run among the selected targets (S4 adds the raw script and drops the peers). */
  columns(targets: readonly Target[]): string[];
  /** The column ratios divide by. */
  readonly reference: string;
  /** The table rows of this mode. */
  metrics(quick: boolean): readonly Metric[];
  /** One run of one column: fresh server, fresh clients. Throws if something broke. */
  run(context: RunContext, column: string): Promise<{ measurement: Measurement; details: unknown }>;
}

/** An exit after SIGTERM slower than this is worth a note in the report. */
const SLOW_EXIT_SECONDS = 5;

/** What `withServer` starts beside the server. */
export interface SetupOptions {
  /** Shoal's config for this scenario (the peers have none). */
  readonly shoal?: ShoalConfigExtras;
  /** Environment for the peers (see `ServerStartOptions.peerEnv`). */
  readonly peerEnv?: Readonly<Record<string, string>>;
  /** Load-worker pools to start against the server, by worker count: `[2, 1]` gives two pools. */
  readonly workers: readonly number[];
}

/**
 * Start `target`'s server pinned to the server CPU and the load-worker pools on the load CPU (all at once), run
 * `body`, then close the clients and stop the server, which must exit 0 and must not have crashed meanwhile.
 */
export async function withServer<T>(
  context: RunContext,
  target: Target,
  options: SetupOptions,
  body: (server: ServerUnderTest, pools: LoadWorkers[]) => Promise<T>,
): Promise<T> {
  const port = await freePort();
  const started = await Promise.allSettled([
    ServerUnderTest.start(target, {
      tools: context.tools,
      cwd: context.cwd,
      redisUrl: context.redisUrl,
      configDir: context.configDir,
      shoalConfig: options.shoal,
      peerEnv: options.peerEnv,
      cpu: context.serverCpu,
      port,
    }),
    ...options.workers.map((count, i) =>
      LoadWorkers.start({
        count,
        port,
        cwd: context.cwd,
        bun: context.tools.bun,
        cpu: context.loadCpu,
        label: `${target.name} pool ${i + 1}`,
      })
    ),
  ]);
  const server = started[0].status === "fulfilled" ? started[0].value : undefined;
  const pools = started.slice(1).flatMap((s) => (s.status === "fulfilled" ? [s.value as LoadWorkers] : []));
  const failure = started.find((s): s is PromiseRejectedResult => s.status === "rejected");
  if (!server || failure) {
    await Promise.all([server?.kill(), ...pools.map((pool) => pool.kill())]);
    throw failure?.reason;
  }
  try {
    const result = await body(server, pools);
    await Promise.all(pools.map((pool) => pool.close()));
    if (!server.running) throw server.error("exited during the scenario");
    const seconds = await server.stop();
    if (seconds > SLOW_EXIT_SECONDS) context.note(`${target.name} took ${seconds.toFixed(1)} s to exit after SIGTERM`);
    return result;
  } catch (error) {
    // A server that died mid-measurement shows up as whatever read it next (often /proc): name the real cause,
    // unless the error already comes from the server's own process.
    const message = (error as Error)?.message ?? String(error);
    const crashed = !server.running && !message.startsWith(`${target.name}: `);
    await Promise.all([server.kill(), ...pools.map((pool) => pool.kill())]);
    throw crashed ? server.error(`exited during the scenario (then: ${message})`) : error;
  }
}

/** Throw if the server is gone: a crash in the middle of a measurement. */
export function assertRunning(server: ServerUnderTest): void {
  if (!server.running) throw server.error("exited during the scenario");
}

/** Throw unless every client subscribed. */
export function assertSubscribed(
  result: { ok: number; failed: number; errors: string[] },
  server: ServerUnderTest,
): void {
  if (result.failed > 0) {
    throw server.error(
      `${result.failed} of ${result.ok + result.failed} clients could not subscribe: ${result.errors.join("; ")}`,
    );
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
