import type { Clock } from "./clock.ts";

/** One JSON object, as Shoal sends it in one text frame. */
export type Frame = Readonly<Record<string, unknown>>;

/**
 * The client's connection state:
 * - `connecting`: a WebSocket is opening, or open and authenticating;
 * - `connected`: open, authenticated (when an `auth` provider is set) and re-subscribing or subscribed;
 * - `disconnected`: no connection; a reconnect is scheduled unless the server closed with 4000;
 * - `closed`: `close()` was called; nothing runs any more.
 */
export type ConnectionState = "connecting" | "connected" | "disconnected" | "closed";

/** A position in a history subscription's stream (docs/protocol.md §16.1): offsets compare within one epoch. */
export interface Position {
  /** The message's offset: 1 for the first message of an epoch, growing by 1. */
  readonly offset: number;
  /** The history's epoch: a new one whenever the history was lost and began again. */
  readonly epoch: string;
}

/**
 * A reply to `auth`, `subscribe`, `message` or `unsubscribe` (docs/protocol.md §3.3): `status` `"ok"` or
 * `"error"`, the subscription's extra fields, and `data` when the service gave one.
 */
export interface Reply<D = unknown> {
  /** The request's event. */
  readonly event: string;
  /** `"ok"`, or `"error"` with `error`. */
  readonly status: "ok" | "error";
  /** The request's subscription, when it had one. */
  readonly subscription?: string;
  /** The service's `data`, when it gave one. */
  readonly data?: D;
  /** The error, exactly as sent (usually a string of the protocol's Appendix A). */
  readonly error?: unknown;
  /** The subscription's extra fields, and any other key Shoal sends. */
  readonly [field: string]: unknown;
}

/** The OK of a `subscribe`; a history subscription's carries its position and, when recovering, `recovered`. */
export interface SubscribeReply<D = unknown> extends Reply<D> {
  /** History services: the offset of the newest stored message (0 when there is none). */
  readonly offset?: number;
  /** History services: the history's epoch. */
  readonly epoch?: string;
  /** With `recover`: whether every missed message follows (true), or none could (false). */
  readonly recovered?: boolean;
}

/**
 * A message published to a subscription (docs/protocol.md §10.8). `data` is the publisher's, verbatim; history
 * subscriptions add `offset` and `epoch`; the subscription's extra fields are there too.
 */
export interface Message<T = unknown> {
  /** Always `"message"`. */
  readonly event: "message";
  /** The subscription it was published to. */
  readonly subscription: string;
  /** What the publisher sent, verbatim. */
  readonly data: T;
  /** History services: its offset in the subscription's history. */
  readonly offset?: number;
  /** History services: the history's epoch. */
  readonly epoch?: string;
  /** The publisher's timestamp, when it gave a valid one. */
  readonly published_at?: string;
  /** When Shoal took it off the broker (live messages only). */
  readonly received_at?: string;
  /** How many messages waited in Shoal's receive queue then (live messages only). */
  readonly queue_size?: number;
  /** When Shoal sent it. */
  readonly sent_at?: string;
  /** The subscription's extra fields. */
  readonly [field: string]: unknown;
}

/**
 * What `auth` is sent with: `{method: "ticket", ticket}` (the default method) or `{method: "jwt", token}`.
 * Without `method`, a `token` alone means `jwt`.
 */
export interface AuthCredentials {
  /** `"ticket"` (Shoal's default) or `"jwt"`. */
  readonly method?: "ticket" | "jwt";
  /** The ticket, for ticket auth: single-use, so a fresh one per connection. */
  readonly ticket?: string;
  /** The compact JWS, for JWT auth (extension E2). */
  readonly token?: string;
}

/**
 * Called once per connection, after the WebSocket opened and before anything is sent: tickets are single-use,
 * so each (re)connect needs a fresh one. `null` connects anonymously. `signal` aborts when that connection
 * attempt is abandoned. A provider that throws fails the attempt: the client reports it and retries with backoff.
 */
export type AuthProvider = (signal: AbortSignal) => Promise<AuthCredentials | null> | AuthCredentials | null;

/** Reconnect timing, in seconds. */
export interface ReconnectOptions {
  /** The shortest wait before a reconnect (default 0.5). */
  readonly minDelay?: number;
  /** The longest wait before a reconnect (default 20). */
  readonly maxDelay?: number;
  /** After this long connected, the backoff starts again from `minDelay` (default 10). */
  readonly stableAfter?: number;
}

/**
 * Dead-connection detection, in seconds: after `interval` without any frame from the server the client sends the
 * protocol's `ping` event (answered at once, docs/protocol.md §8), and reconnects if no frame arrives within
 * `timeout`. Works whatever the server's own WebSocket-level keep-alive does, which browsers cannot see.
 */
export interface KeepAliveOptions {
  /** Idle time before a ping (default 25). */
  readonly interval?: number;
  /** How long to wait for any frame after the ping (default 10). */
  readonly timeout?: number;
}

/** A WebSocket event handler property, typed so that the runtimes' own (narrower) handler types fit. */
export type SocketHandler<E> = { bivarianceHack(event: E): unknown }["bivarianceHack"];

/** The part of a WebSocket the client uses: the browser's, Deno's, Bun's and Node's (≥ 22) global all fit. */
export interface WebSocketLike {
  /** 0 connecting, 1 open, 2 closing, 3 closed. */
  readonly readyState: number;
  /** Set to `"arraybuffer"` by the client. */
  binaryType: string;
  /** The socket opened. */
  onopen: SocketHandler<unknown> | null;
  /** A frame arrived. */
  onmessage: SocketHandler<{ readonly data: unknown }> | null;
  /** The socket closed, with the close code and reason. */
  onclose: SocketHandler<{ readonly code: number; readonly reason: string }> | null;
  /** An error; a close event follows. */
  onerror: SocketHandler<unknown> | null;
  /** Send a text frame. */
  send(data: string): void;
  /** Start the closing handshake. */
  close(code?: number, reason?: string): void;
}

/** A WebSocket constructor (`globalThis.WebSocket` by default). */
export type WebSocketConstructor = new (url: string) => WebSocketLike;

/** Options of `new ShoalClient(url, options)`. */
export interface ShoalClientOptions {
  /** Credentials for each (re)connect; without it the client stays anonymous. */
  readonly auth?: AuthProvider;
  /** Reconnect backoff; the client never gives up unless closed (or told to stay away with close code 4000). */
  readonly reconnect?: ReconnectOptions;
  /** Dead-connection detection (on by default); `false` turns it off. */
  readonly keepAlive?: KeepAliveOptions | false;
  /** Seconds a WebSocket may take to open (and, with `auth`, to get its auth answered) before the attempt is abandoned and retried (default 10). */
  readonly connectTimeout?: number;
  /** Closes the client when aborted. */
  readonly signal?: AbortSignal;
  /** The WebSocket implementation (default the global one): e.g. the `ws` package on an older Node. */
  readonly WebSocket?: WebSocketConstructor;
  /** Time and randomness, for tests (default the system's). */
  readonly clock?: Clock;
}

/**
 * Why the client is disconnected, given with the `disconnected` state: the close code (1006 when the connection
 * ended without one, or the client gave up on it), its reason, what the code means, and when the next attempt
 * comes (`retryIn` milliseconds; absent after close code 4000, when the client waits for `connect()`).
 */
export interface DisconnectInfo {
  /** The close code (1006 when the connection ended without one, or the client gave up on it). */
  readonly code: number;
  /** The close reason, or what the client gave up on (`connect timeout`, `keep-alive timeout`, …). */
  readonly reason: string;
  /** What the code means. */
  readonly description: string;
  /** Milliseconds until the next attempt; absent when the client waits for `connect()` (close code 4000). */
  readonly retryIn?: number;
}

/** A listener of `onStateChange`; `info` comes with `disconnected`. */
export type StateListener = (state: ConnectionState, info?: DisconnectInfo) => void;

/**
 * What went wrong, for `onError`:
 * - `auth`: the `auth` reply was an error (`error` is the wire value), or the provider threw;
 * - `subscribe`: a re-subscribe after a reconnect (or after `Insufficient state.`) was refused (for good, or for
 *   now: `Service unavailable.` and `Rate limit exceeded.` are tried again with backoff);
 * - `unsubscribed`: Shoal ended a subscription (docs/protocol.md §11.2);
 * - `close`: the connection closed with a code that is the client's problem or the operator's
 *   (1007, 1008, 1009, 1013, 4000), `code` set;
 * - `protocol`: a frame the client could not place (not JSON, or a reply to nothing it sent);
 * - `callback`: an application callback threw (`error` is what it threw).
 */
export interface ShoalErrorEvent {
  /** What went wrong (see above). */
  readonly kind: "auth" | "subscribe" | "unsubscribed" | "close" | "protocol" | "callback";
  /** A sentence for a log line. */
  readonly message: string;
  /** The wire error (as sent), or what was thrown, or the frame that could not be placed. */
  readonly error?: unknown;
  /** The reply's or notice's `data`, when it had one. */
  readonly data?: unknown;
  /** The subscription concerned, if one is. */
  readonly subscription?: string;
  /** The close code, for `close`. */
  readonly code?: number;
}

/** A listener of `onError`. */
export type ErrorListener = (event: ShoalErrorEvent) => void;

/** A listener of the client-wide `onUnsubscribed`: a subscription Shoal ended, or whose re-subscribe failed. */
export type UnsubscribedListener = (subscription: string, error: unknown, data: unknown) => void;

/** Options of `send`. */
export interface SendOptions {
  /** Abandons the wait (the promise rejects with the signal's reason); a message already sent is not recalled. */
  readonly signal?: AbortSignal;
  /**
   * Set when the service's `on_message` always answers with `data` (or an error): the client then waits for that
   * reply and sends no sync event after the message (see `send`).
   */
  readonly expectReply?: boolean;
}

/** Options of `ping`. */
export interface PingOptions {
  /** Abandons the wait (the promise rejects with the signal's reason). */
  readonly signal?: AbortSignal;
}

/** What `onResubscribed` is told after a re-subscribe succeeded. */
export interface ResubscribedEvent {
  /**
   * True only when Shoal replayed everything missed (`recovered: true`, a history service). False means messages
   * may have been missed (history lost or trimmed, or a service without history): reload the state.
   */
  readonly recovered: boolean;
  /** The subscribe OK. */
  readonly reply: SubscribeReply;
}

/** Options of `subscribe`. */
export interface SubscribeOptions<T = unknown> {
  /** Extra fields sent with every `subscribe` (docs/protocol.md §5.3), e.g. `{ book_version: 3 }`. */
  readonly fields?: Readonly<Record<string, unknown>>;
  /**
   * Recover missed messages on history services after a reconnect (default true). A position recovers from there
   * on the first subscribe too (e.g. one saved from `subscription.position`). `false` never sends `recover`.
   */
  readonly recover?: boolean | Position;
  /** Unsubscribes when aborted. */
  readonly signal?: AbortSignal;
  /** Each published message, once and in order (a history message whose offset was delivered already is dropped). */
  onMessage(message: Message<T>): void;
  /**
   * Shoal ended the subscription (`error` as sent, e.g. `"Unauthorized."`), or refused to re-subscribe it after a
   * reconnect. The subscription is over; subscribe again if wanted. A re-subscribe refused with
   * `Service unavailable.` or `Rate limit exceeded.` is not the end: it is tried again with backoff (each refusal
   * is an `onError` event of kind `subscribe`).
   */
  onUnsubscribed?(error: unknown, data: unknown): void;
  /** A re-subscribe succeeded (after a reconnect, or after `Insufficient state.`); check `recovered`. */
  onResubscribed?(event: ResubscribedEvent): void;
}

/** Where a subscription is: its subscribe in flight (or waiting for a connection), active, leaving, or over. */
export type SubscriptionState = "subscribing" | "active" | "unsubscribing" | "unsubscribed";
