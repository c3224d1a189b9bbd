import type { PresenceStore } from "../core/presence_tracker.ts";

/** One message as a broker received it, before any parsing. */
export interface BrokerMessage {
  /** The subscription name the channel stands for (any prefix already stripped). */
  readonly channel: string;
  /** The published JSON text. */
  readonly payload: string;
  /** When the broker took it off its receive queue, in epoch milliseconds. */
  readonly receivedAt: number;
  /** Messages waiting in that receive queue just before this one was taken (SocketShark's `queue_size`). */
  readonly queueSize: number;
}

/** Connection state changes a broker reports; `ready` is false while it cannot receive. */
export interface BrokerStatus {
  readonly ready: boolean;
  readonly reason?: string;
  /** The broker gave up (`onConnectionLoss: "shutdown"`): the server should shut down, as SocketShark does. */
  readonly fatal?: boolean;
}

/** A history service's settings (extension E1), passed with every append and read. */
export interface HistoryOptions {
  /** Messages kept per subscription. */
  readonly size: number;
  /** Seconds the history lives after its last append. */
  readonly ttl: number;
}

/** Where an appended message landed in its subscription's history. */
export interface Appended {
  readonly offset: number;
  readonly epoch: string;
  /** A retry with an idempotency key seen within `ttl`: nothing was appended or published; the first position. */
  readonly duplicate: boolean;
}

/** One stored message: the payload as published (not the envelope) and its offset. */
export interface HistoryEntry {
  readonly offset: number;
  readonly payload: string;
}

/** A subscription's history as read at one instant. */
export interface HistoryState {
  readonly epoch: string;
  /** Offset of the newest stored message, 0 when there is none (a new epoch starts at 0). */
  readonly top: number;
  /** With `since`: the stored messages with offset > since, oldest first (never more than `size`). */
  readonly entries: readonly HistoryEntry[];
}

export interface BrokerHandlers {
  onMessage(message: BrokerMessage): void;
  onStatus?(status: BrokerStatus): void;
}

/**
 * The pub/sub seam the core depends on. A channel is a subscription name; implementations add their prefix.
 * Subscribe and unsubscribe calls for one channel never overlap: the hub serializes them. Every broker also keeps
 * presence entries (extension E3: the `PresenceStore` the core's presence tracker declares), where all the nodes
 * sharing it see them.
 */
export interface Broker extends PresenceStore {
  /** Connect (failing if that takes longer than the configured connect timeout) and start delivering messages of subscribed channels to `onMessage`. */
  start(handlers: BrokerHandlers): Promise<void>;
  /** Resolves once messages of the channel will be delivered; rejects if the broker cannot subscribe. */
  subscribe(channel: string): Promise<void>;
  /** Stop receiving a channel; unsubscribing a channel that is not subscribed does nothing. */
  unsubscribe(channel: string): Promise<void>;
  /** Publish a payload to a channel (the HTTP publish API uses it). */
  publish(channel: string, payload: string): Promise<void>;
  /**
   * Append a payload to the channel's history and publish it, in one atomic step (extension E1): subscribers
   * receive `historyEnvelope(offset, epoch, payload)`. With an `idempotencyKey` already used on this channel within
   * `ttl`, nothing happens and the first append's position is returned (`duplicate`). A history that expired or
   * was lost starts again at offset 1 under a new epoch.
   */
  append(channel: string, payload: string, history: HistoryOptions & { readonly idempotencyKey?: string }): Promise<Appended>;
  /**
   * The channel's history position and, when `since` is given, the stored messages after it: one consistent
   * read. A channel without history gets its epoch here (so a client told offset 0 can recover later).
   */
  history(channel: string, history: HistoryOptions, since?: number): Promise<HistoryState>;
  /** Whether the broker is connected and receiving. */
  readonly ready: boolean;
  /** The channels currently subscribed, for health and leak checks. */
  readonly channels: ReadonlySet<string>;
  close(): Promise<void>;
}
