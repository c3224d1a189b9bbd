/// <reference types="@types/bun" />
/**
 * The 0-ms service of S4: `bun run bench/load/callback_service.ts --port PORT`. Answers every POST with
 * `{"status":"ok"}` at once and counts calls per path; `GET /counts` returns the counts. Prints
 * `{"message":"ready","port":PORT}` when listening; SIGTERM exits 0.
 */
import process from "node:process";
import { parseArgs } from "node:util";

const { values } = parseArgs({ options: { port: { type: "string" } }, strict: true });
const counts: Record<string, number> = {};
const OK = JSON.stringify({ status: "ok" });
const JSON_HEADERS = { "content-type": "application/json" };

const server = Bun.serve({
  hostname: "127.0.0.1",
  port: Number(values.port ?? 0),
  async fetch(request) {
    const path = new URL(request.url).pathname;
    if (request.method === "GET" && path === "/counts") return Response.json(counts);
    await request.arrayBuffer(); // read the body, as a real service would
    counts[path] = (counts[path] ?? 0) + 1;
    return new Response(OK, { headers: JSON_HEADERS });
  },
});

process.on("SIGTERM", async () => {
  await server.stop(true);
  process.exit(0);
});
console.log(JSON.stringify({ message: "ready", port: server.port }));
