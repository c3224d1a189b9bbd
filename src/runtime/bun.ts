/// <reference types="@types/bun" />
import type { Hono } from "hono";
import { upgradeWebSocket, websocket } from "hono/bun";
import type { Listener, Runtime, ServeOptions } from "./runtime.ts";

function serve(app: Hono, options: ServeOptions): Listener {
  const server = Bun.serve({
    hostname: options.host,
    port: options.port,
    ...(options.tls ? { tls: { cert: options.tls.cert, key: options.tls.key } } : {}),
    fetch: app.fetch,
    websocket: {
      ...websocket,
      // Bun closes with 1009 itself past this size.
      maxPayloadLength: options.maxMessageBytes,
      // Shoal sends its own pings; Bun's idle timeout would close quiet but healthy clients.
      idleTimeout: 0,
      sendPings: false,
    },
  });
  return {
    port: server.port ?? options.port,
    stop: async () => {
      // Called after the router closed every session; anything left is closed rather than waited for.
      await server.stop(true);
    },
  };
}

export const runtime: Runtime = {
  name: "bun",
  version: Bun.version,
  upgradeWebSocket,
  serve,
  readTextFile: (path) => Bun.file(path).text(),
  env: (name) => Bun.env[name],
  onSignal(handler) {
    const onInt = () => handler("SIGINT");
    const onTerm = () => handler("SIGTERM");
    process.on("SIGINT", onInt);
    process.on("SIGTERM", onTerm);
    return () => {
      process.off("SIGINT", onInt);
      process.off("SIGTERM", onTerm);
    };
  },
  exit: (code) => process.exit(code),
  fetchWithCa(caPem) {
    return ((input: RequestInfo | URL, init?: RequestInit) =>
      fetch(input, { ...init, tls: { ca: caPem } } as RequestInit)) as typeof fetch;
  },
};
