/** Why a limit refused a connection, a frame, an event or a callback: the `reason` label of the refusal metric. */
export const REFUSAL_REASONS = [
  "bad_upgrade",
  "websocket_version",
  "origin",
  "connections",
  "shutting_down",
  "subscriptions",
  "subscription_name",
  "extra_fields",
  "rate",
  "pending_events",
  "pending_bytes",
  "callbacks",
  "response_size",
  "buffered_total",
  // Refused by the runtime's server (see `TransportRefusal`).
  "handshake_timeout",
  "bad_request",
  "fd_limit",
] as const;
export type RefusalReason = (typeof REFUSAL_REASONS)[number];

/** The admin API's commands (extension E4): the `command` label of the admin metric. */
export const ADMIN_COMMANDS = ["info", "channels", "presence", "disconnect", "unsubscribe", "publish"] as const;
export type AdminCommand = (typeof ADMIN_COMMANDS)[number];

/** Hooks for metrics; every one optional. Event names are the client's, plus `invalid` and `unknown`. */
export interface Observer {
  connectionOpened?(): void;
  connectionClosed?(): void;
  event?(name: string, success: boolean): void;
  /** A broker message for a channel with local subscribers. */
  received?(): void;
  /** Message frames sent to clients: `count` of them (one per recipient). */
  delivered?(count: number): void;
  /** A message not delivered now, by reason. */
  filtered?(reason: "fields" | "order" | "throttle"): void;
  /** A connection dropped for not keeping up (its send buffer passed `ws.maxBufferedBytes`). */
  dropped?(reason: "backpressure"): void;
  /** Something a limit of a public endpoint refused (extensions E5), by a fixed reason. */
  refused?(reason: RefusalReason): void;
  ready?(ready: boolean): void;
  /** The broker lost its connection (it reconnects, or the server shuts down). */
  brokerLost?(): void;
  /** A service callback finished: its outcome and duration. */
  callback?(name: string, outcome: "ok" | "error" | "unavailable", seconds: number): void;
  /** A subscribe with `recover` on a history service (extension E1): its result and the messages replayed. */
  recovery?(recovered: boolean, replayed: number): void;
  /** A history subscription ended with "Insufficient state." (a hole in its live stream). */
  historyGap?(): void;
  /** A message appended to a history (`POST /publish`): how long the append took. */
  historyAppend?(seconds: number): void;
  /** A JWT refused (extension E2), by a fixed reason (`JWT_FAILURE_REASONS`). */
  jwtFailure?(reason: string): void;
  /** A presence read (extension E3): a client's `presence` event, or the router's `presence()` (the admin API). */
  presenceQuery?(source: "event" | "api"): void;
  /** An admin API request this node accepted (token checked), by command (extension E4). */
  adminCommand?(command: AdminCommand): void;
}
