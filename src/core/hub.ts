import { getLogger } from "@logtape/logtape";
import type { Broker, BrokerMessage } from "../broker/broker.ts";
import { parsePublishedPayload, type PublishedMessage } from "../protocol/broker_message.ts";
import { messageFrame } from "../protocol/frames.ts";
import { type Clock, isoTimestamp } from "./clock.ts";
import type { RouterObserver } from "./router.ts";
import type { FrameSource, Subscription } from "./subscription.ts";

const log = getLogger(["shoal", "hub"]);

/**
 * Channel name → the local subscriptions to it (pending ones included). The broker channel is subscribed when
 * the first local subscription joins and unsubscribed when the last one leaves; broker calls for one channel
 * are chained so they never overlap or reorder.
 */
export class Hub {
  readonly #broker: Broker;
  readonly #clock: Clock;
  readonly #observer: RouterObserver;
  readonly #channels = new Map<string, Set<Subscription>>();
  readonly #ready = new Map<string, Promise<void>>();
  readonly #tails = new Map<string, Promise<void>>();

  constructor(broker: Broker, options: { clock: Clock; observer: RouterObserver }) {
    this.#broker = broker;
    this.#clock = options.clock;
    this.#observer = options.observer;
  }

  /** Channels with at least one local subscription. */
  get channelCount(): number {
    return this.#channels.size;
  }

  /** Local subscriptions across all channels. */
  get subscriptionCount(): number {
    let n = 0;
    for (const members of this.#channels.values()) n += members.size;
    return n;
  }

  /** Register a subscription; resolves once the broker delivers its channel. On failure it is unregistered. */
  async add(subscription: Subscription): Promise<void> {
    const name = subscription.name;
    let members = this.#channels.get(name);
    if (!members) {
      members = new Set();
      this.#channels.set(name, members);
      this.#ready.set(name, this.#chain(name, () => this.#broker.subscribe(name)));
    }
    members.add(subscription);
    try {
      await this.#ready.get(name);
    } catch (error) {
      this.remove(subscription);
      throw error;
    }
  }

  /** Unregister a subscription; the last one out unsubscribes the broker channel. Idempotent. */
  remove(subscription: Subscription): void {
    const name = subscription.name;
    const members = this.#channels.get(name);
    if (!members?.delete(subscription) || members.size > 0) return;
    this.#channels.delete(name);
    this.#ready.delete(name);
    this.#chain(name, () => this.#broker.unsubscribe(name)).catch((error) =>
      log.error("broker unsubscribe failed", { channel: name, error: String(error) })
    );
  }

  /** Route one broker message to the subscriptions its payload names (SocketShark §4.2). */
  deliver(message: BrokerMessage): void {
    const members = this.#channels.get(message.channel);
    if (!members) return;
    this.#observer.received?.();
    const parsed = parsePublishedPayload(message.payload);
    if (!parsed.ok) {
      log.warn("invalid service event", { channel: message.channel, reason: parsed.reason, payload: message.payload });
      return;
    }
    for (const warning of parsed.warnings) log.warn(warning, { channel: message.channel, payload: message.payload });
    const frame = this.#frames(parsed.message, message);
    // The channel picks the sessions; the payload's `subscription` picks the subscription within each.
    for (const member of members) {
      member.session.subscriptions.get(parsed.message.subscription)?.receive(parsed.message, frame);
    }
  }

  /** Serializes each distinct frame once: frames differ only by the subscription's extra fields. */
  #frames(published: PublishedMessage, message: BrokerMessage): FrameSource {
    const cache = new Map<string, string>();
    let sentAt: string | undefined;
    let receivedAt: string | undefined;
    return (subscription) => {
      let text = cache.get(subscription.extraKey);
      if (text === undefined) {
        sentAt ??= isoTimestamp(this.#clock.now());
        receivedAt ??= isoTimestamp(message.receivedAt);
        text = JSON.stringify(messageFrame(published.subscription, published.data, {
          publishedAt: published.publishedAt,
          receivedAt,
          queueSize: message.queueSize,
          extra: subscription.extra,
          sentAt,
        }));
        cache.set(subscription.extraKey, text);
      }
      return text;
    };
  }

  #chain(name: string, op: () => Promise<void>): Promise<void> {
    const previous = this.#tails.get(name) ?? Promise.resolve();
    const next = previous.catch(() => {}).then(op);
    this.#tails.set(name, next);
    const forget = () => {
      if (this.#tails.get(name) === next) this.#tails.delete(name);
    };
    next.then(forget, forget);
    return next;
  }
}
