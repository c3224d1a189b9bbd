/** How Shoal ends a connection: a WebSocket close code and its reason, always together. */
export interface Close {
  readonly code: number;
  readonly reason: string;
}

/**
 * Every close Shoal sends, in one table (docs/protocol.md §12.6); call sites name the value, never a literal.
 * 1000 and 1009 are SocketShark's own; the others name conditions SocketShark did not have (it leaked or stalled).
 */
export const Closes = {
  /** Shutdown, after an `Unhandled exception.` reply, a connection opened while stopping (as SocketShark). */
  normal: { code: 1000, reason: "" },
  /** No pong (nor any frame) within the keep-alive's time (as SocketShark). */
  pingTimeout: { code: 1000, reason: "" },
  /** A frame larger than `ws.maxMessageBytes` (as SocketShark, whose limit was 1 MiB). */
  messageTooBig: { code: 1009, reason: "message too big" },
  /** More than `ws.maxPendingEvents` events waiting behind a slow one (decision 12). */
  tooManyPendingEvents: { code: 1008, reason: "too many pending events" },
  /** More than `limits.maxPendingBytes` of events waiting behind a slow one. */
  tooManyPendingBytes: { code: 1008, reason: "too many pending bytes" },
  /**
   * The client stopped reading and its send buffer passed `ws.maxBufferedBytes`, or it was among the furthest
   * behind when all send buffers together passed `limits.maxBufferedBytesTotal`.
   */
  slowConsumer: { code: 1013, reason: "slow consumer" },
  /** A connection accepted past `limits.maxConnections` in a race with the upgrade check. */
  tooManyConnections: { code: 1013, reason: "too many connections" },
  /** An operator's `POST /admin/disconnect` (extension E4), sent after the session's unsubscribe callbacks ran. */
  disconnected: { code: 4000, reason: "disconnected" },
} as const satisfies Readonly<Record<string, Close>>;
