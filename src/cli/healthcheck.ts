/**
 * `shoal --healthcheck`: GET `/healthz` on the listener that a start with the same config would open, for a
 * container's HEALTHCHECK. It checks liveness, not identity: over TLS the certificate is not verified, since it
 * names the public host while the check dials this machine.
 */
import { type IncomingMessage, request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import process from "node:process";
import type { Config } from "../config.ts";
import { raceTimeout } from "../core/clock.ts";

/** The outcome of one check, and the one line that says so. */
export interface HealthResult {
  readonly ok: boolean;
  readonly line: string;
}

export interface HealthcheckOptions {
  /** Milliseconds for the whole request (default 2000: under a Docker HEALTHCHECK's usual `--timeout=3s`). */
  readonly timeoutMs?: number;
}

/** Where the check dials: the wildcard addresses are reached on loopback (0.0.0.0 → 127.0.0.1, :: → ::1). */
export function healthTarget(ws: Pick<Config["ws"], "host" | "port" | "tls">): { host: string; url: string } {
  const bare = ws.host.startsWith("[") && ws.host.endsWith("]") ? ws.host.slice(1, -1) : ws.host;
  const host = bare === "0.0.0.0" || bare === "" ? "127.0.0.1" : bare === "::" ? "::1" : bare;
  const shown = host.includes(":") ? `[${host}]` : host;
  return { host, url: `${ws.tls ? "https" : "http"}://${shown}:${ws.port}/healthz` };
}

/** GET `/healthz` on `config`'s listener: healthy on 200, anything else (or no answer) is not. */
export async function checkHealth(config: Config, options: HealthcheckOptions = {}): Promise<HealthResult> {
  const { host, url } = healthTarget(config.ws);
  if (config.ws.port === 0) {
    const line = "unhealthy: ws.port is 0 (a free port picked at start), so there is no listener to find: " +
      "set ws.port or SHOAL_PORT";
    return { ok: false, line };
  }
  const timeoutMs = options.timeoutMs ?? 2000;
  const send = config.ws.tls ? httpsRequest : httpRequest;
  let cancel = () => {};
  const answer = new Promise<string | number>((resolve) => {
    const req = send({
      host,
      port: config.ws.port,
      path: "/healthz",
      method: "GET",
      agent: false,
      // Liveness, not identity: the certificate names the public host, not the loopback address dialled here.
      rejectUnauthorized: false,
    }, (res: IncomingMessage) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on("error", (error: Error & { code?: string }) => resolve(describeError(error)));
    req.end();
    cancel = () => req.destroy();
  });
  const outcome = await raceTimeout(answer, timeoutMs, () => {
    cancel();
    return `no answer within ${timeoutMs / 1000} s`;
  });
  if (outcome === 200) return { ok: true, line: `healthy: GET ${url} answered 200` };
  const why = typeof outcome === "number" ? `answered ${outcome}` : outcome;
  return { ok: false, line: `unhealthy: GET ${url}: ${why}` };
}

function describeError(error: Error & { code?: string }): string {
  if (error.code === "ECONNREFUSED") return "connection refused (is Shoal running, with this config?)";
  const first = error.message.split("\n")[0];
  return error.code && !first.includes(error.code) ? `${error.code}: ${first}` : first;
}

/** Run the check and print its line (stdout when healthy, stderr when not); resolves with the exit code. */
export async function runHealthcheck(config: Config, options: HealthcheckOptions = {}): Promise<number> {
  const result = await checkHealth(config, options);
  (result.ok ? process.stdout : process.stderr).write(`shoal: ${result.line}\n`);
  return result.ok ? 0 : 1;
}
