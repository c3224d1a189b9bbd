/**
 * `shoal config from-socketshark`: SocketShark settings (its UPPER_SNAKE module attributes, dumped to JSON) as a
 * Shoal config module. The key-by-key table this follows is docs/migration.md.
 */
import { readFile } from "node:fs/promises";
import process from "node:process";
import { parseArgs } from "node:util";
import { ConfigError, parseConfig, RESERVED_FIELDS, UNSAFE_FIELDS } from "../config.ts";

/** For `shoal --help` and a usage error of the subcommand. */
export const FROM_SOCKETSHARK_USAGE = `Usage: shoal config from-socketshark [options] SETTINGS.json

Converts SocketShark settings, dumped to JSON, into a Shoal config module on standard output; warnings (what
Shoal does differently or cannot represent) go to standard error and into the module as comments.
SETTINGS.json "-" reads standard input. Dump a settings module with (docs/migration.md):

  python -c 'import json, settings; print(json.dumps({k: getattr(settings, k) for k in dir(settings) if k.isupper()}, default=str))' > settings.json

Options:
      --types PATH   import the ConfigInput type from PATH (e.g. ./src/config.ts) and end with \`satisfies ConfigInput\`
  -h, --help         show this help

Exit codes: 0 converted (maybe with warnings), 1 unreadable or invalid settings, 2 bad arguments.
`;

/** Settings that cannot be converted: wrong types, or values Shoal's config validation refuses. */
export class SettingsError extends Error {
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super(`cannot convert the SocketShark settings:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
    this.name = "SettingsError";
    this.problems = problems;
  }
}

export interface FromSocketsharkOptions {
  /** Named in the module's header comment (the settings file). */
  readonly sourceName?: string;
  /** Where the module imports `ConfigInput` from (type-only); without it the module imports nothing. */
  readonly typesFrom?: string;
}

/** A Shoal config module's text and what the conversion could not carry over as it was. */
export interface Conversion {
  readonly source: string;
  readonly warnings: string[];
}

/**
 * Convert parsed SocketShark settings (keys as in its settings module, e.g. `WS_PORT`, `REDIS`, `SERVICES`) into
 * the text of a Shoal config module that passes `parseConfig`. Throws `SettingsError` naming each bad key.
 */
export function fromSocketshark(settings: unknown, options: FromSocketsharkOptions = {}): Conversion {
  if (!isDict(settings)) {
    throw new SettingsError([`the settings must be a JSON object of SocketShark settings, got ${describe(settings)}`]);
  }
  const out = new Draft();
  convertWs(settings, out);
  convertHttp(settings, out);
  convertAuthentication(settings, out);
  convertServices(settings, out);
  convertRedis(settings, out);
  convertLog(settings, out);
  convertMetrics(settings, out);
  convertBackend(settings, out);
  const unknown = Object.keys(settings).filter((key) => !SETTINGS.includes(key));
  if (unknown.length > 0) {
    out.warn(`unknown settings ignored (SocketShark ignores them too): ${unknown.join(", ")}`, []);
  }
  if (out.errors.length > 0) throw new SettingsError(out.errors);
  out.validate();
  return { source: out.print(options), warnings: out.warnings };
}

/** What `fromSocketsharkCommand` reads and writes; `readStdin` defaults to the process's standard input. */
export interface CommandIo {
  readFile(path: string): Promise<string>;
  readStdin?(): Promise<string>;
  stdout(text: string): void;
  stderr(text: string): void;
}

/** The process's files and streams, for `main.ts`. */
export const processIo: CommandIo = {
  readFile: (path) => readFile(path, "utf8"),
  readStdin: readStandardInput,
  stdout: (text) => void process.stdout.write(text),
  stderr: (text) => void process.stderr.write(text),
};

/**
 * `shoal config from-socketshark [--types PATH] SETTINGS.json`, `args` being what follows `from-socketshark`.
 * Returns the exit code: 0 converted, 1 unreadable or unconvertible settings, 2 bad arguments.
 */
export async function fromSocketsharkCommand(args: string[], io: CommandIo): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      strict: true,
      allowPositionals: true,
      options: { types: { type: "string" }, help: { type: "boolean", short: "h", default: false } },
    });
  } catch (error) {
    io.stderr(`shoal: ${(error as Error).message}\n\n${FROM_SOCKETSHARK_USAGE}`);
    return 2;
  }
  if (parsed.values.help) {
    io.stdout(FROM_SOCKETSHARK_USAGE);
    return 0;
  }
  if (parsed.positionals.length !== 1) {
    const why = parsed.positionals.length === 0 ? "no settings file given" : "give one settings file";
    io.stderr(`shoal: ${why}\n\n${FROM_SOCKETSHARK_USAGE}`);
    return 2;
  }
  const [path] = parsed.positionals;
  const name = path === "-" ? "standard input" : path;
  let text: string;
  try {
    text = path === "-" ? await (io.readStdin ?? readStandardInput)() : await io.readFile(path);
  } catch (error) {
    io.stderr(`shoal: cannot read ${name}: ${readProblem(error)}\n`);
    return 1;
  }
  let settings: unknown;
  try {
    settings = JSON.parse(text);
  } catch (error) {
    // Python's json.dumps writes NaN and Infinity, which are not JSON.
    const hint = /\b(?:NaN|Infinity)\b/.test(text) ? " (NaN and Infinity, which Python writes, are not JSON)" : "";
    io.stderr(`shoal: ${name} is not JSON${hint}: ${(error as Error).message}\n`);
    return 1;
  }
  try {
    const { source, warnings } = fromSocketshark(settings, {
      sourceName: path === "-" ? undefined : path,
      typesFrom: parsed.values.types,
    });
    for (const warning of warnings) io.stderr(`shoal: warning: ${warning}\n`);
    io.stdout(source);
    return 0;
  } catch (error) {
    if (!(error instanceof SettingsError)) throw error;
    io.stderr(`shoal: cannot convert ${name}:\n${error.problems.map((p) => `  - ${p}`).join("\n")}\n`);
    return 1;
  }
}

// ------------------------------------------------------------------------------------------------ the settings

/** Every setting of SocketShark's config_defaults.py; its `load_config` ignores any other name. */
const SETTINGS = [
  "BACKEND",
  "LOG",
  "METRICS",
  "WS_HOST",
  "WS_PORT",
  "WS_SSL",
  "WS_PING",
  "HTTP",
  "REDIS",
  "REDIS_ALT",
  "AUTHENTICATION",
  "SERVICES",
];

/** SocketShark's `REDIS` default, which a user's `REDIS` is merged into. */
const REDIS_DEFAULTS = { host: "localhost", port: 6379 };
/** Keys SocketShark reads from `REDIS`/`REDIS_ALT`, and those it ignores that Shoal can use. */
const REDIS_KEYS = ["host", "port", "db", "channel_prefix", "ping_interval", "ping_timeout"];
const REDIS_EXTRAS = ["username", "password", "ssl"];

/** Python's logging level names → Shoal's `log.level`. */
const LOG_LEVELS: Readonly<Record<string, string>> = {
  CRITICAL: "fatal",
  FATAL: "fatal",
  ERROR: "error",
  WARNING: "warning",
  WARN: "warning",
  INFO: "info",
  DEBUG: "debug",
  NOTSET: "debug",
};
const LOG_DEFAULTS: Readonly<Record<string, unknown>> = {
  setup_structlog: true,
  level: "INFO",
  format: "%(message)s",
  logger_name: "socketshark",
  trace_logger_prefix: "trace",
  trace_level: "INFO",
};

/** A service's callback URLs: SocketShark key → Shoal key. */
const CALLBACKS: Readonly<Record<string, string>> = {
  authorizer: "authorizer",
  before_subscribe: "beforeSubscribe",
  on_subscribe: "onSubscribe",
  on_message: "onMessage",
  before_unsubscribe: "beforeUnsubscribe",
  on_unsubscribe: "onUnsubscribe",
  on_authorization_change: "onAuthorizationChange",
  on_heartbeat: "onHeartbeat",
};
/** Field lists: SocketShark key → Shoal key, and whether protocol keys are refused (decision 10). */
const FIELD_LISTS: Readonly<Record<string, { key: string; reserved: boolean }>> = {
  authorizer_fields: { key: "authorizerFields", reserved: false },
  extra_fields: { key: "extraFields", reserved: true },
  filter_fields: { key: "filterFields", reserved: true },
};
/** A service's settings, in the order of Shoal's schema. */
const SERVICE_KEYS = [
  "require_authentication",
  "authorizer",
  "authorizer_fields",
  "authorization_renewal_period",
  "authorization_renewal_jitter",
  "extra_fields",
  "filter_fields",
  "before_subscribe",
  "on_subscribe",
  "on_message",
  "before_unsubscribe",
  "on_unsubscribe",
  "on_authorization_change",
  "heartbeat_period",
  "on_heartbeat",
];

function convertWs(settings: Settings, out: Draft): void {
  if ("WS_HOST" in settings) {
    const host = settings.WS_HOST;
    if (host === null || host === "") {
      // Python's asyncio binds every interface for "" and None.
      out.set(["ws", "host"], "0.0.0.0", `WS_HOST ${describe(host)}: every interface`);
    } else if (typeof host === "string") {
      out.set(["ws", "host"], host, "WS_HOST");
    } else {
      out.error(`WS_HOST: must be a host name or address, got ${describe(host)}`);
    }
  }
  if ("WS_PORT" in settings) {
    const port = portOf(settings.WS_PORT, "WS_PORT", out);
    if (port !== undefined) out.set(["ws", "port"], port, "WS_PORT");
  }
  const ssl = dictOf(settings, "WS_SSL", out);
  if (ssl && Object.keys(ssl).length > 0) {
    const cert = ssl.cert;
    if (typeof cert !== "string" || cert === "") {
      out.error(`WS_SSL.cert: must be the path of a PEM certificate file, got ${describe(cert)}`);
    } else if (ssl.key === undefined || ssl.key === null) {
      out.set(["ws", "tls"], { cert, key: cert }, "WS_SSL");
      out.warn(
        "WS_SSL.key: not set, so the private key is in the cert file (Python's load_cert_chain); Shoal reads the key from ws.tls.key, set here to the cert file: check that your runtime accepts it, or split the file",
        ["ws", "tls", "key"],
      );
    } else if (typeof ssl.key !== "string") {
      out.error(`WS_SSL.key: must be the path of a PEM key file, got ${describe(ssl.key)}`);
    } else {
      out.set(["ws", "tls"], { cert, key: ssl.key }, "WS_SSL");
    }
    warnUnknown(ssl, ["cert", "key"], "WS_SSL", ["ws", "tls"], out);
  }
  const ping = dictOf(settings, "WS_PING", out);
  if (ping) {
    if ("interval" in ping) {
      const interval = ping.interval;
      if (interval === null || interval === false || interval === 0) {
        out.set(["ws", "ping", "interval"], 0, `WS_PING.interval ${describe(interval)}: no pings`);
      } else {
        const seconds = secondsOf(interval, "WS_PING.interval", out);
        if (seconds !== undefined) out.set(["ws", "ping", "interval"], seconds, "WS_PING.interval");
      }
    }
    if ("timeout" in ping) {
      const timeout = ping.timeout;
      if (timeout === null || timeout === 0) {
        const why = timeout === null
          ? "broke SocketShark's timeout check (silent clients were never closed)"
          : "made SocketShark close every connection at its first ping";
        out.warn(
          `WS_PING.timeout: ${
            describe(timeout)
          } ${why}; Shoal needs a timeout above 0: ws.ping.timeout stays at its default, 15 seconds`,
          ["ws", "ping", "timeout"],
        );
      } else {
        const seconds = secondsOf(timeout, "WS_PING.timeout", out);
        if (seconds !== undefined) out.set(["ws", "ping", "timeout"], seconds, "WS_PING.timeout");
      }
    }
    warnUnknown(ping, ["interval", "timeout"], "WS_PING", ["ws", "ping"], out);
  }
}

function convertHttp(settings: Settings, out: Draft): void {
  const http = dictOf(settings, "HTTP", out);
  if (!http) return;
  if ("ssl_cafile" in http && http.ssl_cafile !== null && http.ssl_cafile !== "") {
    if (typeof http.ssl_cafile === "string") out.set(["http", "caFile"], http.ssl_cafile, "HTTP.ssl_cafile");
    else out.error(`HTTP.ssl_cafile: must be the path of a CA bundle or None, got ${describe(http.ssl_cafile)}`);
  }
  if ("timeout" in http) {
    if (http.timeout === null || http.timeout === 0) {
      out.warn(
        `HTTP.timeout: ${
          describe(http.timeout)
        } means no timeout in aiohttp; Shoal always has one: http.timeout stays at its default, 15 seconds`,
        ["http", "timeout"],
      );
    } else {
      const seconds = secondsOf(http.timeout, "HTTP.timeout", out);
      if (seconds !== undefined) out.set(["http", "timeout"], seconds, "HTTP.timeout");
    }
  }
  if ("tries" in http) {
    const tries = http.tries;
    if (typeof tries === "number" && Number.isInteger(tries) && tries >= 0) {
      out.set(["http", "tries"], tries, "HTTP.tries");
    } else out.error(`HTTP.tries: must be a whole number of attempts, got ${describe(tries)}`);
  }
  if ("wait" in http) {
    const seconds = secondsOf(http.wait, "HTTP.wait", out);
    if (seconds !== undefined) out.set(["http", "wait"], seconds, "HTTP.wait");
  }
  if ("rate_limit_reset_header_names" in http || "rate_limit_reset_header_name" in http) {
    // SocketShark checks the list, and the single (deprecated) name only when the list is empty.
    const names = http.rate_limit_reset_header_names ?? [];
    const single = http.rate_limit_reset_header_name ?? "X-Rate-Limit-Reset";
    if (!Array.isArray(names) || !names.every((n) => typeof n === "string")) {
      out.error(`HTTP.rate_limit_reset_header_names: must be a list of header names, got ${describe(names)}`);
    } else if (names.length > 0) {
      out.set(["http", "rateLimitResetHeaderNames"], names, "HTTP.rate_limit_reset_header_names");
    } else if (typeof single === "string") {
      out.set(["http", "rateLimitResetHeaderNames"], [single], "HTTP.rate_limit_reset_header_name");
    } else {
      out.error(`HTTP.rate_limit_reset_header_name: must be a header name, got ${describe(single)}`);
    }
  }
  warnUnknown(
    http,
    ["ssl_cafile", "timeout", "tries", "wait", "rate_limit_reset_header_name", "rate_limit_reset_header_names"],
    "HTTP",
    ["http"],
    out,
  );
}

function convertAuthentication(settings: Settings, out: Draft): void {
  const auth = dictOf(settings, "AUTHENTICATION", out);
  if (!auth) return;
  const others = Object.keys(auth).filter((method) => method !== "ticket");
  if (others.length > 0) {
    out.warn(
      `AUTHENTICATION: methods other than "ticket" ignored (SocketShark failed on them with "Unhandled exception."; Shoal answers "Authentication method unsupported."): ${
        others.join(", ")
      }`,
      ["authentication"],
    );
  }
  if (!("ticket" in auth)) return;
  const ticket = auth.ticket;
  if (!isDict(ticket)) {
    if (ticket === null) {
      out.warn(
        'AUTHENTICATION.ticket: None broke every "auth" with a ticket in SocketShark; left out, so Shoal answers "Authentication method unsupported."',
        ["authentication", "ticket"],
      );
    } else {
      out.error(`AUTHENTICATION.ticket: must be a dict, got ${describe(ticket)}`);
    }
    return;
  }
  const url = ticket.validation_url;
  if (url === undefined || url === null) {
    out.warn(
      'AUTHENTICATION.ticket.validation_url: missing, which broke every "auth" with a ticket in SocketShark; authentication.ticket left out, so Shoal answers "Authentication method unsupported."',
      ["authentication", "ticket"],
    );
    return;
  }
  if (typeof url !== "string") {
    out.error(`AUTHENTICATION.ticket.validation_url: must be a URL string, got ${describe(url)}`);
    return;
  }
  out.set(["authentication", "ticket", "validationUrl"], url, "AUTHENTICATION.ticket.validation_url");
  if ("auth_fields" in ticket && ticket.auth_fields !== null) {
    const fields = fieldList(
      ticket.auth_fields,
      "AUTHENTICATION.ticket.auth_fields",
      ["authentication", "ticket", "authFields"],
      false,
      out,
    );
    if (fields) out.set(["authentication", "ticket", "authFields"], fields, "AUTHENTICATION.ticket.auth_fields");
  } else {
    out.set(["authentication", "ticket", "authFields"], [], "AUTHENTICATION.ticket.auth_fields (missing)");
    out.warn(
      'AUTHENTICATION.ticket.auth_fields: missing, which broke every "auth" with a ticket in SocketShark; Shoal takes no fields (sessions stay anonymous): list the fields your ticket endpoint returns',
      ["authentication", "ticket", "authFields"],
    );
  }
  warnUnknown(ticket, ["validation_url", "auth_fields"], "AUTHENTICATION.ticket", ["authentication", "ticket"], out);
}

function convertServices(settings: Settings, out: Draft): void {
  const services = dictOf(settings, "SERVICES", out);
  if (!services) return;
  out.set(["services"], {}, "SERVICES");
  for (const [name, service] of Object.entries(services)) {
    const from = `SERVICES.${name}`;
    if (!isDict(service)) {
      out.error(`${from}: must be a dict of service settings, got ${describe(service)}`);
      continue;
    }
    if (name === "" || name.includes(".") || UNSAFE_FIELDS.includes(name)) {
      const why = UNSAFE_FIELDS.includes(name)
        ? "is not a plain key in JavaScript"
        : "can never match: a subscription is split at its first '.'";
      out.warn(`${from}: left out, the service name ${JSON.stringify(name)} ${why}`, ["services"]);
      continue;
    }
    convertService(name, service, out);
  }
}

function convertService(name: string, service: Settings, out: Draft): void {
  const from = `SERVICES.${name}`;
  const at = ["services", name];
  out.set(at, {}, from);
  // In the order of Shoal's schema, so the output reads like config.example.ts.
  for (const key of SERVICE_KEYS) {
    if (!(key in service)) continue;
    if (key === "require_authentication") convertRequireAuthentication(from, at, service[key], out);
    else if (key in FIELD_LISTS) convertFieldList(from, at, key, service[key], out);
    else if (key === "authorization_renewal_period") convertRenewalPeriod(from, at, service, out);
    else if (key === "authorization_renewal_jitter") convertRenewalJitter(from, at, service[key], out);
    else if (key === "heartbeat_period" || key === "on_heartbeat") continue;
    else convertCallback(from, at, key, service[key], out);
  }
  convertHeartbeat(from, at, service, out);
  warnUnknown(service, SERVICE_KEYS, from, at, out);
}

function convertRequireAuthentication(from: string, at: readonly string[], value: unknown, out: Draft): void {
  // SocketShark tests the value's truthiness (`.get(..., True)`): None and "" let anonymous sessions in.
  const required = truthy(value);
  if (typeof value !== "boolean") {
    out.warn(
      `${from}.require_authentication: ${describe(value)} is ${
        required ? "true" : "false"
      } to Python, so requireAuthentication: ${required}`,
      [...at, "requireAuthentication"],
    );
  }
  out.set([...at, "requireAuthentication"], required, `${from}.require_authentication`);
}

function convertFieldList(from: string, at: readonly string[], key: string, value: unknown, out: Draft): void {
  if (value === null) return;
  const { key: target, reserved } = FIELD_LISTS[key];
  const fields = fieldList(value, `${from}.${key}`, [...at, target], reserved, out);
  if (fields) out.set([...at, target], fields, `${from}.${key}`);
}

function convertCallback(from: string, at: readonly string[], key: string, url: unknown, out: Draft): void {
  const target = CALLBACKS[key];
  if (url === null) {
    const consequence = key === "authorizer"
      ? " (subscriptions SocketShark refused are now authorized)"
      : key === "before_subscribe"
      ? " (subscriptions SocketShark refused now succeed)"
      : "";
    out.warn(
      `${from}.${key}: None broke every call in SocketShark ("Unhandled exception."); left out, so the callback is off${consequence}`,
      [...at, target],
    );
  } else if (typeof url === "string") {
    out.set([...at, target], url, `${from}.${key}`);
  } else {
    out.error(`${from}.${key}: must be a URL string, got ${describe(url)}`);
  }
}

function convertRenewalPeriod(from: string, at: readonly string[], service: Settings, out: Draft): void {
  const period = service.authorization_renewal_period;
  const target = [...at, "authorizationRenewalPeriod"];
  if (!("authorizer" in service) || service.authorizer === null) {
    out.warn(
      `${from}.authorization_renewal_period: left out, there is no authorizer to renew with (SocketShark's renewal did nothing)`,
      target,
    );
  } else if (period === null || period === 0) {
    const why = period === null ? "broke SocketShark's renewal" : "made SocketShark renew without pause";
    out.warn(
      `${from}.authorization_renewal_period: ${
        describe(period)
      } ${why}; Shoal needs a period above 0: left out, so no renewal`,
      target,
    );
  } else {
    const seconds = secondsOf(period, `${from}.authorization_renewal_period`, out);
    if (seconds !== undefined) out.set(target, seconds, `${from}.authorization_renewal_period`);
  }
}

function convertRenewalJitter(from: string, at: readonly string[], jitter: unknown, out: Draft): void {
  const target = [...at, "authorizationRenewalJitter"];
  if (jitter === null) {
    out.warn(`${from}.authorization_renewal_jitter: None broke SocketShark's renewal; left out (0)`, target);
  } else {
    const seconds = secondsOf(jitter, `${from}.authorization_renewal_jitter`, out);
    if (seconds !== undefined) out.set(target, seconds, `${from}.authorization_renewal_jitter`);
  }
}

/** `heartbeat_period` and `on_heartbeat` go together: SocketShark sends no heartbeat with one alone. */
function convertHeartbeat(from: string, at: readonly string[], service: Settings, out: Draft): void {
  const hasPeriod = "heartbeat_period" in service;
  const hasUrl = "on_heartbeat" in service;
  if (!hasPeriod && !hasUrl) return;
  if (!hasPeriod || !hasUrl) {
    const [given, missing] = hasPeriod ? ["heartbeat_period", "on_heartbeat"] : ["on_heartbeat", "heartbeat_period"];
    out.warn(`${from}.${given}: left out, without ${missing} SocketShark sent no heartbeat`, [
      ...at,
      hasPeriod ? "heartbeatPeriod" : "onHeartbeat",
    ]);
    return;
  }
  const period = service.heartbeat_period;
  const url = service.on_heartbeat;
  if (typeof url !== "string" && url !== null) {
    out.error(`${from}.on_heartbeat: must be a URL string, got ${describe(url)}`);
    return;
  }
  if (url === null || period === null || period === 0) {
    const why = url === null
      ? "on_heartbeat None broke SocketShark's heartbeat"
      : period === null
      ? "heartbeat_period None broke SocketShark's heartbeat"
      : "heartbeat_period 0 made SocketShark send heartbeats without pause; Shoal needs a period above 0";
    out.warn(`${from}.heartbeat_period, on_heartbeat: left out, ${why}`, [...at, "heartbeatPeriod"]);
    return;
  }
  const seconds = secondsOf(period, `${from}.heartbeat_period`, out);
  if (seconds === undefined) return;
  out.set([...at, "heartbeatPeriod"], seconds, `${from}.heartbeat_period`);
  out.set([...at, "onHeartbeat"], url, `${from}.on_heartbeat`);
}

function convertRedis(settings: Settings, out: Draft): void {
  const given = "REDIS" in settings ? dictOf(settings, "REDIS", out) : {};
  if (!given) return;
  const redis: Settings = { ...REDIS_DEFAULTS, ...given };
  const url = redisUrl(redis, "REDIS", ["broker", "url"], out);
  if (url === undefined) return;
  const origin = "REDIS" in settings ? "REDIS" : "REDIS (SocketShark's default)";
  out.set(["broker", "kind"], "redis", origin);
  out.set(["broker", "url"], url, `${origin}: host, port${"db" in redis ? ", db" : ""}`);
  if ("channel_prefix" in redis) {
    if (typeof redis.channel_prefix === "string") {
      out.set(["broker", "channelPrefix"], redis.channel_prefix, "REDIS.channel_prefix");
    } else out.error(`REDIS.channel_prefix: must be a string, got ${describe(redis.channel_prefix)}`);
  }
  for (const [key, target] of [["ping_interval", "pingInterval"], ["ping_timeout", "pingTimeout"]]) {
    if (!(key in redis)) continue;
    const value = redis[key];
    if (value === null || value === false) {
      out.set(["broker", target], 0, `REDIS.${key} ${describe(value)}: no Redis pings`);
    } else {
      const seconds = secondsOf(value, `REDIS.${key}`, out);
      if (seconds !== undefined) out.set(["broker", target], seconds, `REDIS.${key}`);
    }
  }
  out.note(
    'SocketShark shut down when Redis was lost; Shoal reconnects and keeps its clients. onConnectionLoss: "shutdown" restores SocketShark\'s behaviour.',
    ["broker", "kind"],
  );
  warnUnknown(given, [...REDIS_KEYS, ...REDIS_EXTRAS], "REDIS", ["broker"], out);
  convertRedisAlt(settings, redis, out);
}

function convertRedisAlt(settings: Settings, redis: Settings, out: Draft): void {
  if (!("REDIS_ALT" in settings) || settings.REDIS_ALT === null) return;
  const alt = dictOf(settings, "REDIS_ALT", out);
  if (!alt) return;
  // SocketShark does not merge REDIS_ALT with defaults: it needed every key, or would not start.
  const missing = ["host", "port", "channel_prefix", "ping_interval", "ping_timeout"].filter((key) => !(key in alt));
  if (missing.length > 0) {
    out.warn(
      `REDIS_ALT: lacks ${
        missing.join(", ")
      }, so SocketShark would not start; converted with SocketShark's REDIS defaults`,
      ["broker", "alt"],
    );
  }
  const url = redisUrl({ ...REDIS_DEFAULTS, ...alt }, "REDIS_ALT", ["broker", "alt", "url"], out);
  if (url === undefined) return;
  out.set(["broker", "alt", "url"], url, `REDIS_ALT: host, port${"db" in alt ? ", db" : ""}`);
  if ("channel_prefix" in alt && alt.channel_prefix !== "") {
    if (typeof alt.channel_prefix === "string") {
      out.set(["broker", "alt", "channelPrefix"], alt.channel_prefix, "REDIS_ALT.channel_prefix");
    } else out.error(`REDIS_ALT.channel_prefix: must be a string, got ${describe(alt.channel_prefix)}`);
  }
  for (const key of ["ping_interval", "ping_timeout"]) {
    if (key in alt && alt[key] !== (redis[key] ?? (key === "ping_interval" ? 10 : 5))) {
      out.warn(
        `REDIS_ALT.${key}: ${describe(alt[key])} ignored; Shoal pings the second Redis as the first (REDIS.${key})`,
        ["broker", "alt"],
      );
    }
  }
  warnUnknown(alt, [...REDIS_KEYS, ...REDIS_EXTRAS], "REDIS_ALT", ["broker", "alt"], out);
}

/** `redis[s]://[user[:password]@]host:port[/db]` from SocketShark's keys (and the password/ssl it never read). */
function redisUrl(redis: Settings, from: string, at: readonly string[], out: Draft): string | undefined {
  const host = redis.host;
  if (typeof host !== "string" || host === "" || /[\s/@?#]/.test(host)) {
    out.error(`${from}.host: must be a host name or address, got ${describe(host)}`);
    return undefined;
  }
  const port = portOf(redis.port, `${from}.port`, out);
  let db: number | undefined;
  if ("db" in redis && redis.db !== null) {
    const value = typeof redis.db === "string" && /^\d+$/.test(redis.db) ? Number(redis.db) : redis.db;
    if (typeof value === "number" && Number.isInteger(value) && value >= 0) db = value;
    else out.error(`${from}.db: must be a database number, got ${describe(redis.db)}`);
  }
  const extras = REDIS_EXTRAS.filter((key) =>
    key in redis && redis[key] !== null && redis[key] !== false && redis[key] !== ""
  );
  let userinfo = "";
  for (const key of ["username", "password"]) {
    if (key in redis && redis[key] !== null && typeof redis[key] !== "string") {
      out.error(`${from}.${key}: must be a string, got ${describe(redis[key])}`);
    }
  }
  const username = typeof redis.username === "string" ? redis.username : "";
  const password = typeof redis.password === "string" ? redis.password : "";
  for (const [key, value] of [["username", username], ["password", password]]) {
    if (!value.isWellFormed()) {
      out.error(`${from}.${key}: must be well-formed text (it holds a lone surrogate)`);
      return undefined;
    }
  }
  if (username !== "" || password !== "") {
    userinfo = `${encodeURIComponent(username)}${password !== "" ? `:${encodeURIComponent(password)}` : ""}@`;
  }
  const ssl = redis.ssl;
  const tls = ssl !== undefined && ssl !== null && ssl !== false && ssl !== "" &&
    !(isDict(ssl) && Object.keys(ssl).length === 0);
  if (isDict(ssl) && tls) {
    out.warn(
      `${from}.ssl: TLS options (${
        Object.keys(ssl).join(", ")
      }) cannot be carried over: Shoal connects with rediss:// and the system's CAs`,
      at,
    );
  }
  if (extras.length > 0) {
    const [verb, them, they] = extras.length > 1 ? ["are", "them", "they"] : ["is", "it", "it"];
    out.warn(
      `${from}: ${
        extras.join(", ")
      } ${verb} not read by SocketShark, which connects without ${them}; Shoal uses ${them} in the URL: check that ${they} should apply`,
      at,
    );
  }
  if (port === undefined) return undefined;
  const shownHost = host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
  return `${tls ? "rediss" : "redis"}://${userinfo}${shownHost}:${port}${db !== undefined ? `/${db}` : ""}`;
}

function convertLog(settings: Settings, out: Draft): void {
  const log = dictOf(settings, "LOG", out);
  if (!log) return;
  if ("level" in log) {
    const level = log.level;
    if (level === null || level === "" || level === false) {
      out.warn(
        `LOG.level: ${describe(level)} skipped SocketShark's logging set-up; Shoal always logs: log.level stays "info"`,
        ["log", "level"],
      );
    } else if (typeof level === "string" && Object.hasOwn(LOG_LEVELS, level.toUpperCase())) {
      out.set(["log", "level"], LOG_LEVELS[level.toUpperCase()], "LOG.level");
    } else {
      out.error(
        `LOG.level: must be a Python logging level name (DEBUG, INFO, WARNING, ERROR, CRITICAL) or None, got ${
          describe(level)
        }`,
      );
    }
  }
  if ("setup_structlog" in log && !truthy(log.setup_structlog)) {
    out.warn(
      "LOG.setup_structlog: off in SocketShark (plain stdlib lines); Shoal always writes JSON lines (logfmt on a terminal)",
      ["log"],
    );
  }
  const noEquivalent: Readonly<Record<string, string>> = {
    format: "Shoal's lines are JSON (log.format)",
    logger_name: 'Shoal\'s "logger" field is "shoal" or "shoal.<part>"',
    trace_logger_prefix: "Shoal has no trace logger",
  };
  for (const [key, why] of Object.entries(noEquivalent)) {
    if (key in log && log[key] !== LOG_DEFAULTS[key]) {
      out.warn(`LOG.${key}: ${describe(log[key])} has no Shoal equivalent; ${why}`, ["log"]);
    }
  }
  if (typeof log.trace_level === "string" && log.trace_level.toUpperCase() === "DEBUG") {
    out.warn(
      "LOG.trace_level: DEBUG turned on SocketShark's trace logger (pings, Redis pings, service events), which Shoal does not have; log.level: \"debug\" shows Shoal's per-event lines",
      ["log"],
    );
  }
  warnUnknown(log, Object.keys(LOG_DEFAULTS), "LOG", ["log"], out);
}

function convertMetrics(settings: Settings, out: Draft): void {
  const metrics = dictOf(settings, "METRICS", out);
  if (!metrics) return;
  for (const [provider, options] of Object.entries(metrics)) {
    if (provider === "prometheus") {
      convertPrometheus(options, out);
    } else if (provider === "log") {
      out.set(["metrics", "log"], {}, "METRICS.log");
      if (isDict(options) && Object.keys(options).length > 0) {
        out.warn(`METRICS.log: options ignored (SocketShark ignores them too): ${Object.keys(options).join(", ")}`, [
          "metrics",
          "log",
        ]);
      }
    } else {
      out.warn(`METRICS.${provider}: no such metrics provider (SocketShark would not start); ignored`, ["metrics"]);
    }
  }
}

function convertPrometheus(options: unknown, out: Draft): void {
  if (!isDict(options)) {
    out.error(`METRICS.prometheus: must be a dict like {"port": 9090}, got ${describe(options)}`);
    return;
  }
  out.set(["metrics", "prometheus"], {}, "METRICS.prometheus");
  if (options.port === undefined || options.port === null) {
    out.warn(
      "METRICS.prometheus.port: missing, so SocketShark would not start; Shoal serves /metrics on the WebSocket port instead (set metrics.prometheus.port for a listener of its own)",
      ["metrics", "prometheus", "port"],
    );
  } else {
    const host = options.host ?? "";
    if (host === "") {
      out.set(
        ["metrics", "prometheus", "host"],
        "0.0.0.0",
        `METRICS.prometheus.host ${describe(options.host ?? "")}: every interface, as SocketShark`,
      );
    } else if (typeof host === "string") {
      out.set(["metrics", "prometheus", "host"], host, "METRICS.prometheus.host");
    } else {
      out.error(`METRICS.prometheus.host: must be a host name or address, got ${describe(host)}`);
    }
    const port = portOf(options.port, "METRICS.prometheus.port", out);
    if (port !== undefined) out.set(["metrics", "prometheus", "port"], port, "METRICS.prometheus.port");
  }
  out.set(["metrics", "prometheus", "prefix"], "socketshark", "SocketShark's metric names");
  warnUnknown(options, ["host", "port"], "METRICS.prometheus", ["metrics", "prometheus"], out);
}

function convertBackend(settings: Settings, out: Draft): void {
  if (!("BACKEND" in settings) || settings.BACKEND === "websockets") return;
  out.warn(
    `BACKEND: ${
      describe(settings.BACKEND)
    } ignored; SocketShark has only "websockets" (it would not start), and Shoal picks its runtime's server`,
    [],
  );
}

// ------------------------------------------------------------------------------------------------ value checks

type Settings = Readonly<Record<string, unknown>>;

function isDict(value: unknown): value is Settings {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

/** Python's truthiness of a JSON value. */
function truthy(value: unknown): boolean {
  if (Array.isArray(value)) return value.length > 0;
  if (isDict(value)) return Object.keys(value).length > 0;
  return Boolean(value);
}

/** A value as a Python user would recognise it, for messages. */
function describe(value: unknown): string {
  if (value === null) return "None";
  if (value === undefined) return "nothing";
  if (value === true) return "True";
  if (value === false) return "False";
  if (Array.isArray(value)) return "a list";
  if (typeof value === "object") return "a dict";
  const text = JSON.stringify(value);
  return text.length > 60 ? `${text.slice(0, 60)}…` : text;
}

/** `settings[key]` when it is a dict; an error when it is something else; undefined when it is absent. */
function dictOf(settings: Settings, key: string, out: Draft): Settings | undefined {
  if (!(key in settings)) return undefined;
  const value = settings[key];
  if (isDict(value)) return value;
  out.error(`${key}: must be a dict, got ${describe(value)}`);
  return undefined;
}

/** A port as SocketShark took it: a number or a numeric string (`WS_PORT = "9000"`). */
function portOf(value: unknown, from: string, out: Draft): number | undefined {
  const port = typeof value === "string" && /^\s*\d+\s*$/.test(value) ? Number(value) : value;
  if (typeof port === "number" && Number.isInteger(port) && port >= 0 && port <= 65535) return port;
  out.error(`${from}: must be a port number, got ${describe(value)}`);
  return undefined;
}

function secondsOf(value: unknown, from: string, out: Draft): number | undefined {
  if (typeof value === "number" && Number.isFinite(value) && value >= 0) return value;
  out.error(`${from}: must be a number of seconds, got ${describe(value)}`);
  return undefined;
}

/**
 * A list of field names; names Shoal's config refuses (`__proto__` and the like; protocol keys when `reserved`)
 * are left out with a warning.
 */
function fieldList(
  value: unknown,
  from: string,
  at: readonly string[],
  reserved: boolean,
  out: Draft,
): string[] | undefined {
  if (!Array.isArray(value) || !value.every((name) => typeof name === "string")) {
    out.error(`${from}: must be a list of field names, got ${describe(value)}`);
    return undefined;
  }
  const why = (name: string) =>
    UNSAFE_FIELDS.includes(name)
      ? "not a plain key in JavaScript"
      : reserved && RESERVED_FIELDS.includes(name)
      ? "a protocol key, which SocketShark let it overwrite"
      : undefined;
  const refused = value.filter((name) => why(name) !== undefined);
  if (refused.length > 0) {
    const consequence = from.endsWith(".filter_fields")
      ? "; messages are no longer filtered on them: check who receives what"
      : "";
    out.warn(
      `${from}: left out, as Shoal refuses them: ${
        refused.map((name) => `${name} (${why(name)})`).join(", ")
      }${consequence}`,
      at,
    );
  }
  return value.filter((name) => !refused.includes(name));
}

function warnUnknown(given: Settings, known: readonly string[], from: string, at: readonly string[], out: Draft): void {
  const unknown = Object.keys(given).filter((key) => !known.includes(key));
  if (unknown.length > 0) {
    out.warn(`${from}: unknown keys ignored (SocketShark ignores them too): ${unknown.join(", ")}`, at);
  }
}

// ------------------------------------------------------------------------------------------------ the module text

type Tree = { [key: string]: Value };
type Value = string | number | boolean | readonly string[] | Tree;

/** The config being built, where each value came from, the comments to print, warnings and errors. */
class Draft {
  readonly tree: Tree = {};
  readonly warnings: string[] = [];
  readonly errors: string[] = [];
  readonly #origins = new Map<string, string>();
  readonly #notes: { at: readonly string[]; text: string }[] = [];

  /** Set `path` (creating the objects above it), remembering which setting it came from. */
  set(path: readonly string[], value: Value, origin: string): void {
    let node = this.tree;
    for (const key of path.slice(0, -1)) {
      const next = Object.hasOwn(node, key) ? node[key] : undefined;
      if (next === undefined || typeof next !== "object" || Array.isArray(next)) node[key] = {};
      node = node[key] as Tree;
    }
    const last = path[path.length - 1];
    // An object set twice (a service, then its keys) keeps what it holds.
    if (!(isTree(value) && Object.keys(value).length === 0 && isTree(node[last]))) node[last] = value;
    this.#origins.set(pathKey(path), origin);
  }

  /** A warning, also printed as a comment at `at` (or at the nearest object above it that is in the output). */
  warn(text: string, at: readonly string[]): void {
    this.warnings.push(text);
    this.#notes.push({ at, text: `NOTE: ${text}` });
  }

  note(text: string, at: readonly string[]): void {
    this.#notes.push({ at, text });
  }

  error(text: string): void {
    this.errors.push(text);
  }

  /** Shoal's own validation of the result; its problems name the setting they came from. */
  validate(): void {
    try {
      parseConfig(this.tree);
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      throw new SettingsError(error.problems.map((problem) => {
        const path = problem.slice(0, problem.indexOf(": ")).split(".");
        const origin = this.#originOf(path);
        return origin ? `${origin} → ${problem}` : problem;
      }));
    }
  }

  #originOf(path: readonly string[]): string | undefined {
    for (let n = path.length; n > 0; n--) {
      const origin = this.#origins.get(pathKey(path.slice(0, n)));
      if (origin) return origin;
    }
    return undefined;
  }

  print({ sourceName, typesFrom }: FromSocketsharkOptions): string {
    // The path is text of the user's file system: a line break in it must not end the comment (it is code after).
    const from = sourceName ? ` (${oneLine(sourceName)})` : "";
    const lines = [
      `// Shoal config converted from SocketShark settings${from} by \`shoal config from-socketshark\`.`,
      "// Durations are in seconds, as in SocketShark; each value names the setting it came from. Read every NOTE,",
      '// and docs/migration.md for what Shoal does differently. Shoal\'s limits (README, "Security") keep their',
      "// defaults, and its POST /publish API stays off until publish.token is set.",
    ];
    if (typesFrom !== undefined) lines.push(`import type { ConfigInput } from ${JSON.stringify(typesFrom)};`);
    lines.push("");
    for (const note of this.#notesAfter([])) lines.push(...comment(note, ""));
    lines.push(
      "export default {",
      ...this.#printTree(this.tree, [], "  "),
      `}${typesFrom !== undefined ? " satisfies ConfigInput" : ""};`,
      "",
    );
    return lines.join("\n");
  }

  #printTree(tree: Tree, path: readonly string[], indent: string): string[] {
    const lines: string[] = [];
    const parent = this.#origins.get(pathKey(path));
    for (const [key, value] of Object.entries(tree)) {
      const at = [...path, key];
      for (const note of this.#notesBefore(at)) lines.push(...comment(note, indent));
      // Inside `services.books: { // SERVICES.books`, `on_message` says enough.
      const origin = this.#origins.get(pathKey(at));
      const shown = parent && origin?.startsWith(`${parent}.`) ? origin.slice(parent.length + 1) : origin;
      const tail = shown && shown !== key ? ` // ${oneLine(shown)}` : "";
      if (isTree(value)) {
        const inner = this.#printTree(value, at, `${indent}  `);
        if (inner.length === 0) lines.push(`${indent}${property(key)}: {},${tail}`);
        else lines.push(`${indent}${property(key)}: {${tail}`, ...inner, `${indent}},`);
      } else {
        lines.push(`${indent}${property(key)}: ${literal(value)},${tail}`);
      }
    }
    if (path.length > 0) { for (const note of this.#notesAfter(path)) lines.push(...comment(note, indent)); }
    return lines;
  }

  /** Notes about `at` when it is in the output. */
  #notesBefore(at: readonly string[]): string[] {
    return this.#notes.filter((note) => pathKey(note.at) === pathKey(at) && at.length > 0).map((note) => note.text);
  }

  /** Notes about keys missing from the output whose nearest object in it is `path` (`[]`: above the export). */
  #notesAfter(path: readonly string[]): string[] {
    return this.#notes
      .filter((note) =>
        !(note.at.length > 0 && this.#has(note.at)) && pathKey(this.#nearest(note.at)) === pathKey(path)
      )
      .map((note) => note.text);
  }

  #has(path: readonly string[]): boolean {
    let node: Value = this.tree;
    for (const key of path) {
      if (!isTree(node) || !Object.hasOwn(node, key)) return false;
      node = node[key];
    }
    return true;
  }

  /** The longest prefix of `path` that is an object in the output. */
  #nearest(path: readonly string[]): readonly string[] {
    for (let n = path.length; n > 0; n--) {
      const prefix = path.slice(0, n);
      if (this.#has(prefix) && isTree(this.#get(prefix))) return prefix;
    }
    return [];
  }

  #get(path: readonly string[]): Value {
    let node: Value = this.tree;
    for (const key of path) node = (node as Tree)[key];
    return node;
  }
}

function isTree(value: Value | undefined): value is Tree {
  return value !== undefined && typeof value === "object" && !Array.isArray(value);
}

function pathKey(path: readonly string[]): string {
  return JSON.stringify(path);
}

/** A key as written in an object literal. */
function property(key: string): string {
  return /^[A-Za-z_$][A-Za-z0-9_$]*$/.test(key) ? key : JSON.stringify(key);
}

function literal(value: Exclude<Value, Tree>): string {
  if (Array.isArray(value)) return `[${value.map((item) => JSON.stringify(item)).join(", ")}]`;
  return JSON.stringify(value);
}

/** A comment's text on one line: a line break (U+2028 and U+2029 included) would end a `//` comment. */
function oneLine(text: string): string {
  return text.replace(/[\r\n\u2028\u2029]/g, " ");
}

/** `// ` lines of at most about 110 characters. */
function comment(text: string, indent: string): string[] {
  const lines: string[] = [];
  let line = "";
  for (const word of oneLine(text).split(" ")) {
    if (line !== "" && indent.length + 3 + line.length + 1 + word.length > 116) {
      lines.push(`${indent}// ${line}`);
      line = word;
    } else {
      line = line === "" ? word : `${line} ${word}`;
    }
  }
  if (line !== "") lines.push(`${indent}// ${line}`);
  return lines;
}

function readProblem(error: unknown): string {
  const code = (error as { code?: string }).code;
  if (code === "ENOENT") return "no such file";
  if (code === "EACCES" || code === "EPERM") return "permission denied";
  if (code === "EISDIR") return "is a directory";
  return error instanceof Error ? error.message.split("\n")[0] : String(error);
}

async function readStandardInput(): Promise<string> {
  const decoder = new TextDecoder();
  let text = "";
  for await (const chunk of process.stdin as AsyncIterable<Uint8Array | string>) {
    text += typeof chunk === "string" ? chunk : decoder.decode(chunk, { stream: true });
  }
  return text + decoder.decode();
}
