import { getLogger } from "@logtape/logtape";
import { presenceControl } from "../protocol/broker_message.ts";
import type { Activity } from "./activity.ts";
import type { Clock } from "./clock.ts";
import type { Observer } from "./observer.ts";

const log = getLogger(["shoal", "presence"]);

/** A presence entry lives this many refresh intervals past its last write: a dead node's entries drop out then. */
export const PRESENCE_TTL_INTERVALS = 3;

/** A presence service's settings (`services.<name>.presence`, extension E3). */
export interface PresenceSettings {
  /** Other subscribers get `join` and `leave` frames. */
  readonly joinLeave: boolean;
  /** Seconds between two writes of a node's entries. */
  readonly refreshInterval: number;
}

/** Who is subscribed to one subscription name, on every node: the `data` of a `presence` reply. */
export interface PresenceData {
  /** Sessions subscribed. */
  count: number;
  /** Their auth fields, each distinct object once. */
  users: Record<string, unknown>[];
}

/** One distinct user of a presence: its auth fields, and their JSON text as stored (what a reply is built from). */
export interface PresenceUser {
  readonly text: string;
  readonly fields: Readonly<Record<string, unknown>>;
}

/** A presence as read from the store. */
export interface PresenceSnapshot {
  /** Sessions subscribed. */
  readonly count: number;
  /** Each distinct auth-fields object once; a text is a JSON object, checked where it was read. */
  readonly users: readonly PresenceUser[];
}

/** One session's entry in a subscription's presence. */
export interface PresenceEntry {
  readonly session: string;
  /** The session's auth fields as JSON text (an object). */
  readonly user: string;
}

/** One write to a subscription's presence. */
export interface PresenceChange {
  /** Entries to add or rewrite; each expires `ttl` seconds from now unless written again. */
  readonly add: readonly PresenceEntry[];
  /** Sessions to remove. */
  readonly remove: readonly string[];
  readonly ttl: number;
}

/** What a write or read found besides its own work. */
export interface PresenceExpiry {
  /** Entries that had expired (their node stopped refreshing them), removed by this call: each gets its `leave`. */
  readonly expired: readonly PresenceEntry[];
}

/**
 * Where presence entries live (extension E3): the process for the memory broker, Redis for the others, so every
 * node sharing the broker sees every node's entries. Implemented in `src/broker/`. A call on one channel is one
 * atomic step; an expired entry is removed by the first call that sees it, which reports it (once).
 */
export interface PresenceStore {
  /** Add, rewrite and remove entries of one channel. `restored`: sessions of `add` that had no entry any more. */
  updatePresence(channel: string, change: PresenceChange): Promise<PresenceExpiry & { readonly restored: readonly string[] }>;
  /** The channel's live entries: how many, and each distinct auth-fields object once. */
  readPresence(channel: string): Promise<PresenceSnapshot & PresenceExpiry>;
}

/** What the tracker needs of a subscription. */
export interface PresenceMember {
  readonly name: string;
  readonly session: { readonly id: string; readonly authInfo: Readonly<Record<string, unknown>> };
}

/** One subscription name's presence as this node keeps it. */
interface Channel {
  readonly name: string;
  readonly settings: PresenceSettings;
  /** This node's sessions present: session id → the subscription and its auth fields (JSON). */
  readonly local: Map<string, { readonly member: PresenceMember; readonly user: string }>;
  /** Writes not yet sent, by session: its auth fields (add) or null (remove). The latest wins. */
  readonly writes: Map<string, string | null>;
  /** Join and leave notices to publish once the write carrying them has landed. */
  notices: Notice[];
  /** The write that will carry what `writes` holds now (it starts once `running` ends). */
  next: Promise<void> | undefined;
  running: Promise<void> | undefined;
  timer: unknown;
}

interface Notice {
  readonly kind: "join" | "leave";
  readonly session: string;
  readonly user: string;
}

export interface PresenceTrackerOptions {
  readonly clock: Clock;
  readonly observer: Observer;
  readonly activity: Activity;
  /** Publishes a payload on a channel (the broker's): how join and leave notices reach every node. */
  readonly publish: (channel: string, payload: string) => Promise<void>;
}

/**
 * This node's part of presence (extension E3): it writes an entry per local subscription of a presence service to
 * the store when the subscription starts, removes it when it ends, rewrites them all every `refreshInterval`
 * (so a node that dies drops out after `PRESENCE_TTL_INTERVALS` intervals), and publishes `join`/`leave` notices.
 * Writes for one channel go out one at a time, in order, batched: a burst of subscribes is one store call.
 */
export class PresenceTracker {
  readonly #store: PresenceStore;
  readonly #clock: Clock;
  readonly #observer: Observer;
  readonly #activity: Activity;
  readonly #publish: (channel: string, payload: string) => Promise<void>;
  readonly #channels = new Map<string, Channel>();
  #closed = false;

  constructor(store: PresenceStore, options: PresenceTrackerOptions) {
    this.#store = store;
    this.#clock = options.clock;
    this.#observer = options.observer;
    this.#activity = options.activity;
    this.#publish = options.publish;
  }

  /** Local sessions present, over all channels (for leak checks). */
  get size(): number {
    let n = 0;
    for (const channel of this.#channels.values()) n += channel.local.size;
    return n;
  }

  /**
   * An active subscription of a presence service: write its entry (and its `join`). Resolves once the write
   * landed or failed (a failed one is retried at the next refresh); never rejects.
   */
  join(member: PresenceMember, settings: PresenceSettings): Promise<void> {
    if (this.#closed) return Promise.resolve();
    let channel = this.#channels.get(member.name);
    if (!channel) {
      channel = { name: member.name, settings, local: new Map(), writes: new Map(), notices: [], next: undefined, running: undefined, timer: undefined };
      this.#channels.set(member.name, channel);
      this.#schedule(channel);
    }
    const id = member.session.id;
    const user = stableJson(member.session.authInfo);
    channel.local.set(id, { member, user });
    channel.writes.set(id, user);
    if (channel.settings.joinLeave) channel.notices.push({ kind: "join", session: id, user });
    return this.#flush(channel);
  }

  /** The subscription ended (unsubscribed, revoked, disconnected): remove its entry (and say `leave`). Idempotent. */
  leave(member: PresenceMember): void {
    const channel = this.#channels.get(member.name);
    const id = member.session.id;
    const entry = channel?.local.get(id);
    if (!channel || entry?.member !== member) return;
    channel.local.delete(id);
    channel.writes.set(id, null);
    if (channel.settings.joinLeave) channel.notices.push({ kind: "leave", session: id, user: entry.user });
    void this.#flush(channel);
  }

  /**
   * Who is subscribed to `name` on every node. Entries found expired are removed (and their `leave` said) by the
   * read. Rejects when the store cannot answer.
   */
  async read(name: string, settings: PresenceSettings, source: "event" | "api"): Promise<PresenceSnapshot> {
    this.#observer.presenceQuery?.(source);
    const found = await this.#store.readPresence(name);
    if (settings.joinLeave) void this.#announce(name, found.expired.map((e) => ({ kind: "leave", ...e })));
    return { count: found.count, users: found.users };
  }

  /** Stop refreshing, once the writes in flight (the leaves of a shutdown, say) have landed or failed. */
  async close(): Promise<void> {
    this.#closed = true;
    await Promise.all([...this.#channels.values()].map((c) => c.next ?? c.running));
    for (const channel of this.#channels.values()) this.#clock.clearTimeout(channel.timer);
    this.#channels.clear();
  }

  /** Every `refreshInterval`: rewrite this node's entries of the channel, so they do not expire. */
  #schedule(channel: Channel): void {
    channel.timer = this.#clock.setTimeout(() => {
      channel.timer = undefined;
      if (this.#closed || this.#channels.get(channel.name) !== channel) return;
      for (const [id, entry] of channel.local) channel.writes.set(id, entry.user);
      this.#schedule(channel);
      void this.#flush(channel);
    }, channel.settings.refreshInterval * 1000);
  }

  /** The write that will carry the channel's pending changes: after the one in flight, which it never overlaps. */
  #flush(channel: Channel): Promise<void> {
    channel.next ??= this.#activity.track((async () => {
      await channel.running;
      channel.next = undefined;
      const running = this.#write(channel);
      channel.running = running;
      await running;
      if (channel.running === running) channel.running = undefined;
      this.#forgetIfIdle(channel);
    })());
    return channel.next;
  }

  /** Send the pending writes in one store call, then publish their notices. Never throws. */
  async #write(channel: Channel): Promise<void> {
    if (channel.writes.size === 0 && channel.notices.length === 0) return;
    const add: PresenceEntry[] = [];
    const remove: string[] = [];
    for (const [session, user] of channel.writes) {
      if (user === null) remove.push(session);
      else add.push({ session, user });
    }
    const notices = channel.notices;
    channel.writes.clear();
    channel.notices = [];
    const ttl = channel.settings.refreshInterval * PRESENCE_TTL_INTERVALS;
    let update: Awaited<ReturnType<PresenceStore["updatePresence"]>>;
    try {
      update = await this.#store.updatePresence(channel.name, { add, remove, ttl });
    } catch (error) {
      log.warn("presence write failed; retried at the next refresh", { subscription: channel.name, error: String(error) });
      // What did not land goes back, unless something newer replaced it; the local entries are rewritten anyway.
      for (const session of remove) if (!channel.writes.has(session) && !channel.local.has(session)) channel.writes.set(session, null);
      channel.notices = [...notices, ...channel.notices];
      return;
    }
    if (!channel.settings.joinLeave) return;
    const announced = new Set(notices.filter((n) => n.kind === "join").map((n) => n.session));
    const restored: Notice[] = [];
    for (const session of update.restored) {
      // An entry that had expired (this node stalled) and came back: the others were told it left.
      const entry = channel.local.get(session);
      if (entry && !announced.has(session)) restored.push({ kind: "join", session, user: entry.user });
    }
    // Awaited, so the notices of the next write never overtake these.
    await this.#announce(channel.name, [...notices, ...update.expired.map((e) => ({ kind: "leave" as const, ...e })), ...restored]);
  }

  /**
   * Publish notices on the channel, issued in order at once (one connection keeps them in order); failures are
   * logged, never thrown (a notice is sent at most once).
   */
  #announce(name: string, notices: readonly Notice[]): Promise<void> {
    if (notices.length === 0) return Promise.resolve();
    const work = Promise.all(notices.map((notice) =>
      this.#publish(name, presenceControl(notice.kind, notice.session, notice.user)).catch((error) => {
        log.warn("presence notice not published", { subscription: name, kind: notice.kind, error: String(error) });
      })
    ));
    return this.#activity.track(work).then(() => undefined);
  }

  /** A channel with no local entry and nothing left to write is dropped, with its timer. */
  #forgetIfIdle(channel: Channel): void {
    if (channel.local.size > 0 || channel.writes.size > 0 || channel.notices.length > 0) return;
    if (channel.next || channel.running) return;
    this.#clock.clearTimeout(channel.timer);
    if (this.#channels.get(channel.name) === channel) this.#channels.delete(channel.name);
  }
}

/** JSON with object keys sorted, so equal auth fields are equal texts on every node. */
export function stableJson(value: unknown): string {
  if (value === null || typeof value !== "object") return JSON.stringify(value) ?? "null";
  if (Array.isArray(value)) return `[${value.map(stableJson).join(",")}]`;
  const o = value as Record<string, unknown>;
  const keys = Object.keys(o).filter((k) => o[k] !== undefined).sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${stableJson(o[k])}`).join(",")}}`;
}
