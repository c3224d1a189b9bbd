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

/**
 * Send Shoal's logs to standard output: JSON lines with the properties at the top level, or logfmt on a
 * terminal (`log.format: "auto"`). Before this runs, and in unit tests, the loggers are silent.
 */
export async function setupLogging(config: Config["log"]): Promise<void> {
  debug = config.level === "debug" || config.level === "trace";
  const pretty = config.format === "pretty" || (config.format === "auto" && process.stdout.isTTY === true);
  const format = pretty ? getLogfmtFormatter() : getJsonLinesFormatter({ properties: "flatten" });
  const sink: Sink = (record) => {
    process.stdout.write(format(record));
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
