import type { Hono } from "hono";
import type { UpgradeWebSocket } from "hono/ws";

/** A listening server. */
export interface Listener {
  readonly port: number;
  /** Stop listening; called after the router has closed every session. */
  stop(): Promise<void>;
}

export interface ServeOptions {
  readonly host: string;
  readonly port: number;
  readonly tls?: { readonly cert: string; readonly key: string };
  /** Largest incoming WebSocket message, bytes. */
  readonly maxMessageBytes: number;
}

/** What `main.ts` needs from Deno or Bun; `deno.ts` and `bun.ts` are the only files that touch either. */
export interface Runtime {
  readonly name: "deno" | "bun";
  readonly version: string;
  readonly upgradeWebSocket: UpgradeWebSocket;
  serve(app: Hono, options: ServeOptions): Listener;
  readTextFile(path: string): Promise<string>;
  env(name: string): string | undefined;
  /** Call `handler` on SIGINT and SIGTERM; returns a function that removes it. */
  onSignal(handler: (signal: "SIGINT" | "SIGTERM") => void): () => void;
  exit(code: number): never;
  /** A fetch for service callbacks, trusting the given CA bundle (PEM) in addition to the system's. */
  fetchWithCa(caPem: string): typeof fetch;
}
