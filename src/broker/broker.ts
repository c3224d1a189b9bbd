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

export interface BrokerHandlers {
  onMessage(message: BrokerMessage): void;
  onStatus?(status: BrokerStatus): void;
}

/**
 * The pub/sub seam the core depends on. A channel is a subscription name; implementations add their prefix.
 * Subscribe and unsubscribe calls for one channel never overlap: the hub serializes them.
 */
export interface Broker {
  /** Connect (failing if that takes longer than the configured connect timeout) and start delivering messages of subscribed channels to `onMessage`. */
  start(handlers: BrokerHandlers): Promise<void>;
  /** Resolves once messages of the channel will be delivered; rejects if the broker cannot subscribe. */
  subscribe(channel: string): Promise<void>;
  /** Stop receiving a channel; unsubscribing a channel that is not subscribed does nothing. */
  unsubscribe(channel: string): Promise<void>;
  /** Publish a payload to a channel (the HTTP publish API uses it). */
  publish(channel: string, payload: string): Promise<void>;
  /** Whether the broker is connected and receiving. */
  readonly ready: boolean;
  /** The channels currently subscribed, for health and leak checks. */
  readonly channels: ReadonlySet<string>;
  close(): Promise<void>;
}
