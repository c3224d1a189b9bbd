import { type Clock, systemClock } from "../core/clock.ts";
import { historyEnvelope } from "../protocol/broker_message.ts";
import type { PresenceChange, PresenceExpiry, PresenceSnapshot } from "../core/presence_tracker.ts";
import type { Appended, Broker, BrokerHandlers, HistoryOptions, HistoryState } from "./broker.ts";
import { MemoryHistories } from "./memory_history.ts";
import { MemoryPresenceStore } from "./memory_presence.ts";
import { ReceiveQueue } from "./receive_queue.ts";

/**
 * The embedded broker: channels live in this process, so only `POST /publish` feeds it. Messages go through a
 * receive queue drained on a later microtask, as a network broker's would, so publishing never re-enters delivery.
 */
export class MemoryBroker implements Broker {
  readonly #channels = new Set<string>();
  readonly #histories: MemoryHistories;
  readonly #presence: MemoryPresenceStore;
  #queue: ReceiveQueue | undefined;
  #closed = false;

  constructor(options: { clock?: Clock } = {}) {
    this.#histories = new MemoryHistories(options.clock ?? systemClock);
    this.#presence = new MemoryPresenceStore(options.clock ?? systemClock);
  }

  start(handlers: BrokerHandlers): Promise<void> {
    this.#queue = new ReceiveQueue((message) => {
      // Unsubscribed while queued: dropped, as Redis would not have delivered it.
      if (this.#channels.has(message.channel) && !this.#closed) handlers.onMessage(message);
    });
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

  /** Resolves once the message has been handed to the hub (or dropped: nobody subscribes to `channel`). */
  publish(channel: string, payload: string): Promise<void> {
    if (this.#closed) return Promise.reject(new Error("broker closed"));
    // Like Redis PUBLISH: a channel nobody subscribes to drops the message.
    if (!this.#channels.has(channel) || !this.#queue) return Promise.resolve();
    this.#queue.push(channel, payload);
    return this.#queue.drained();
  }

  /** Histories live in this process: each process start begins new epochs. */
  append(channel: string, payload: string, history: HistoryOptions & { idempotencyKey?: string }): Promise<Appended> {
    if (this.#closed) return Promise.reject(new Error("broker closed"));
    const appended = this.#histories.append(channel, payload, history);
    if (appended.duplicate) return Promise.resolve(appended);
    return this.publish(channel, historyEnvelope(appended.offset, appended.epoch, payload)).then(() => appended);
  }

  history(channel: string, history: HistoryOptions, since?: number): Promise<HistoryState> {
    if (this.#closed) return Promise.reject(new Error("broker closed"));
    return Promise.resolve(this.#histories.read(channel, history, since));
  }

  /** Presence lives in this process: this node's sessions only (extension E3). */
  updatePresence(channel: string, change: PresenceChange): Promise<PresenceExpiry & { readonly restored: readonly string[] }> {
    if (this.#closed) return Promise.reject(new Error("broker closed"));
    return this.#presence.updatePresence(channel, change);
  }

  readPresence(channel: string): Promise<PresenceSnapshot & PresenceExpiry> {
    if (this.#closed) return Promise.reject(new Error("broker closed"));
    return this.#presence.readPresence(channel);
  }

  close(): Promise<void> {
    this.#closed = true;
    this.#channels.clear();
    this.#queue?.clear();
    this.#histories.close();
    this.#presence.clear();
    return Promise.resolve();
  }
}
