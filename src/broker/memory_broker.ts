import type { Broker, BrokerMessage, BrokerStatus } from "./broker.ts";

/**
 * The embedded broker: channels live in this process, so only `POST /publish` feeds it. Messages go through a
 * FIFO queue drained on a later task, as a network broker's would, so publishing never re-enters delivery.
 */
export class MemoryBroker implements Broker {
  readonly #channels = new Set<string>();
  readonly #queue: { channel: string; payload: string }[] = [];
  #onMessage: ((message: BrokerMessage) => void) | undefined;
  #draining = false;
  #closed = false;

  start(handlers: { onMessage(message: BrokerMessage): void; onStatus?(status: BrokerStatus): void }): Promise<void> {
    this.#onMessage = handlers.onMessage;
    handlers.onStatus?.({ ready: true });
    return Promise.resolve();
  }

  get ready(): boolean {
    return !this.#closed;
  }

  get channels(): ReadonlySet<string> {
    return this.#channels;
  }

  subscribe(channel: string): Promise<void> {
    if (this.#closed) return Promise.reject(new Error("broker closed"));
    this.#channels.add(channel);
    return Promise.resolve();
  }

  unsubscribe(channel: string): Promise<void> {
    this.#channels.delete(channel);
    return Promise.resolve();
  }

  publish(channel: string, payload: string): Promise<void> {
    if (this.#closed) return Promise.reject(new Error("broker closed"));
    // Like Redis PUBLISH: a channel nobody subscribes to drops the message.
    if (!this.#channels.has(channel)) return Promise.resolve();
    this.#queue.push({ channel, payload });
    if (!this.#draining) {
      this.#draining = true;
      setTimeout(() => this.#drain(), 0);
    }
    return Promise.resolve();
  }

  #drain(): void {
    this.#draining = false;
    while (this.#queue.length > 0) {
      const queueSize = this.#queue.length;
      const { channel, payload } = this.#queue.shift()!;
      // Unsubscribed while queued: dropped, as Redis would not have delivered it.
      if (!this.#channels.has(channel) || this.#closed) continue;
      this.#onMessage?.({ channel, payload, receivedAt: Date.now(), queueSize });
    }
  }

  close(): Promise<void> {
    this.#closed = true;
    this.#channels.clear();
    this.#queue.length = 0;
    return Promise.resolve();
  }
}
