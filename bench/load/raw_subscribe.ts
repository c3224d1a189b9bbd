/**
 * S4's baseline: `bun run bench/load/raw_subscribe.ts --url URL --sessions N --concurrency C`. Does for each
 * session what Shoal does per subscribe towards the services, and nothing else: POST the subscription to
 * `URL/authorize`, then `URL/before_subscribe`, then `URL/on_subscribe`, one after another, `C` sessions at a time
 * over keep-alive connections. Prints `{"message":"done","sessions","failed","ms","cpuSeconds"}` and exits.
 */
import process from "node:process";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: { url: { type: "string" }, sessions: { type: "string" }, concurrency: { type: "string" } },
  strict: true,
});
const url = values.url;
const sessions = Number(values.sessions);
const concurrency = Number(values.concurrency);
if (!url || !(sessions > 0) || !(concurrency > 0)) {
  console.error("raw_subscribe: --url, --sessions and --concurrency are required");
  process.exit(2);
}

const CALLBACKS = ["authorize", "before_subscribe", "on_subscribe"];
const body = JSON.stringify({ subscription: "bench.s4" });

async function call(path: string): Promise<void> {
  const response = await fetch(`${url}/${path}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body,
  });
  const answer = (await response.json()) as { status?: unknown };
  if (!response.ok || answer.status !== "ok") throw new Error(`${path}: ${response.status}`);
}

let next = 0;
let failed = 0;
const cpuStart = process.cpuUsage();
const started = performance.now();
await Promise.all(Array.from({ length: concurrency }, async () => {
  while (next < sessions) {
    next++;
    try {
      for (const path of CALLBACKS) await call(path);
    } catch {
      failed++;
    }
  }
}));
const ms = performance.now() - started;
const cpu = process.cpuUsage(cpuStart);
console.log(JSON.stringify({ message: "done", sessions, failed, ms, cpuSeconds: (cpu.user + cpu.system) / 1e6 }));
