import { getLogger } from "@logtape/logtape";
import type { Broker, BrokerMessage } from "../broker/broker.ts";
import {
  type HistoryPosition,
  parsePresenceControl,
  parsePublishedPayload,
  type PresenceControl,
  type PublishedMessage,
} from "../protocol/broker_message.ts";
import { messageFrame, presenceNoticeFrame } from "../protocol/frames.ts";
import { clip } from "../log.ts";
import type { Activity } from "./activity.ts";
import { type Clock, isoTimestamp } from "./clock.ts";
import type { Observer } from "./observer.ts";

const log = getLogger(["shoal", "hub"]);

/** Builds (or reuses) the serialized frame of one published message for subscriptions with these extra fields. */
export type FrameSource = (target: { readonly extraKey: string; readonly extra: Readonly<Record<string, unknown>> }) => string;

/**
 * What the hub needs of a subscription (its member): its name and extra fields, its native topic, its way to the
 * connection's topics, and the three ways a message reaches it. The hub never reads a session's maps.
 */
export interface HubMember {
  readonly name: string;
  readonly extraKey: string;
  readonly extra: Readonly<Record<string, unknown>>;
  readonly service: {
    readonly filterFields: readonly string[];
    readonly history?: unknown;
    readonly presence?: { readonly joinLeave: boolean };
  };
  /** The native fan-out topic this member joined (set by the hub), if any. */
  topic: string | undefined;
  /** Join a native topic through the member's connection; false where there are none (or it is closing). */
  joinTopic(topic: string): boolean;
  leaveTopic(topic: string): void;
  /** A message addressed to this member's name. */
  receive(message: PublishedMessage, frame: FrameSource): void;
  /** A uniform message (see `Hub.deliver`); true when it went out. */
  receiveUniform(message: PublishedMessage, frame: FrameSource): boolean;
  /** A message on this member's channel that may name another subscription of the same session: pass it there. */
  route(message: PublishedMessage, frame: FrameSource): void;
  /**
   * A history channel's live stream has a hole (an offset skipped, a new epoch) that this member, served by the
   * native fan-out, could not see: it ends itself with "Insufficient state." (extension E1).
   */
  insufficientState(why: string): void;
  /** A history offset of this member's channel whose message is not delivered here: move past it. */
  skip(position: HistoryPosition): void;
  /**
   * A presence notice (extension E3, `joinLeave`), serialized: sent by an active member unless `origin` is its
   * own session, which is not told of itself.
   */
  presenceNotice?(text: string, origin: string): void;
}

/** Active subscriptions of one channel with equal extra fields, joined to one native topic. */
interface FanoutGroup {
  readonly topic: string;
  size: number;
  readonly extraKey: string;
  readonly extra: Readonly<Record<string, unknown>>;
}

/**
 * Channel name → the local subscriptions to it (pending ones included). The broker channel is subscribed when
 * the first local subscription joins and unsubscribed when the last one leaves; broker calls for one channel
 * are chained so they never overlap or reorder.
 */
export class Hub {
  readonly #broker: Broker;
  readonly #clock: Clock;
  readonly #observer: Observer;
  readonly #activity: Activity | undefined;
  readonly #channels = new Map<string, Set<HubMember>>();
  readonly #ready = new Map<string, Promise<void>>();
  readonly #tails = new Map<string, Promise<void>>();
  /** History channels: the position of the last live message seen (extension E1). */
  readonly #positions = new Map<string, HistoryPosition>();
  /** Channel → extra-field key → the native topic its active subscriptions joined (see `useFanout`). */
  readonly #groups = new Map<string, Map<string, FanoutGroup>>();
  #publish: ((topic: string, text: string) => void) | undefined;

  constructor(broker: Broker, options: { clock: Clock; observer: Observer; activity?: Activity }) {
    this.#broker = broker;
    this.#clock = options.clock;
    this.#observer = options.observer;
    this.#activity = options.activity;
  }

  /**
   * Let the runtime fan out: an active subscription joins a native topic per channel and extra-field values, and
   * a message every such subscription would send unchanged (no filter field, order or throttle in it) goes out
   * with one `publish` per topic instead of one send per session. Per-session delivery stays for the rest.
   */
  useFanout(publish: (topic: string, text: string) => void): void {
    this.#publish = publish;
  }

  /** A subscription became active: join its fan-out topic, if the runtime has them. */
  activated(subscription: HubMember): void {
    if (!this.#publish || subscription.topic !== undefined || !this.#channels.get(subscription.name)?.has(subscription)) {
      return;
    }
    const topic = `${subscription.name}\u0000${subscription.extraKey}`;
    if (!subscription.joinTopic(topic)) return;
    subscription.topic = topic;
    let groups = this.#groups.get(subscription.name);
    if (!groups) this.#groups.set(subscription.name, groups = new Map());
    const group = groups.get(subscription.extraKey);
    if (group) group.size++;
    else groups.set(subscription.extraKey, { topic, size: 1, extraKey: subscription.extraKey, extra: subscription.extra });
  }

  /** Subscriptions that joined a fan-out topic, for leak checks. */
  get fanoutMembers(): number {
    let n = 0;
    for (const groups of this.#groups.values()) for (const group of groups.values()) n += group.size;
    return n;
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
  async add(subscription: HubMember): Promise<void> {
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
  remove(subscription: HubMember): void {
    const name = subscription.name;
    const members = this.#channels.get(name);
    if (!members?.delete(subscription)) return;
    if (subscription.topic !== undefined) this.#leave(subscription, subscription.topic);
    if (members.size > 0) return;
    this.#channels.delete(name);
    this.#ready.delete(name);
    this.#positions.delete(name);
    this.#chain(name, () => this.#broker.unsubscribe(name)).catch((error) =>
      log.error("broker unsubscribe failed", { channel: name, error })
    );
  }

  /** Route one broker message to the subscriptions its payload names (docs/protocol.md §10.4). */
  deliver(message: BrokerMessage): void {
    const members = this.#channels.get(message.channel);
    if (!members) return;
    const presence = members.values().next().value?.service.presence;
    if (presence) {
      // A presence notice is not a message: it never reaches a subscription's delivery (nor a non-presence client).
      const control = parsePresenceControl(message.payload);
      if (control) return this.#presenceNotice(message.channel, control, members, presence.joinLeave);
    }
    this.#observer.received?.();
    const parsed = parsePublishedPayload(message.payload);
    // History positions count only on a history service's channel (a hand-made envelope elsewhere is plain).
    const history = members.values().next().value?.service.history !== undefined;
    const position = parsed.ok ? parsed.message.position : parsed.position;
    if (position && !history) {
      // SocketShark would drop it too: an envelope has no `subscription` key of its own.
      log.warn("history envelope on a channel without history; dropped", { channel: message.channel, payload: clip(message.payload) });
      return;
    }
    if (position) {
      if (!this.#inSequence(message.channel, position, members)) return; // a second copy
      // An offset whose message is not for this channel's subscription (unusable, or naming another one) is
      // still an offset of the channel: its members move past it rather than see a hole at the next one.
      if (!parsed.ok || parsed.message.subscription !== message.channel) {
        for (const member of [...members]) member.skip(position);
      }
    }
    if (!parsed.ok) {
      log.warn("invalid service event", { channel: message.channel, reason: parsed.reason, payload: clip(message.payload) });
      return;
    }
    for (const warning of parsed.warnings) log.warn(warning, { channel: message.channel, payload: clip(message.payload) });
    let published = parsed.message;
    if (published.position && published.subscription !== message.channel) published = { ...published, position: undefined };
    const frame = this.#frames(published, message);
    if (this.#uniform(published, message.channel, members)) {
      let delivered = 0;
      const groups = this.#groups.get(message.channel);
      if (groups) {
        // Every joined subscription sends this frame unchanged: one native publish per distinct frame.
        for (const group of groups.values()) {
          this.#publish!(group.topic, frame(group));
          delivered += group.size;
        }
      }
      // The rest (pending ones, or all where there are no native topics) send the shared frame without
      // per-subscription checks. When every member joined a topic there is no rest: skip the walk.
      if (delivered < members.size) {
        for (const member of members) {
          if (member.topic === undefined && member.receiveUniform(published, frame)) delivered++;
        }
      }
      if (delivered > 0) this.#observer.delivered?.(delivered);
      return;
    }
    // The channel picks the sessions; the payload's `subscription` picks the subscription within each.
    for (const member of members) member.route(published, frame);
  }

  /** Tell the channel's members that a session joined or left (extension E3), once serialized. */
  #presenceNotice(channel: string, control: PresenceControl, members: Set<HubMember>, joinLeave: boolean): void {
    if (!joinLeave) return; // a node with joinLeave while this one has not: nothing for these clients
    const text = JSON.stringify(presenceNoticeFrame(control.kind, channel, control.user));
    for (const member of members) member.presenceNotice?.(text, control.session);
  }

  /**
   * Track a history channel's live stream: false for a message already seen (an offset at or before the last,
   * in the same epoch: drop it); on a hole (an offset skipped, another epoch) the members served by the native
   * fan-out end themselves, since only the hub sees their stream. Members outside it check each message.
   */
  #inSequence(channel: string, position: HistoryPosition, members: Set<HubMember>): boolean {
    const last = this.#positions.get(channel);
    if (last && last.epoch === position.epoch && position.offset <= last.offset) return false;
    this.#positions.set(channel, position);
    if (last && (last.epoch !== position.epoch || position.offset !== last.offset + 1)) {
      const why = `channel went from offset ${last.offset} of epoch ${last.epoch} to ${position.offset} of ${position.epoch}`;
      for (const member of [...members]) if (member.topic !== undefined) member.insufficientState(why);
    }
    return true;
  }

  /**
   * Whether every active subscription of the channel would send this message as is: it is addressed to the
   * channel's own subscription, and has no option or filter field that calls for a per-subscription decision.
   */
  #uniform(published: PublishedMessage, channel: string, members: Set<HubMember>): boolean {
    if (published.subscription !== channel) return false;
    if (published.options.order !== undefined || published.options.throttle !== undefined) return false;
    const service = members.values().next().value?.service;
    return service !== undefined && !service.filterFields.some((f) => Object.hasOwn(published.fields, f));
  }

  #leave(subscription: HubMember, topic: string): void {
    subscription.topic = undefined;
    subscription.leaveTopic(topic);
    const groups = this.#groups.get(subscription.name);
    const group = groups?.get(subscription.extraKey);
    if (!groups || !group) return;
    if (--group.size === 0) groups.delete(subscription.extraKey);
    if (groups.size === 0) this.#groups.delete(subscription.name);
  }

  /** Serializes each distinct frame once: frames differ only by the subscription's extra fields. */
  #frames(published: PublishedMessage, message: BrokerMessage): FrameSource {
    const cache = new Map<string, string>();
    let sentAt: string | undefined;
    let receivedAt: string | undefined;
    // Most recipients share one key: answer them without the map.
    let lastKey: string | undefined;
    let lastText = "";
    return (subscription) => {
      if (subscription.extraKey === lastKey) return lastText;
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
          position: published.position,
        }));
        cache.set(subscription.extraKey, text);
      }
      lastKey = subscription.extraKey;
      lastText = text;
      return text;
    };
  }

  #chain(name: string, op: () => Promise<void>): Promise<void> {
    const previous = this.#tails.get(name) ?? Promise.resolve();
    const next = previous.catch(() => {}).then(op);
    this.#activity?.track(next);
    this.#tails.set(name, next);
    const forget = () => {
      if (this.#tails.get(name) === next) this.#tails.delete(name);
    };
    next.then(forget, forget);
    return next;
  }
}
