/**
 * The TypeScript client of Shoal, the SocketShark-compatible WebSocket router: one dependency-free ES module for
 * browsers, Deno, Bun and Node ≥ 22. It reconnects with backoff, authenticates again with a fresh ticket,
 * re-subscribes with history recovery (each message once, in order), and turns replies into promises.
 *
 * ```ts
 * import { ShoalClient } from "@shoal/client";
 *
 * const client = new ShoalClient("wss://shoal.example.com/", {
 *   auth: async () => ({ ticket: await (await fetch("/api/shoal-ticket")).text() }),
 * });
 * const sub = client.subscribe<{ title: string }>("books.1", {
 *   onMessage: (message) => console.log(message.data.title),
 * });
 * await sub.ready;
 * ```
 *
 * @module
 */
export { ShoalClient } from "./client.ts";
export type { Subscription } from "./subscription.ts";
export { type RequestFailure, ShoalError, ShoalRequestError } from "./errors.ts";
export type { Clock } from "./clock.ts";
export type {
  AuthCredentials,
  AuthProvider,
  ConnectionState,
  DisconnectInfo,
  ErrorListener,
  Frame,
  KeepAliveOptions,
  Message,
  PingOptions,
  Position,
  ReconnectOptions,
  Reply,
  ResubscribedEvent,
  SendOptions,
  ShoalClientOptions,
  ShoalErrorEvent,
  SocketHandler,
  StateListener,
  SubscribeOptions,
  SubscribeReply,
  SubscriptionState,
  UnsubscribedListener,
  WebSocketConstructor,
  WebSocketLike,
} from "./types.ts";
