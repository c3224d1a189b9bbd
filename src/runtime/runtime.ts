import type { Hono } from "hono";
import type { UpgradeWebSocket } from "hono/ws";

/** How long `Listener.stop()` waits for the WebSockets' close handshakes, milliseconds. */
export const CLOSE_WAIT_MS = 2000;

/** A listening server. */
export interface Listener {
  readonly port: number;
  /**
   * Stop listening and end HTTP connections; called after the router has closed every session. Resolves once every
   * WebSocket's close handshake has finished, or after about 2 s, so the close frames are out before an exit.
   */
  stop(): Promise<void>;
  /** Send a text frame to every socket subscribed to a native topic (Bun's `server.publish`); absent on Deno. */
  readonly publish?: (topic: string, text: string) => void;
}

export interface ServeOptions {
  readonly host: string;
  readonly port: number;
  readonly tls?: { readonly cert: string; readonly key: string };
  /** Largest incoming WebSocket message, bytes. */
  readonly maxMessageBytes: number;
  /** Largest send buffer per connection, bytes, before the client counts as a slow consumer. */
  readonly maxBufferedBytes: number;
  /**
   * Seconds from TCP accept (or the end of the last response) to a complete request or WebSocket upgrade; the
   * connection is closed then (`ws.handshakeTimeout`). Bun applies its own 10-12 s before a request head is complete.
   */
  readonly handshakeTimeout: number;
  /** Told of each connection the transport itself refused or cut (for the refusal metric). */
  readonly onRefused?: (reason: TransportRefusal) => void;
}

/**
 * Why the transport refused or cut a connection: `handshake_timeout` (no complete request or upgrade within
 * `handshakeTimeout`), `bad_request` (a request head Shoal's own HTTP server refused: 400, 431, 501, 505), `fd_limit`
 * (the process ran out of file descriptors: counted once each time accepting stops).
 */
export type TransportRefusal = "handshake_timeout" | "bad_request" | "fd_limit";

/** The connection the runtime tells when a client stopped answering pings (see `SocketSupport.watchKeepAlive`). */
export interface PingTimeoutPeer {
  /** No pong (nor any other frame) within the keep-alive's time: log it and close the session with 1000. */
  pingTimedOut(): void;
}

/**
 * What Shoal does with a server WebSocket beyond Hono's `WSContext`; `raw` is the runtime's socket
 * (`WSContext.raw`). Pongs reach the connection through an `onPong` handler next to Hono's `onMessage`.
 */
export interface SocketSupport {
  /** Send a ping frame. Absent where the runtime has no server ping (Deno), which pings through `upgradeOptions`. */
  readonly ping?: (raw: unknown) => void;
  /**
   * Where the runtime runs the keep-alive itself (Deno, without `ping`): call `peer.pingTimedOut()` once the client
   * of `raw` has been silent for `interval + timeout`, instead of the runtime closing the socket (1000) itself.
   * Call it from the open handler when pings are on.
   */
  readonly watchKeepAlive?: (raw: unknown, peer: PingTimeoutPeer) => void;
  /** Options for the runtime's upgrade helper given the keep-alive settings (seconds). */
  upgradeOptions(ping: { readonly interval: number; readonly timeout: number }): unknown;
  /**
   * Send a text frame if the socket is open; false when the runtime itself saw that the client is not keeping up
   * (the frame was dropped, or queued past the limit). Where a runtime cannot tell cheaply (Deno), it returns true
   * and the connection checks `bufferedAmount` every few sends.
   */
  send(raw: unknown, text: string, maxBufferedBytes: number): boolean;
  /** Start the close handshake (throws if the socket is already closed on some runtimes). */
  close(raw: unknown, code: number, reason: string): void;
  /** Drop the connection without a close handshake (a slow consumer that never reads its close frame). */
  readonly terminate?: (raw: unknown) => void;
  /** Bytes queued for the client but not yet written. */
  bufferedAmount(raw: unknown): number;
  /** Join and leave a native fan-out topic (see `Listener.publish`); absent where the runtime has none. */
  readonly topics?: {
    subscribe(raw: unknown, topic: string): void;
    unsubscribe(raw: unknown, topic: string): void;
  };
}

/** What `main.ts` needs from Deno or Bun; `deno.ts` and `bun.ts` are the only files that touch either. */
export interface Runtime {
  readonly name: "deno" | "bun";
  readonly version: string;
  readonly upgradeWebSocket: UpgradeWebSocket;
  readonly socket: SocketSupport;
  serve(app: Hono, options: ServeOptions): Listener;
  readTextFile(path: string): Promise<string>;
  /** Call `handler` on SIGINT and SIGTERM; returns a function that removes it. */
  onSignal(handler: (signal: "SIGINT" | "SIGTERM") => void): () => void;
  exit(code: number): never;
  /**
   * Call `handler` for an exception nobody caught (a timer, a microtask, a socket callback) or a rejection nobody
   * handled, instead of letting the runtime end the process: a bug in one connection must not stop the others.
   */
  onUncaught(handler: (error: unknown, kind: "exception" | "rejection") => void): void;
  /** A fetch for service callbacks, trusting the given CA bundle (PEM) in addition to the system's. */
  fetchWithCa(caPem: string): typeof fetch;
}
