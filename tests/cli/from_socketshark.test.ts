import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import process from "node:process";
import { test } from "node:test";
import { fileURLToPath, pathToFileURL } from "node:url";
import {
  type CommandIo,
  FROM_SOCKETSHARK_USAGE,
  fromSocketshark,
  fromSocketsharkCommand,
  SettingsError,
} from "../../src/cli/from_socketshark.ts";
import { type Config, parseConfig } from "../../src/config.ts";

const HERE = dirname(fileURLToPath(import.meta.url));
const CONFIG_TS = join(HERE, "..", "..", "src", "config.ts");

function fixture(name: string): unknown {
  return JSON.parse(readFileSync(join(HERE, "fixtures", name), "utf8"));
}

/** Write a converted module to a file, import it as Shoal would and validate its default export. */
async function load(source: string): Promise<Config> {
  const dir = mkdtempSync(join(tmpdir(), "shoal-from-socketshark-"));
  try {
    const path = join(dir, "config.ts");
    writeFileSync(path, source);
    const module = await import(pathToFileURL(path).href);
    return parseConfig(module.default);
  } catch (error) {
    throw new Error(`${error}\n--- the module:\n${source}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Convert, import and validate; the warnings and the module text too. */
async function convert(settings: unknown): Promise<{ config: Config; warnings: string[]; source: string }> {
  const { source, warnings } = fromSocketshark(settings);
  return { config: await load(source), warnings, source };
}

/** The problems of settings that cannot be converted (fails the test if they can). */
function problems(settings: unknown): readonly string[] {
  try {
    fromSocketshark(settings);
  } catch (error) {
    assert.ok(error instanceof SettingsError, `expected a SettingsError, got ${error}`);
    for (const problem of error.problems) assert.ok(error.message.includes(problem));
    return error.problems;
  }
  assert.fail(`converted ${JSON.stringify(settings)}`);
}

/** The one warning that starts with `prefix`, which also appears in the module as a NOTE comment. */
function warning(result: { warnings: string[]; source: string }, prefix: string): string {
  const found = result.warnings.filter((w) => w.startsWith(prefix));
  assert.equal(
    found.length,
    1,
    `expected one warning starting ${JSON.stringify(prefix)}, got ${JSON.stringify(result.warnings)}`,
  );
  const firstWords = prefix.split(" ").slice(0, 2).join(" ");
  assert.ok(result.source.includes(`// NOTE: ${firstWords}`), `no NOTE comment for ${prefix} in:\n${result.source}`);
  return found[0];
}

const URL_A = "http://svc.test/a/";

// ---------------------------------------------------------------- SocketShark's own settings files

test("from-socketshark: example_config.py converts without warnings to the expected module, which validates", async () => {
  const { source, warnings } = fromSocketshark(fixture("example_config.json"), {
    sourceName: "example_config.json",
    typesFrom: "../../../src/config.ts",
  });
  assert.deepEqual(warnings, []);
  assert.equal(source, readFileSync(join(HERE, "fixtures", "example_config.expected.ts"), "utf8"));
  // The type import is erased at run time, wherever the module is put.
  const config = await load(source);
  assert.equal(config.ws.host, "127.0.0.1");
  assert.equal(config.ws.port, 9000);
  assert.deepEqual(config.broker, {
    kind: "redis",
    url: "redis://localhost:6379",
    channelPrefix: "",
    pingInterval: 10,
    pingTimeout: 5,
    connectTimeout: 10,
    maxReconnectDelay: 5,
    onConnectionLoss: "reconnect",
  });
  assert.deepEqual(config.metrics, { prometheus: { host: "0.0.0.0", port: 9090, prefix: "socketshark" } });
  assert.deepEqual(config.authentication, {
    ticket: { validationUrl: "http://auth-service/auth/ticket/", authFields: ["session_id", "user_id"] },
  });
  assert.deepEqual(config.services, {
    my_service: {
      requireAuthentication: true,
      authorizer: "http://auth-service/auth/authorizer/",
      authorizerFields: ["capabilities"],
      authorizationRenewalPeriod: 300,
      authorizationRenewalJitter: 30,
      extraFields: ["organization_id"],
      filterFields: ["user_id"],
      beforeSubscribe: "http://my-service/subscribe/",
      beforeUnsubscribe: "http://my-service/unsubscribe/",
      onSubscribe: "http://my-service/on_subscribe/",
      onUnsubscribe: "http://my-service/on_unsubscribe/",
      onMessage: "http://my-service/on_message/",
      heartbeatPeriod: 30,
      onHeartbeat: "http://my-service/on_heartbeat/",
    },
  });
});

test("from-socketshark: config_defaults.py converts without warnings to Shoal's defaults, with Redis as the broker", async () => {
  const { config, warnings } = await convert(fixture("config_defaults.json"));
  assert.deepEqual(warnings, []);
  // Every default SocketShark has is Shoal's too, except the broker: SocketShark always used Redis.
  const defaults = parseConfig({});
  assert.deepEqual({ ...config, broker: undefined }, { ...defaults, broker: undefined });
  assert.deepEqual(config.broker, parseConfig({ broker: { kind: "redis", url: "redis://localhost:6379" } }).broker);
});

test("from-socketshark: tests/test_basic.py's settings (every callback, REDIS_ALT, sub-second timings) convert", async () => {
  const { config, warnings } = await convert(fixture("test_basic_alt_redis.json"));
  assert.deepEqual(warnings, []);
  assert.equal(config.ws.port, 9001);
  assert.deepEqual(config.ws.ping, { interval: 0.1, timeout: 0.1 });
  assert.deepEqual(
    {
      timeout: config.http.timeout,
      tries: config.http.tries,
      wait: config.http.wait,
      names: config.http.rateLimitResetHeaderNames,
    },
    { timeout: 1, tries: 1, wait: 1, names: ["X-Rate-Limit-Reset"] },
  );
  assert.equal(config.broker.kind, "redis");
  if (config.broker.kind !== "redis") return;
  assert.equal(config.broker.url, "redis://127.0.0.1:6379");
  assert.equal(config.broker.pingInterval, 0.1);
  assert.equal(config.broker.pingTimeout, 0.1);
  assert.deepEqual(config.broker.alt, { url: "redis://127.0.0.1:6379", channelPrefix: "alt:" });
  assert.deepEqual(Object.keys(config.services), [
    "empty",
    "simple",
    "simple_auth",
    "simple_before_subscribe",
    "authorizer",
    "periodic_authorizer",
    "periodic_authorizer_with_fields",
    "periodic_heartbeat",
    "complex",
    "ws_test",
  ]);
  assert.equal(config.services.empty.requireAuthentication, true);
  assert.deepEqual(config.services.simple.filterFields, ["session_id", "extra"]);
  assert.equal(
    config.services.periodic_authorizer_with_fields.onAuthorizationChange,
    "http://my-service/on_auth_change/",
  );
  assert.equal(config.services.periodic_authorizer_with_fields.authorizationRenewalPeriod, 0.2);
  assert.equal(config.services.periodic_heartbeat.heartbeatPeriod, 0.2);
  assert.equal(config.services.complex.onMessage, "http://my-service/on_message/");
});

// ---------------------------------------------------------------- Redis

test("from-socketshark: REDIS with password, db and ssl becomes a rediss:// URL, with a warning that SocketShark ignored them", async () => {
  const result = await convert({
    REDIS: { host: "redis.internal", port: 6380, db: 3, password: "p@ss:w/rd", ssl: true },
  });
  assert.equal(
    result.config.broker.kind === "redis" && result.config.broker.url,
    "rediss://:p%40ss%3Aw%2Frd@redis.internal:6380/3",
  );
  assert.match(
    warning(result, "REDIS: password, ssl are not read by SocketShark"),
    /which connects without them; Shoal uses them in the URL/,
  );
});

test("from-socketshark: REDIS username, an IPv6 host, a string port and db; ssl options cannot be carried over", async () => {
  const result = await convert({
    REDIS: { host: "::1", port: "6379", db: "2", username: "app", password: "s", ssl: { ca_certs: "/ca" } },
  });
  assert.equal(result.config.broker.kind === "redis" && result.config.broker.url, "rediss://app:s@[::1]:6379/2");
  assert.match(warning(result, "REDIS.ssl: TLS options (ca_certs) cannot be carried over"), /rediss:\/\//);
  const plain = await convert({ REDIS: { host: "r", ssl: false, password: null } });
  assert.equal(plain.config.broker.kind === "redis" && plain.config.broker.url, "redis://r:6379");
  assert.deepEqual(plain.warnings, []);
});

test("from-socketshark: REDIS is merged into SocketShark's default; without REDIS the broker is SocketShark's default Redis", async () => {
  const partial = await convert({ REDIS: { host: "cache", channel_prefix: "ss:", ping_interval: null } });
  assert.equal(partial.config.broker.kind, "redis");
  if (partial.config.broker.kind !== "redis") return;
  assert.equal(partial.config.broker.url, "redis://cache:6379");
  assert.equal(partial.config.broker.channelPrefix, "ss:");
  assert.equal(partial.config.broker.pingInterval, 0, "None turns Redis pings off, as in SocketShark");
  const none = await convert({});
  assert.equal(none.config.broker.kind === "redis" && none.config.broker.url, "redis://localhost:6379");
  assert.match(none.source, /REDIS \(SocketShark's default\)/);
  assert.match(none.source.replace(/\n\s*\/\/ /g, " "), /onConnectionLoss: "shutdown" restores/);
});

test("from-socketshark: REDIS_ALT without some keys and with its own ping settings converts with warnings", async () => {
  const result = await convert({ REDIS: { host: "new" }, REDIS_ALT: { host: "old", port: 6379, ping_interval: 3 } });
  assert.deepEqual(result.config.broker.kind === "redis" && result.config.broker.alt, {
    url: "redis://old:6379",
    channelPrefix: "",
  });
  warning(result, "REDIS_ALT: lacks channel_prefix, ping_timeout");
  warning(result, "REDIS_ALT.ping_interval: 3 ignored");
  assert.equal((await convert({ REDIS_ALT: null })).warnings.length, 0);
});

// ---------------------------------------------------------------- services, authentication, metrics

test("from-socketshark: a service with every setting maps each key to its Shoal name", async () => {
  const { config, warnings } = await convert({
    SERVICES: {
      books: {
        require_authentication: false,
        authorizer: `${URL_A}authorizer`,
        authorizer_fields: ["capabilities"],
        authorization_renewal_period: 60,
        authorization_renewal_jitter: 5,
        extra_fields: ["book_id"],
        filter_fields: ["user_id", "book_id"],
        before_subscribe: `${URL_A}before_subscribe`,
        on_subscribe: `${URL_A}on_subscribe`,
        on_message: `${URL_A}on_message`,
        before_unsubscribe: `${URL_A}before_unsubscribe`,
        on_unsubscribe: `${URL_A}on_unsubscribe`,
        on_authorization_change: `${URL_A}on_authorization_change`,
        heartbeat_period: 30,
        on_heartbeat: `${URL_A}on_heartbeat`,
      },
    },
  });
  assert.deepEqual(warnings, []);
  assert.deepEqual(config.services.books, {
    requireAuthentication: false,
    authorizer: `${URL_A}authorizer`,
    authorizerFields: ["capabilities"],
    authorizationRenewalPeriod: 60,
    authorizationRenewalJitter: 5,
    extraFields: ["book_id"],
    filterFields: ["user_id", "book_id"],
    beforeSubscribe: `${URL_A}before_subscribe`,
    onSubscribe: `${URL_A}on_subscribe`,
    onMessage: `${URL_A}on_message`,
    beforeUnsubscribe: `${URL_A}before_unsubscribe`,
    onUnsubscribe: `${URL_A}on_unsubscribe`,
    onAuthorizationChange: `${URL_A}on_authorization_change`,
    heartbeatPeriod: 30,
    onHeartbeat: `${URL_A}on_heartbeat`,
  });
});

test("from-socketshark: service settings Shoal cannot keep are left out, each with a warning and a NOTE", async () => {
  const result = await convert(JSON.parse(JSON.stringify({
    SERVICES: {
      a: { authorizer: null, before_subscribe: null, on_message: URL_A, require_authentication: null },
      b: { authorization_renewal_period: 10, heartbeat_period: 5 },
      c: {
        on_heartbeat: URL_A,
        extra_fields: ["event", "x"],
        filter_fields: ["received_at"],
        authorizer_fields: ["status"],
      },
      "d.e": {},
    },
  })));
  const { services } = result.config;
  assert.deepEqual(services.a, {
    requireAuthentication: false,
    onMessage: URL_A,
    authorizerFields: [],
    extraFields: [],
    filterFields: [],
    authorizationRenewalJitter: 0,
  });
  assert.match(
    warning(result, "SERVICES.a.authorizer: None"),
    /callback is off \(subscriptions SocketShark refused are now authorized\)/,
  );
  warning(result, "SERVICES.a.before_subscribe: None");
  warning(result, "SERVICES.a.require_authentication: None is false");
  warning(result, "SERVICES.b.authorization_renewal_period: left out, there is no authorizer");
  warning(result, "SERVICES.b.heartbeat_period: left out, without on_heartbeat");
  warning(result, "SERVICES.c.on_heartbeat: left out, without heartbeat_period");
  assert.equal(services.b.heartbeatPeriod, undefined);
  assert.equal(services.c.onHeartbeat, undefined);
  assert.deepEqual(services.c.extraFields, ["x"]);
  assert.deepEqual(services.c.filterFields, []);
  assert.deepEqual(services.c.authorizerFields, ["status"], "authorizer fields may be named like protocol keys");
  assert.equal(
    warning(result, "SERVICES.c.extra_fields: left out"),
    "SERVICES.c.extra_fields: left out, as Shoal refuses them: event (a protocol key, which SocketShark let it overwrite)",
  );
  assert.match(
    warning(result, "SERVICES.c.filter_fields: left out"),
    /received_at .*; messages are no longer filtered on them/,
  );
  warning(result, "SERVICES.d.e: left out");
  assert.equal(services["d.e"], undefined);
});

test("from-socketshark: a service named __proto__ (from JSON) is left out, not turned into a prototype", async () => {
  const result = await convert(JSON.parse('{"SERVICES": {"__proto__": {"on_message": "http://x.test/"}, "ok": {}}}'));
  assert.deepEqual(Object.keys(result.config.services), ["ok"]);
  warning(result, "SERVICES.__proto__: left out");
});

test("from-socketshark: authentication ticket settings, and what SocketShark could not run", async () => {
  const full = await convert({ AUTHENTICATION: { ticket: { validation_url: URL_A, auth_fields: ["user_id"] } } });
  assert.deepEqual(full.config.authentication, { ticket: { validationUrl: URL_A, authFields: ["user_id"] } });
  assert.deepEqual(full.warnings, []);

  const noFields = await convert({ AUTHENTICATION: { ticket: { validation_url: URL_A } } });
  assert.deepEqual(noFields.config.authentication, { ticket: { validationUrl: URL_A, authFields: [] } });
  warning(noFields, "AUTHENTICATION.ticket.auth_fields: missing");

  const noUrl = await convert({ AUTHENTICATION: { ticket: { auth_fields: ["user_id"] } } });
  assert.deepEqual(noUrl.config.authentication, {});
  warning(noUrl, "AUTHENTICATION.ticket.validation_url: missing");

  const other = await convert({ AUTHENTICATION: { oauth: {}, ticket: null } });
  assert.deepEqual(other.config.authentication, {});
  warning(other, 'AUTHENTICATION: methods other than "ticket" ignored');
  warning(other, "AUTHENTICATION.ticket: None");
});

test("from-socketshark: metrics keep SocketShark's names and port; a missing port and unknown providers are warned about", async () => {
  const both = await convert({ METRICS: { prometheus: { host: "10.0.0.5", port: "9100" }, log: {} } });
  assert.deepEqual(both.config.metrics, {
    prometheus: { host: "10.0.0.5", port: 9100, prefix: "socketshark" },
    log: {},
  });
  assert.deepEqual(both.warnings, []);

  const noPort = await convert({ METRICS: { prometheus: {}, statsd: {} } });
  assert.deepEqual(noPort.config.metrics, { prometheus: { prefix: "socketshark" } });
  assert.match(warning(noPort, "METRICS.prometheus.port: missing"), /on the WebSocket port/);
  warning(noPort, "METRICS.statsd: no such metrics provider");

  assert.deepEqual((await convert({ METRICS: {} })).config.metrics, {});
});

// ---------------------------------------------------------------- the rest of the settings

test('from-socketshark: WS_*, HTTP and LOG settings, including None and "" values', async () => {
  const { config, warnings } = await convert({
    WS_HOST: "",
    WS_PORT: 8765,
    WS_SSL: { cert: "/etc/ss/cert.pem", key: "/etc/ss/key.pem" },
    WS_PING: { interval: null, timeout: 20 },
    HTTP: {
      ssl_cafile: "/etc/ss/ca.pem",
      timeout: 5,
      tries: 0,
      wait: 0.5,
      rate_limit_reset_header_names: ["Retry-After", "X-RateLimit-Reset"],
    },
    LOG: { level: "WARNING" },
  });
  assert.deepEqual(warnings, []);
  assert.equal(config.ws.host, "0.0.0.0", 'Python binds every interface for ""');
  assert.equal(config.ws.port, 8765);
  assert.deepEqual(config.ws.tls, { cert: "/etc/ss/cert.pem", key: "/etc/ss/key.pem" });
  assert.deepEqual(config.ws.ping, { interval: 0, timeout: 20 });
  assert.equal(config.http.caFile, "/etc/ss/ca.pem");
  assert.deepEqual([config.http.timeout, config.http.tries, config.http.wait], [5, 0, 0.5]);
  assert.deepEqual(config.http.rateLimitResetHeaderNames, ["Retry-After", "X-RateLimit-Reset"]);
  assert.equal(config.log.level, "warning");

  // The deprecated single name counts only when the list is empty.
  const single = await convert({
    HTTP: { rate_limit_reset_header_name: "Retry-After", rate_limit_reset_header_names: [] },
  });
  assert.deepEqual(single.config.http.rateLimitResetHeaderNames, ["Retry-After"]);
});

test("from-socketshark: settings Shoal cannot represent keep Shoal's value, with a warning and a NOTE", async () => {
  const result = await convert({
    WS_SSL: { cert: "/both.pem" },
    WS_PING: { timeout: null },
    HTTP: { timeout: null },
    SERVICES: {
      zero: {
        authorizer: URL_A,
        authorization_renewal_period: 0,
        authorization_renewal_jitter: null,
        heartbeat_period: 0,
        on_heartbeat: URL_A,
      },
    },
    LOG: {
      level: null,
      format: "%(asctime)s %(message)s",
      logger_name: "shark",
      trace_level: "DEBUG",
      setup_structlog: false,
    },
    BACKEND: "other",
  });
  assert.deepEqual(result.config.ws.tls, { cert: "/both.pem", key: "/both.pem" });
  warning(result, "WS_SSL.key: not set");
  assert.equal(result.config.ws.ping.timeout, 15);
  warning(result, "WS_PING.timeout: None");
  assert.equal(result.config.http.timeout, 15);
  warning(result, "HTTP.timeout: None");
  assert.equal(result.config.log.level, "info");
  warning(result, "LOG.level: None");
  warning(result, "LOG.format:");
  warning(result, "LOG.logger_name:");
  warning(result, "LOG.trace_level: DEBUG");
  warning(result, "LOG.setup_structlog: off");
  warning(result, 'BACKEND: "other" ignored');
  assert.deepEqual(
    result.config.services.zero,
    parseConfig({ services: { zero: { authorizer: URL_A } } }).services.zero,
  );
  warning(result, "SERVICES.zero.authorization_renewal_period: 0 made SocketShark renew without pause");
  warning(result, "SERVICES.zero.authorization_renewal_jitter: None");
  warning(result, "SERVICES.zero.heartbeat_period, on_heartbeat: left out, heartbeat_period 0");
  const zeroTimeout = await convert({ WS_PING: { timeout: 0 } });
  assert.match(warning(zeroTimeout, "WS_PING.timeout: 0"), /close every connection at its first ping/);
  assert.deepEqual(
    (await convert({ BACKEND: "websockets", LOG: { level: "debug", trace_level: "INFO" } })).warnings,
    [],
  );
});

test("from-socketshark: unknown settings and keys get one warning line each, naming them", async () => {
  const result = await convert({
    WS_HOST: "127.0.0.1",
    TEST_CONFIG: {},
    DEBUG: true,
    REDIS: { host: "r", sentinel: "x" },
    HTTP: { retries: 2 },
    LOG: { colour: true },
    METRICS: { prometheus: { port: 9090, path: "/m" } },
    SERVICES: { s: { on_mesage: URL_A } },
  });
  assert.equal(
    warning(result, "unknown settings ignored"),
    "unknown settings ignored (SocketShark ignores them too): TEST_CONFIG, DEBUG",
  );
  assert.match(warning(result, "REDIS: unknown keys"), /: sentinel$/);
  assert.match(warning(result, "HTTP: unknown keys"), /: retries$/);
  assert.match(warning(result, "LOG: unknown keys"), /: colour$/);
  assert.match(warning(result, "METRICS.prometheus: unknown keys"), /: path$/);
  assert.match(warning(result, "SERVICES.s: unknown keys"), /: on_mesage$/);
  assert.equal(result.warnings.length, 6);
});

test("from-socketshark: strings with quotes, line breaks and U+2028 survive as values and cannot break out of comments", async () => {
  const odd = "a\"b'c`${d}\n*/\u2028e\\";
  const result = await convert({
    REDIS: { channel_prefix: odd },
    LOG: { format: odd },
    SERVICES: { "weird-name": {} },
  });
  assert.equal(result.config.broker.kind === "redis" && result.config.broker.channelPrefix, odd);
  assert.deepEqual(Object.keys(result.config.services), ["weird-name"]);
  warning(result, "LOG.format:");
});

test("from-socketshark: a settings path with a line break cannot break out of the module's first comment", async () => {
  const sourceName = '/tmp/x/a\nglobalThis.injected = true;//x.json';
  const { source } = fromSocketshark({}, { sourceName });
  assert.equal(source.split("\n")[0].startsWith("// Shoal config converted"), true);
  assert.equal(source.split("\n").some((line) => line.startsWith("globalThis")), false);
  await load(source);
  assert.equal((globalThis as { injected?: boolean }).injected, undefined);
});

test("from-socketshark: a REDIS password or username with a lone surrogate is an error naming it, not a crash", () => {
  assert.deepEqual(problems({ REDIS: { host: "localhost", port: 6379, password: "a\ud800b" } }), [
    "REDIS.password: must be well-formed text (it holds a lone surrogate)",
  ]);
});

// ---------------------------------------------------------------- errors

test("from-socketshark: wrong types are errors naming each SocketShark key", () => {
  const found = problems({
    WS_PORT: "abc",
    WS_HOST: 5,
    WS_SSL: "yes",
    WS_PING: { interval: "often" },
    HTTP: { tries: 1.5, timeout: -1, rate_limit_reset_header_names: "X" },
    REDIS: { port: "x" },
    LOG: { level: 20 },
    AUTHENTICATION: { ticket: { validation_url: 5, auth_fields: "user_id" } },
    METRICS: { prometheus: 9090 },
    SERVICES: { s: { on_message: 5, extra_fields: "x", heartbeat_period: "1", on_heartbeat: URL_A }, t: [] },
  });
  const keys = found.map((p) => p.slice(0, p.indexOf(": ")));
  assert.deepEqual(keys.sort(), [
    "AUTHENTICATION.ticket.validation_url",
    "HTTP.rate_limit_reset_header_names",
    "HTTP.timeout",
    "HTTP.tries",
    "LOG.level",
    "METRICS.prometheus",
    "REDIS.port",
    "SERVICES.s.extra_fields",
    "SERVICES.s.heartbeat_period",
    "SERVICES.s.on_message",
    "SERVICES.t",
    "WS_HOST",
    "WS_PING.interval",
    "WS_PORT",
    "WS_SSL",
  ]);
  assert.ok(found.includes('WS_PORT: must be a port number, got "abc"'), found.join("\n"));
  assert.deepEqual(problems({ SERVICES: [] }), ["SERVICES: must be a dict, got a list"]);
  assert.deepEqual(problems([]), ["the settings must be a JSON object of SocketShark settings, got a list"]);
  assert.deepEqual(problems({ REDIS: { host: "redis://h:6379" } }), [
    'REDIS.host: must be a host name or address, got "redis://h:6379"',
  ]);
});

test("from-socketshark: a value Shoal's validation refuses is an error naming the SocketShark key and the Shoal key", () => {
  assert.deepEqual(problems({ SERVICES: { s: { on_message: "/relative/" } } }), [
    "SERVICES.s.on_message → services.s.onMessage: onMessage must be an absolute URL",
  ]);
  const [problem] = problems({ AUTHENTICATION: { ticket: { validation_url: "nope", auth_fields: [] } } });
  assert.match(problem, /^AUTHENTICATION\.ticket\.validation_url → authentication\.ticket\.validationUrl: /);
});

// ---------------------------------------------------------------- the command

/** A command io over an in-memory file system, recording what is written. */
function fakeIo(files: Record<string, string>, stdin?: string): CommandIo & { out: string; err: string } {
  const io = {
    out: "",
    err: "",
    readFile(path: string): Promise<string> {
      if (path in files) return Promise.resolve(files[path]);
      return Promise.reject(
        Object.assign(new Error(`ENOENT: no such file or directory, open '${path}'`), { code: "ENOENT" }),
      );
    },
    ...(stdin !== undefined ? { readStdin: () => Promise.resolve(stdin) } : {}),
    stdout(text: string) {
      io.out += text;
    },
    stderr(text: string) {
      io.err += text;
    },
  };
  return io;
}

const EXAMPLE = readFileSync(join(HERE, "fixtures", "example_config.json"), "utf8");

test("from-socketshark command: prints the module, warnings go to stderr, exit 0", async () => {
  const io = fakeIo({ "settings.json": EXAMPLE });
  assert.equal(await fromSocketsharkCommand(["settings.json"], io), 0);
  assert.equal(io.err, "");
  assert.match(io.out, /^\/\/ Shoal config converted from SocketShark settings \(settings\.json\)/);
  assert.equal((await load(io.out)).metrics.prometheus?.prefix, "socketshark");

  const warned = fakeIo({ "s.json": JSON.stringify({ WS_PORT: 9000, FOO: 1, BAR: 2 }) });
  assert.equal(await fromSocketsharkCommand(["s.json"], warned), 0);
  assert.equal(warned.err, "shoal: warning: unknown settings ignored (SocketShark ignores them too): FOO, BAR\n");
  assert.match(warned.out, /\/\/ NOTE: unknown settings ignored/);
});

test("from-socketshark command: '-' reads standard input; --types adds the type import", async () => {
  const io = fakeIo({}, EXAMPLE);
  assert.equal(await fromSocketsharkCommand(["--types", CONFIG_TS, "-"], io), 0);
  assert.ok(io.out.includes(`import type { ConfigInput } from ${JSON.stringify(CONFIG_TS)};`));
  assert.ok(io.out.trimEnd().endsWith("} satisfies ConfigInput;"));
  assert.equal((await load(io.out)).ws.port, 9000);
});

test("from-socketshark command: usage errors exit 2, --help exits 0", async () => {
  for (const args of [[], ["a.json", "b.json"], ["--nope", "a.json"]]) {
    const io = fakeIo({});
    assert.equal(await fromSocketsharkCommand(args, io), 2, args.join(" "));
    assert.ok(io.err.includes(FROM_SOCKETSHARK_USAGE));
  }
  const help = fakeIo({});
  assert.equal(await fromSocketsharkCommand(["--help"], help), 0);
  assert.equal(help.out, FROM_SOCKETSHARK_USAGE);
  assert.match(FROM_SOCKETSHARK_USAGE, /shoal config from-socketshark/);
  assert.match(FROM_SOCKETSHARK_USAGE, /python -c 'import json, settings; print\(json\.dumps\(/);
});

test("from-socketshark command: unreadable, non-JSON or unconvertible settings exit 1 with a message and no stack", async () => {
  const cases: [string, string | undefined, RegExp][] = [
    ["missing.json", undefined, /^shoal: cannot read missing\.json: no such file\n$/],
    ["bad.json", "{WS_PORT: 1}", /^shoal: bad\.json is not JSON: /],
    [
      "nan.json",
      '{"WS_PING": {"interval": NaN}}',
      /^shoal: nan\.json is not JSON \(NaN and Infinity, which Python writes, are not JSON\): /,
    ],
    ["list.json", "[1]", /^shoal: cannot convert list\.json:\n  - the settings must be a JSON object/],
    [
      "types.json",
      '{"WS_PORT": "abc", "SERVICES": {"s": {"on_message": 5}}}',
      /^shoal: cannot convert types\.json:\n  - WS_PORT: must be a port number, got "abc"\n  - SERVICES\.s\.on_message: must be a URL string, got 5\n$/,
    ],
  ];
  for (const [path, text, expected] of cases) {
    const io = fakeIo(text === undefined ? {} : { [path]: text });
    assert.equal(await fromSocketsharkCommand([path], io), 1, path);
    assert.equal(io.out, "");
    assert.match(io.err, expected);
    assert.doesNotMatch(io.err, /\n\s+at /, "no stack trace");
  }
});

test("from-socketshark command: processIo reads a file or standard input and writes the process's streams", () => {
  const dir = mkdtempSync(join(tmpdir(), "shoal-from-socketshark-"));
  try {
    const module = pathToFileURL(join(HERE, "..", "..", "src", "cli", "from_socketshark.ts")).href;
    const script = join(dir, "run.ts");
    writeFileSync(
      script,
      `import process from "node:process";\n` +
        `import { fromSocketsharkCommand, processIo } from ${JSON.stringify(module)};\n` +
        `process.exitCode = await fromSocketsharkCommand(process.argv.slice(2), processIo);\n`,
    );
    writeFileSync(join(dir, "settings.json"), '{"WS_PORT": "9100", "EXTRA": 1}');
    // The runtime running this test runs the command too.
    const root = join(HERE, "..", "..");
    const runtime = "Deno" in globalThis
      ? [process.execPath, "run", "-A", "--config", join(root, "deno.json"), script]
      : [process.execPath, script];
    const run = (args: string[], input?: string) =>
      spawnSync(runtime[0], [...runtime.slice(1), ...args], {
        cwd: root,
        input,
        encoding: "utf8",
        timeout: 20_000,
        env: { ...process.env, NO_COLOR: "1" },
      });
    const fromFile = run([join(dir, "settings.json")]);
    assert.equal(fromFile.status, 0, fromFile.stderr);
    assert.match(fromFile.stdout, /port: 9100, \/\/ WS_PORT/);
    assert.equal(fromFile.stderr, "shoal: warning: unknown settings ignored (SocketShark ignores them too): EXTRA\n");
    const fromStdin = run(["-"], '{"WS_HOST": "0.0.0.0"}');
    assert.equal(fromStdin.status, 0, fromStdin.stderr);
    assert.match(fromStdin.stdout, /host: "0\.0\.0\.0", \/\/ WS_HOST/);
    const missing = run([join(dir, "nope.json")]);
    assert.equal(missing.status, 1);
    assert.match(missing.stderr, /^shoal: cannot read .*nope\.json: no such file\n$/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
