import { parsePort } from "./config.ts";

/** The `SHOAL_*` variables that override a config module, for containers; each one names the key it sets. */
export const ENV_VARIABLES = {
  SHOAL_HOST: "ws.host",
  SHOAL_DEFAULT_HOST: "ws.host when neither the config nor SHOAL_HOST sets it (the Docker image: 0.0.0.0)",
  SHOAL_PORT: "ws.port",
  SHOAL_BROKER_URL: "broker.url (broker.nodes for redis-cluster: comma-separated)",
  SHOAL_UPSTASH_TOKEN: "broker.token (upstash)",
  SHOAL_LOG_LEVEL: "log.level",
  SHOAL_LOG_FORMAT: "log.format",
  SHOAL_PUBLISH_TOKEN: "publish.token",
  SHOAL_ADMIN_TOKEN: "admin.token",
  SHOAL_METRICS_PORT: "metrics.prometheus.port",
} as const;

type Input = Record<string, unknown>;

const object = (value: unknown): Input =>
  value !== null && typeof value === "object" && !Array.isArray(value) ? value as Input : {};


/** The broker section with `SHOAL_BROKER_URL`/`SHOAL_UPSTASH_TOKEN` applied. */
function broker(current: Input, url: string | undefined, token: string | undefined): Input {
  let next = { ...current };
  if (url !== undefined) {
    const kind = next.kind ?? "memory";
    if (kind === "redis-cluster") {
      next.nodes = url.split(",").map((node) => node.trim()).filter((node) => node !== "");
    } else if (kind === "memory") {
      // A memory broker has no URL: the scheme picks the broker kind.
      next = /^https?:\/\//.test(url) ? { kind: "upstash", url } : { kind: "redis", url };
    } else {
      next.url = url;
    }
  }
  if (token !== undefined) next.token = token;
  return next;
}

/**
 * Apply the `SHOAL_*` environment variables to a config module's export (before validation, so a bad value is
 * reported with the variable it came from). Precedence: config module < environment < command-line flags. Returns
 * the names of the variables applied and, for `parseConfig`, which variable set which key.
 */
export function applyEnv(
  input: unknown,
  env: (name: string) => string | undefined,
): { input: Input; applied: string[]; origins: Map<string, string> } {
  const config: Input = { ...object(input) };
  const applied: string[] = [];
  const origins = new Map<string, string>();
  const read = (name: keyof typeof ENV_VARIABLES, ...keys: string[]) => {
    const value = env(name);
    // An empty value is an unset one (a compose file's `${HOST}` with HOST unset), never "listen on nothing".
    if (value === undefined || value === "") return undefined;
    applied.push(name);
    for (const key of keys) origins.set(key, `${name}=${JSON.stringify(value)}`);
    return value;
  };
  // A default, not an override: the config's own ws.host wins over it (a container's image sets it).
  const configHost = object(config.ws).host;
  const host = read("SHOAL_HOST", "ws.host") ?? (configHost === undefined ? read("SHOAL_DEFAULT_HOST", "ws.host") : undefined);
  const listenPort = read("SHOAL_PORT", "ws.port");
  if (host !== undefined || listenPort !== undefined) {
    config.ws = {
      ...object(config.ws),
      ...(host !== undefined ? { host } : {}),
      ...(listenPort !== undefined ? { port: parsePort("SHOAL_PORT (sets ws.port)", listenPort) } : {}),
    };
  }
  const brokerUrl = read("SHOAL_BROKER_URL", "broker.url", "broker.nodes", "broker.kind");
  const upstashToken = read("SHOAL_UPSTASH_TOKEN", "broker.token");
  if (brokerUrl !== undefined || upstashToken !== undefined) {
    const before = object(config.broker).kind ?? "memory";
    const next = broker(object(config.broker), brokerUrl, upstashToken);
    config.broker = next;
    // The URL chose the broker kind: whatever that kind then lacks is the variable's doing.
    if (next.kind !== before) {
      origins.set("broker", `SHOAL_BROKER_URL=${JSON.stringify(brokerUrl)} (makes broker.kind ${String(next.kind)})`);
    }
  }
  const level = read("SHOAL_LOG_LEVEL", "log.level");
  const format = read("SHOAL_LOG_FORMAT", "log.format");
  if (level !== undefined || format !== undefined) {
    config.log = {
      ...object(config.log),
      ...(level !== undefined ? { level } : {}),
      ...(format !== undefined ? { format } : {}),
    };
  }
  const publishToken = read("SHOAL_PUBLISH_TOKEN", "publish.token");
  if (publishToken !== undefined) config.publish = { ...object(config.publish), token: publishToken };
  const adminToken = read("SHOAL_ADMIN_TOKEN", "admin.token");
  if (adminToken !== undefined) config.admin = { ...object(config.admin), token: adminToken };
  const metricsPort = read("SHOAL_METRICS_PORT", "metrics.prometheus.port");
  if (metricsPort !== undefined) {
    const metrics = object(config.metrics);
    config.metrics = {
      ...metrics,
      prometheus: { ...object(metrics.prometheus), port: parsePort("SHOAL_METRICS_PORT (sets metrics.prometheus.port)", metricsPort) },
    };
  }
  return { input: config, applied, origins };
}
