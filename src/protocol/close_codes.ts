/**
 * Every WebSocket close code Shoal sends, in one table. 1000 and 1009 are SocketShark's own; the others name
 * conditions SocketShark did not have (it leaked or stalled instead).
 */
export const CloseCodes = {
  /** Shutdown, ping timeout, and after an `Unhandled exception.` reply (as SocketShark). */
  normal: 1000,
  /** A frame larger than `ws.maxMessageBytes` (as SocketShark, whose limit was 1 MiB). */
  messageTooBig: 1009,
  /** More than `ws.maxPendingEvents` events, or `limits.maxPendingBytes` bytes, waiting behind a slow one (decision 12). */
  tooManyPendingEvents: 1008,
  /**
   * The client stopped reading and its send buffer passed `ws.maxBufferedBytes`, or it was among the furthest
   * behind when all send buffers together passed `limits.maxBufferedBytesTotal`; also a connection accepted past
   * `limits.maxConnections` in a race.
   */
  slowConsumer: 1013,
} as const;

export type CloseCode = (typeof CloseCodes)[keyof typeof CloseCodes];
