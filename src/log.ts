import { configure, getJsonLinesFormatter, getLogfmtFormatter, type Sink } from "@logtape/logtape";
import { AsyncLocalStorage } from "node:async_hooks";
import process from "node:process";
import type { Config } from "./config.ts";

let debug = false;

/**
 * Whether debug lines are kept. Hot paths ask this before building a debug line: LogTape's own check looks up the
 * logger's category and context on every call, a measurable share of a session's set-up cost.
 */
export function debugEnabled(): boolean {
  return debug;
}

/** A URL fit for logs: a password (with its user name) becomes `*****:*****`, as SocketShark's `_scrub_url`. */
export function scrubUrl(raw: string): string {
  // The user info ends at the last "@" before the path, so a password may itself contain "@".
  const match = /^([a-zA-Z][a-zA-Z0-9+.-]*:\/\/)([^/?#]*)@/.exec(raw);
  if (!match) return raw;
  const userinfo = match[2];
  if (!userinfo.includes(":")) return raw; // a user name alone is not a secret
  return match[1] + "*****:*****@" + raw.slice(match[0].length);
}

/**
 * An error's message for a log line; an AggregateError (several failed connection attempts) lists them all. Never
 * throws, whatever was thrown: a Symbol, or an object without a prototype (a config module may throw anything).
 */
export function errorText(error: unknown): string {
  if (error instanceof AggregateError) return error.errors.map(errorText).join("; ");
  try {
    return error instanceof Error ? error.message : typeof error === "symbol" ? error.toString() : String(error);
  } catch {
    return Object.prototype.toString.call(error);
  }
}

/** What a log line shows in place of a credential (a ticket, a token, an auth answer). */
export const REDACTED = "[redacted]";

/** Longest text a log line quotes from a client, a publisher or a service. */
const MAX_QUOTED = 1024;

/** A text cut to a length fit for a log line, saying how long it was. */
export function clip(text: string, max: number = MAX_QUOTED): string {
  return text.length <= max ? text : `${text.slice(0, max)}… (${text.length} characters)`;
}

/**
 * Send Shoal's logs to standard output: JSON lines with the properties at the top level, or logfmt on a
 * terminal (`log.format: "auto"`). Before this runs, and in unit tests, the loggers are silent.
 */
export async function setupLogging(config: Config["log"]): Promise<void> {
  debug = config.level === "debug" || config.level === "trace";
  const pretty = config.format === "pretty" || (config.format === "auto" && process.stdout.isTTY === true);
  const format = pretty ? getLogfmtFormatter() : getJsonLinesFormatter({ properties: "flatten" });
  const sink: Sink = (record) => {
    let line: string;
    try {
      line = format(record);
    } catch (error) {
      // A property that cannot be serialized must not turn a log call into a crash.
      line = format({ ...record, properties: { unformattable: String(error) } });
    }
    process.stdout.write(line);
  };
  await configure({
    reset: true,
    // Lets a session put its id on every line logged while it handles an event (`withContext`).
    contextLocalStorage: new AsyncLocalStorage(),
    sinks: { stdout: sink },
    loggers: [
      { category: ["shoal"], lowestLevel: config.level, sinks: ["stdout"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["stdout"] },
    ],
  });
}
