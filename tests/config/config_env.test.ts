import assert from "node:assert/strict";
import { test } from "node:test";
import { ConfigError, parseConfig } from "../../src/config.ts";
import { applyEnv } from "../../src/config_env.ts";
import { checkExposure, EXAMPLE_PUBLISH_TOKEN, isLoopback } from "../../src/cli/load_config.ts";

const env = (vars: Record<string, string>) => (name: string) => vars[name];

test("env: each SHOAL_* variable sets its key; unrelated keys are kept; nothing set gives the input back", () => {
  const input = { ws: { host: "0.0.0.0", maxPendingEvents: 5 }, log: { format: "json" }, publish: { maxBodyBytes: 10 } };
  assert.deepEqual(applyEnv(input, env({})), { input, applied: [], origins: new Map() });
  const { input: out, applied } = applyEnv(input, env({
    SHOAL_HOST: "10.0.0.1",
    SHOAL_PORT: "8080",
    SHOAL_LOG_LEVEL: "debug",
    SHOAL_PUBLISH_TOKEN: "tok",
    SHOAL_METRICS_PORT: "9090",
  }));
  assert.deepEqual(out, {
    ws: { host: "10.0.0.1", port: 8080, maxPendingEvents: 5 },
    log: { format: "json", level: "debug" },
    publish: { maxBodyBytes: 10, token: "tok" },
    metrics: { prometheus: { port: 9090 } },
  });
  assert.deepEqual(applied, ["SHOAL_HOST", "SHOAL_PORT", "SHOAL_LOG_LEVEL", "SHOAL_PUBLISH_TOKEN", "SHOAL_METRICS_PORT"]);
  assert.equal(parseConfig(out).ws.port, 8080);
});

test("env: SHOAL_BROKER_URL sets the URL of the configured broker, or picks redis/upstash from the scheme", () => {
  const redis = { broker: { kind: "redis", url: "redis://old:6379", channelPrefix: "p:" } };
  assert.deepEqual(applyEnv(redis, env({ SHOAL_BROKER_URL: "rediss://new:6380/2" })).input.broker, {
    kind: "redis",
    url: "rediss://new:6380/2",
    channelPrefix: "p:",
  });
  assert.deepEqual(applyEnv({}, env({ SHOAL_BROKER_URL: "redis://r:6379" })).input.broker, { kind: "redis", url: "redis://r:6379" });
  assert.deepEqual(
    applyEnv({ broker: { kind: "memory" } }, env({ SHOAL_BROKER_URL: "https://x.upstash.io", SHOAL_UPSTASH_TOKEN: "T" })).input.broker,
    { kind: "upstash", url: "https://x.upstash.io", token: "T" },
  );
  assert.deepEqual(
    applyEnv({ broker: { kind: "redis-cluster", nodes: ["redis://a:1"] } }, env({ SHOAL_BROKER_URL: "redis://b:1, redis://c:1" }))
      .input.broker,
    { kind: "redis-cluster", nodes: ["redis://b:1", "redis://c:1"] },
  );
});

test("env: a bad port names the variable; a bad value for a validated key is reported by parseConfig", () => {
  for (const bad of ["abc", "70000", "1.5", "-1", "0x50", " 80 ", "1e3", "0b101"]) {
    assert.throws(() => applyEnv({}, env({ SHOAL_PORT: bad })), (e: unknown) => {
      assert.ok(e instanceof ConfigError);
      assert.match(e.problems[0], /^SHOAL_PORT \(sets ws.port\): not a port/);
      return true;
    });
  }
  assert.throws(() => applyEnv({}, env({ SHOAL_METRICS_PORT: "x" })), /SHOAL_METRICS_PORT \(sets metrics.prometheus.port\): not a port/);
  // An empty value is an unset one (a compose file's `${VAR}` with VAR unset): the config's own value stays.
  assert.deepEqual(applyEnv({ ws: { host: "127.0.0.1" } }, env({ SHOAL_HOST: "", SHOAL_PORT: "" })), {
    input: { ws: { host: "127.0.0.1" } },
    applied: [],
    origins: new Map(),
  });
  const { input } = applyEnv({}, env({ SHOAL_LOG_LEVEL: "loud" }));
  assert.throws(() => parseConfig(input), (e: unknown) => e instanceof ConfigError && /^log\.level: /.test(e.problems[0]));
});

test("applyEnv: errors in a value from the environment name the variable and its value", () => {
  const { input, origins } = applyEnv({}, env({ SHOAL_LOG_FORMAT: "xml", SHOAL_BROKER_URL: "not a url" }));
  assert.throws(() => parseConfig(input, origins), (e: ConfigError) => {
    assert.ok(e.problems.some((p) => /^SHOAL_LOG_FORMAT="xml" \(sets log\.format\): .*"auto" \| "json" \| "pretty"/.test(p)));
    assert.ok(e.problems.some((p) => p.startsWith('SHOAL_BROKER_URL="not a url" (sets broker.url): ')));
    return true;
  });
  // The same mistake made in the config module names the key only.
  assert.throws(() => parseConfig({ log: { format: "xml" } }), /  - log\.format: Invalid type/);
});

test("applyEnv: SHOAL_DEFAULT_HOST is a default: the config's ws.host and SHOAL_HOST both beat it", () => {
  const host = (config: Record<string, unknown>, vars: Record<string, string>) =>
    (applyEnv(config, env(vars)).input.ws as { host?: string } | undefined)?.host;
  assert.equal(host({}, { SHOAL_DEFAULT_HOST: "0.0.0.0" }), "0.0.0.0");
  assert.equal(host({ ws: { port: 1 } }, { SHOAL_DEFAULT_HOST: "0.0.0.0" }), "0.0.0.0");
  assert.equal(host({ ws: { host: "10.0.0.5" } }, { SHOAL_DEFAULT_HOST: "0.0.0.0" }), "10.0.0.5");
  assert.equal(host({ ws: { host: "10.0.0.5" } }, { SHOAL_DEFAULT_HOST: "0.0.0.0", SHOAL_HOST: "::" }), "::");
  assert.deepEqual(applyEnv({ ws: { host: "10.0.0.5" } }, env({ SHOAL_DEFAULT_HOST: "0.0.0.0" })).applied, []);
});

test("checkExposure: the example publish token only on loopback", () => {
  const config = (host: string, token?: string) => ({ ...parseConfig({ publish: { token } }), ws: { ...parseConfig({}).ws, host } });
  for (const host of ["127.0.0.1", "127.1.2.3", "localhost", "::1"]) {
    assert.equal(isLoopback(host), true, host);
    checkExposure(config(host, EXAMPLE_PUBLISH_TOKEN));
  }
  for (const host of ["0.0.0.0", "::", "10.0.0.1", "example.com"]) {
    assert.equal(isLoopback(host), false, host);
    assert.throws(() => checkExposure(config(host, EXAMPLE_PUBLISH_TOKEN)), /publish\.token: the example token/);
    checkExposure(config(host, "a-real-secret"));
    checkExposure(config(host));
  }
});

test("env: SHOAL_ADMIN_TOKEN sets admin.token, keeping the config's other admin keys", () => {
  const { input, applied } = applyEnv({ admin: { reportInterval: 2 } }, env({ SHOAL_ADMIN_TOKEN: "adm1n" }));
  assert.deepEqual(input.admin, { reportInterval: 2, token: "adm1n" });
  assert.deepEqual(applied, ["SHOAL_ADMIN_TOKEN"]);
  const bad = applyEnv({}, env({ SHOAL_ADMIN_TOKEN: "has space" }));
  assert.throws(() => parseConfig(bad.input, bad.origins), /SHOAL_ADMIN_TOKEN="has space" \(sets admin\.token\)/);
});
