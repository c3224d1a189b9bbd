/**
 * Shoal's composition root: arguments → config → broker → router → app → runtime.serve(), and signals.
 * Runs under `deno run -A main.ts` and `bun run main.ts`, and as a `bun build --compile` binary.
 */
import { getLogger } from "@logtape/logtape";
import { existsSync } from "node:fs";
import process from "node:process";
import { parseArgs } from "node:util";
import { createBroker } from "./src/broker/create_broker.ts";
import { runHealthcheck } from "./src/cli/healthcheck.ts";
import { checkExposure, loadConfig } from "./src/cli/load_config.ts";
import { type Config, ConfigError, parsePort } from "./src/config.ts";
import { Control } from "./src/core/control.ts";
import { Router } from "./src/core/router.ts";
import { JwtVerifier } from "./src/services/jwt_verifier.ts";
import type { Listener, Runtime } from "./src/runtime/runtime.ts";
import { errorText, scrubUrl, setupLogging } from "./src/log.ts";
import { ENV_VARIABLES } from "./src/config_env.ts";
import { createMetrics } from "./src/metrics/metrics.ts";
import { createApp, createMetricsApp } from "./src/server/app.ts";

export const VERSION = "0.1.0";

const USAGE = `Usage: shoal [options]
       shoal config from-socketshark SETTINGS.json   (convert SocketShark settings: docs/migration.md)

A WebSocket message router, wire-compatible with SocketShark.

Options:
  -c, --config PATH   config module (default: $SHOAL_CONFIG, else ./config.ts if present, else ./config.example.ts)
      --host HOST     listen address (overrides ws.host)
      --port PORT     listen port (overrides ws.port; 0 picks a free one)
      --check         validate the config, print a summary and exit (0 valid, 1 invalid)
      --healthcheck   GET /healthz on the configured listener (exit 0 on 200, else 1): for container health checks
  -h, --help          show this help
  -v, --version       show the version

Environment (overrides the config module; flags override these):
${Object.entries(ENV_VARIABLES).map(([name, key]) => `  ${name.padEnd(20)}${key}`).join("\n")}
`;

/** `shoal config <command>`: work on config files without serving. */
async function configCommand(argv: string[]): Promise<void> {
  if (argv[0] === "from-socketshark") {
    const { fromSocketsharkCommand, processIo } = await import("./src/cli/from_socketshark.ts");
    process.exitCode = await fromSocketsharkCommand(argv.slice(1), processIo);
    return;
  }
  process.stderr.write(`shoal: unknown config command ${JSON.stringify(argv[0] ?? "")}\n\n${USAGE}`);
  process.exitCode = 2;
}

async function loadRuntime(): Promise<Runtime> {
  // The only runtime sniffing in Shoal; each adapter is imported lazily so the other is never evaluated.
  if ("Deno" in globalThis) return (await import("./src/runtime/deno.ts")).runtime;
  return (await import("./src/runtime/bun.ts")).runtime;
}

function parseCli(argv: string[]) {
  try {
    return parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        config: { type: "string", short: "c" },
        host: { type: "string" },
        port: { type: "string" },
        check: { type: "boolean", default: false },
        healthcheck: { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
        version: { type: "boolean", short: "v", default: false },
      },
    }).values;
  } catch (error) {
    process.stderr.write(`shoal: ${(error as Error).message}\n\n${USAGE}`);
    process.exit(2);
  }
}

function defaultConfigPath(): string {
  return existsSync("config.ts") ? "config.ts" : "config.example.ts";
}

function brokerSummary(broker: Config["broker"]): string {
  switch (broker.kind) {
    case "memory":
      return "memory";
    case "redis":
      return `redis ${scrubUrl(broker.url)}${broker.alt ? ` + alt ${scrubUrl(broker.alt.url)}` : ""}`;
    case "redis-cluster":
      return `redis-cluster${broker.sharded ? " (sharded)" : ""} ${broker.nodes.map(scrubUrl).join(", ")}`;
    case "upstash":
      return `upstash ${scrubUrl(broker.url)}`;
  }
}

/** The HTTP endpoints of the main listener, besides the WebSocket endpoint on every other path. */
function endpoints(config: Config): string[] {
  const list = ["/healthz", "/readyz"];
  if (config.publish.token) list.push("POST /publish");
  if (config.metrics.prometheus && config.metrics.prometheus.port === undefined) list.push("/metrics");
  if (config.console.enabled) list.push("/console");
  if (config.admin.token) list.push("/admin");
  return list;
}

function summary(config: Config, path: string, fromEnv: readonly string[]): string {
  const services = Object.keys(config.services);
  return [
    `config ${path} is valid`,
    `  listen      ${config.ws.tls ? "wss" : "ws"}://${config.ws.host}:${config.ws.port}`,
    `  broker      ${brokerSummary(config.broker)}`,
    `  auth        ${[config.authentication.ticket && "ticket", config.authentication.jwt && "jwt"].filter(Boolean).join(", ") || "none"}`,
    `  services    ${services.length ? services.join(", ") : "(none)"}`,
    `  publish API ${config.publish.token ? "enabled" : "disabled"}`,
    `  admin API   ${config.admin.token ? "enabled" : "disabled"}`,
    `  endpoints   ${endpoints(config).join(", ")}`,
    `  metrics     ${config.metrics.prometheus ? "prometheus" : "off"}`,
    `  from env    ${fromEnv.length ? fromEnv.join(", ") : "(none)"}`,
  ].join("\n") + "\n";
}

/** The config to run with, from the module, the environment and the flags; exits 1 with the problems if invalid. */
async function loadSettings(args: ReturnType<typeof parseCli>): Promise<{ config: Config; path: string; fromEnv: string[] }> {
  const path = args.config ?? process.env.SHOAL_CONFIG ?? defaultConfigPath();
  try {
    let { config, fromEnv } = await loadConfig(path, (name) => process.env[name]);
    if (args.host !== undefined) config = { ...config, ws: { ...config.ws, host: args.host } };
    if (args.port !== undefined) {
      config = { ...config, ws: { ...config.ws, port: parsePort("--port", args.port) } };
    }
    checkExposure(config);
    return { config, path, fromEnv: [...fromEnv] };
  } catch (error) {
    const message = error instanceof ConfigError ? error.message : `cannot load config ${path}: ${errorText(error)}`;
    process.stderr.write(`shoal: ${message}\n`);
    process.exit(1);
  }
}

/** What `start` brought up, for the shutdown to take down. */
interface Running {
  readonly router: Router;
  readonly listener: Listener;
  readonly metricsListener: Listener | undefined;
  readonly secure: boolean;
}

/**
 * Connect the broker, then serve: the main listener (WebSockets, `/publish`, health, maybe `/metrics`) and
 * SocketShark's separate metrics listener when configured. Undefined when the broker cannot be reached (exit 1).
 * `onFatal` is the broker giving up later (`onConnectionLoss: "shutdown"`).
 */
async function start(
  config: Config,
  runtime: Runtime,
  onFatal: (reason: string) => void,
): Promise<Running | undefined> {
  const log = getLogger(["shoal"]);
  const fetch = config.http.caFile ? runtime.fetchWithCa(await runtime.readTextFile(config.http.caFile)) : undefined;
  const metrics = createMetrics(config.metrics);
  const jwt = config.authentication.jwt;
  const tokens = jwt ? await JwtVerifier.create(jwt, { fetch }) : undefined;
  const router = new Router({ config, broker: createBroker(config.broker), fetch, tokens, observer: metrics.observer, onFatal });
  try {
    await router.start();
  } catch (error) {
    log.fatal("could not connect to the broker", { broker: brokerSummary(config.broker), error: String(error) });
    process.exitCode = 1;
    return undefined;
  }
  // The admin API's link to the other nodes on the broker (extension E4): only when the API is on.
  const control = config.admin.token
    ? new Control({
      bus: router.broker,
      node: router,
      id: router.nodeId,
      runtime: `${runtime.name} ${runtime.version}`,
      version: VERSION,
      interval: config.admin.reportInterval,
    })
    : undefined;
  if (control) {
    router.useControl(control);
    try {
      await control.start();
    } catch (error) {
      log.fatal("could not subscribe the admin API's control channel", { error: String(error) });
      process.exitCode = 1;
      return await abandon(router);
    }
  }

  const tls = config.ws.tls
    ? { cert: await runtime.readTextFile(config.ws.tls.cert), key: await runtime.readTextFile(config.ws.tls.key) }
    : undefined;
  const prometheus = config.metrics.prometheus;
  const app = createApp({
    router,
    upgradeWebSocket: runtime.upgradeWebSocket,
    socket: runtime.socket,
    metrics: prometheus?.port === undefined ? metrics.prometheus : undefined,
    control,
  });
  const listener = listen("ws", config.ws.host, config.ws.port, () =>
    runtime.serve(app, {
      host: config.ws.host,
      port: config.ws.port,
      tls,
      maxMessageBytes: config.ws.maxMessageBytes,
      maxBufferedBytes: config.ws.maxBufferedBytes,
      handshakeTimeout: config.ws.handshakeTimeout,
      onRefused: (reason) => metrics.observer.refused?.(reason),
    }));
  if (!listener) return await abandon(router);
  if (listener.publish) router.hub.useFanout(listener.publish);
  // SocketShark's separate metrics listener; it serves no WebSockets, so the socket limits are nominal.
  let metricsListener: Listener | undefined;
  if (prometheus?.port !== undefined && metrics.prometheus) {
    const render = metrics.prometheus;
    const host = prometheus.host ?? config.ws.host;
    metricsListener = listen("metrics.prometheus", host, prometheus.port, () =>
      runtime.serve(createMetricsApp(render), {
        host,
        port: prometheus.port!,
        maxMessageBytes: 1024,
        maxBufferedBytes: 1024 * 1024,
        handshakeTimeout: config.ws.handshakeTimeout,
      }));
    if (!metricsListener) {
      await listener.stop();
      return await abandon(router);
    }
  }
  return { router, listener, metricsListener, secure: tls !== undefined };
}

/**
 * Start a listener; on failure (the address in use, not ours to bind) log one line naming the config key and the
 * address, set exit code 1 and return undefined.
 */
function listen(key: string, host: string, port: number, serve: () => Listener): Listener | undefined {
  try {
    return serve();
  } catch (error) {
    const code = (error as { code?: string }).code ?? (error as Error).name;
    const reason = code === "EADDRINUSE" || code === "AddrInUse"
      ? "address already in use"
      : code === "EACCES" || code === "PermissionDenied"
      ? "permission denied (ports below 1024 need privileges)"
      : code === "EADDRNOTAVAIL" || code === "AddrNotAvailable"
      ? "address not available on this machine"
      : (error as Error).message;
    getLogger(["shoal"]).fatal(`cannot listen on ${hostPort(host, port)} (${key}.host, ${key}.port): ${reason}`, {
      error: String(error),
    });
    process.exitCode = 1;
    return undefined;
  }
}

function hostPort(host: string, port: number): string {
  return `${host.includes(":") ? `[${host}]` : host}:${port}`;
}

/** Start-up failed after the broker connected: close it so the process can exit. */
async function abandon(router: Router): Promise<undefined> {
  await router.shutdown();
  return undefined;
}

/**
 * The graceful stop (sessions first, with 1000 and their callbacks, then the listeners) and the signals that
 * start it; a second signal exits at once. Returns the stop, for a fatal broker loss to call too.
 */
function installShutdown(running: Running, runtime: Runtime): (reason: string) => Promise<void> {
  const log = getLogger(["shoal"]);
  let stopping = false;
  const stop = async (reason: string) => {
    if (stopping) return;
    stopping = true;
    log.info("stop requested", { reason });
    // Sessions first (close 1000 and their callbacks), then the listener: stopping the listener first would close
    // the WebSockets with 1001 on Deno, and on Bun it waits for them to close.
    await running.router.shutdown();
    await running.listener.stop();
    await running.metricsListener?.stop();
    runtime.exit(0);
  };
  let signals = 0;
  runtime.onSignal((signal) => {
    if (++signals > 1) {
      log.warn("second signal; exiting at once", { signal });
      runtime.exit(1);
    }
    void stop(signal);
  });
  return stop;
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv[0] === "config") return await configCommand(argv.slice(1));
  const args = parseCli(argv);
  if (args.help) return void process.stdout.write(USAGE);
  if (args.version) return void process.stdout.write(`shoal ${VERSION}\n`);
  const { config, path, fromEnv } = await loadSettings(args);
  if (args.check) return void process.stdout.write(summary(config, path, fromEnv));
  if (args.healthcheck) return void process.exit(await runHealthcheck(config));

  const runtime = await loadRuntime();
  await setupLogging(config.log);
  const log = getLogger(["shoal"]);
  runtime.onUncaught((error, kind) => {
    // The error object itself: the JSON line carries its name, message and stack.
    log.error(kind === "exception" ? "uncaught exception" : "unhandled rejection", { error });
  });

  // Set once the listeners exist; a fatal broker loss before that only fails start-up.
  let stop: ((reason: string) => Promise<void>) | undefined;
  const running = await start(config, runtime, (reason) => void stop?.(reason));
  if (!running) return;
  // Signal handlers go in before "ready" is announced, so a supervisor's early SIGTERM is always graceful.
  stop = installShutdown(running, runtime);
  log.info("shoal ready", {
    config: path,
    host: config.ws.host,
    port: running.listener.port,
    broker: brokerSummary(config.broker),
    endpoints: endpoints(config),
    ...(running.metricsListener ? { metrics_port: running.metricsListener.port } : {}),
    secure: running.secure,
    runtime: runtime.name,
    runtime_version: runtime.version,
    version: VERSION,
  });
}

await main();
