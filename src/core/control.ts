import { getLogger } from "@logtape/logtape";
import type { BrokerMessage } from "../broker/broker.ts";
import { type Close, Closes } from "../protocol/close_codes.ts";
import { AdminErrors } from "../protocol/errors.ts";
import { pyEquals } from "../protocol/pyvalues.ts";
import { type Clock, raceTimeout, systemClock } from "./clock.ts";
import {
  CONTROL_CHANNEL,
  type ControlMessage,
  controlPayload,
  parseControlMessage,
  type Report,
  type SessionTarget,
} from "./control_message.ts";

export { CONTROL_CHANNEL, type SessionTarget } from "./control_message.ts";

const log = getLogger(["shoal", "control"]);

/** A node that has not reported for this many of its intervals is gone (Centrifugo waits about as long). */
export const MISSED_REPORTS = 3;

/** How long a closing node waits for its goodbye to go out, milliseconds. */
const LEAVE_MS = 1000;

/** What the control module needs of the broker: one channel to subscribe and publish on. */
export interface ControlBus {
  subscribe(channel: string): Promise<void>;
  publish(channel: string, payload: string): Promise<void>;
  /** Connected: a publish now would go out. */
  readonly ready: boolean;
}

/** What it needs of a subscription: whether it is set up (a pending one is not counted). */
export interface ControlSubscription {
  readonly active: boolean;
}

/** What it needs of one session of this node. */
export interface ControlSession {
  /** The id on the session's log lines. */
  readonly id: string;
  readonly authInfo: Readonly<Record<string, unknown>>;
  readonly subscriptions: ReadonlyMap<string, ControlSubscription>;
  /** End one of its subscriptions as a revocation does (decision 3), in turn with its events. */
  revoke(subscription: ControlSubscription, error: unknown): void;
  /** Run its unsubscribe callbacks, then close the connection with `close`. */
  closeAfterCallbacks(close: Close): Promise<void>;
}

/** What it needs of this node: its sessions. */
export interface ControlNode {
  sessions(): Iterable<ControlSession>;
}

/** One node as `GET /admin/info` shows it. */
export interface NodeInfo {
  readonly id: string;
  readonly runtime: string;
  readonly version: string;
  /** Seconds since it started. */
  readonly uptime: number;
  readonly connections: number;
  readonly subscriptions: number;
  readonly channels: number;
}

/** One subscription name as `GET /admin/channels` shows it: its sessions on every node. */
export interface ChannelCount {
  readonly subscription: string;
  readonly subscribers: number;
}

export interface ControlOptions {
  readonly bus: ControlBus;
  readonly node: ControlNode;
  /** This node's id (its sessions' ids start with it). */
  readonly id: string;
  /** The runtime, e.g. "bun 1.4.5". */
  readonly runtime: string;
  /** Shoal's version. */
  readonly version: string;
  /** Seconds between reports (`admin.reportInterval`). */
  readonly interval: number;
  readonly clock?: Clock;
}

/** Another node, as its last report described it. */
interface Peer {
  readonly report: Report;
  readonly receivedAt: number;
  readonly expiresAt: number;
}

/**
 * Every node acting as one for the admin API (extension E4). A command given to one node is published on the
 * broker's control channel and carried out by every node, the sender first; each node publishes a report of its
 * figures every interval and keeps the others' latest, forgetting a node after three intervals without one (or at
 * once when it says goodbye), so `info` and `channels` add up the live nodes.
 */
export class Control {
  readonly #bus: ControlBus;
  readonly #node: ControlNode;
  readonly #clock: Clock;
  readonly #id: string;
  readonly #runtime: string;
  readonly #version: string;
  readonly #interval: number;
  readonly #startedAt: number;
  readonly #peers = new Map<string, Peer>();
  #timer: unknown;
  #reportFailing = false;
  #started = false;
  #closed = false;

  constructor(options: ControlOptions) {
    this.#bus = options.bus;
    this.#node = options.node;
    this.#clock = options.clock ?? systemClock;
    this.#id = options.id;
    this.#runtime = options.runtime;
    this.#version = options.version;
    this.#interval = options.interval;
    this.#startedAt = this.#clock.now();
  }

  get id(): string {
    return this.#id;
  }

  /** Subscribe the control channel, report at once and then every interval. */
  async start(): Promise<void> {
    if (this.#started || this.#closed) return;
    this.#started = true;
    await this.#bus.subscribe(CONTROL_CHANNEL);
    this.#tick();
  }

  /** A message on the control channel (the router passes them here instead of to the hub). Never throws. */
  receive(message: BrokerMessage): void {
    if (this.#closed) return;
    const parsed = parseControlMessage(message.payload);
    if (!parsed.ok) {
      log.warn("control message ignored", { reason: parsed.reason });
      return;
    }
    const m = parsed.message;
    // Its own, back from the broker: a command was carried out here when it was given.
    if (m.node === this.#id) return;
    try {
      this.#handle(m);
    } catch (error) {
      log.error("control message failed", { type: m.type, from: m.node, error });
    }
  }

  #handle(m: ControlMessage): void {
    switch (m.type) {
      case "report": {
        const known = this.#peers.has(m.node);
        const now = this.#clock.now();
        this.#peers.set(m.node, { report: m, receivedAt: now, expiresAt: now + MISSED_REPORTS * m.interval * 1000 });
        if (known) return;
        log.info("node joined", { node: m.node });
        // Tell a newcomer about this node now rather than within an interval (as Centrifugo does).
        this.#report();
        return;
      }
      case "leave":
        if (this.#peers.delete(m.node)) log.info("node left", { node: m.node });
        return;
      case "disconnect":
        this.#disconnectHere(m.target, m.node);
        return;
      case "unsubscribe":
        this.#unsubscribeHere(m.target, m.subscription, m.node);
        return;
    }
  }

  /** Every live node, this one included (its figures as of now), by id. */
  info(): NodeInfo[] {
    this.#prune();
    const now = this.#clock.now();
    const nodes: NodeInfo[] = [this.#figures().info];
    for (const [id, peer] of this.#peers) {
      const r = peer.report;
      nodes.push({
        id,
        runtime: r.runtime,
        version: r.version,
        uptime: r.uptime + Math.floor((now - peer.receivedAt) / 1000),
        connections: r.connections,
        subscriptions: r.subscriptions,
        channels: r.channels.length,
      });
    }
    return nodes.sort((a, b) => compare(a.id, b.id));
  }

  /** Every subscription name starting with `prefix` that has a subscriber on a live node, with their sum, by name. */
  channels(prefix = ""): ChannelCount[] {
    this.#prune();
    const totals = new Map<string, number>();
    const add = (name: string, n: number) => {
      if (n > 0 && name.startsWith(prefix)) totals.set(name, (totals.get(name) ?? 0) + n);
    };
    for (const [name, n] of this.#figures().channels) add(name, n);
    for (const peer of this.#peers.values()) for (const [name, n] of peer.report.channels) add(name, n);
    return [...totals].sort(([a], [b]) => compare(a, b)).map(([subscription, subscribers]) => ({ subscription, subscribers }));
  }

  /**
   * Close every matching session of every node with 4000 "disconnected", each after its unsubscribe callbacks.
   * Resolves once the command is on the broker (rejects if it could not be published: then no node acts) and this
   * node's sessions have begun closing; the number of this node's sessions it matched.
   */
  async disconnect(target: SessionTarget): Promise<number> {
    await this.#publish({ type: "disconnect", node: this.#id, target });
    return this.#disconnectHere(target, this.#id);
  }

  /**
   * Revoke `subscription` of every matching session of every node, with the error "Unsubscribed." (decision 3:
   * unsubscribe callbacks, then the notice). As `disconnect`: published first, then done here.
   */
  async unsubscribe(target: SessionTarget, subscription: string): Promise<number> {
    await this.#publish({ type: "unsubscribe", node: this.#id, target, subscription });
    return this.#unsubscribeHere(target, subscription, this.#id);
  }

  /**
   * Stop reporting and acting, and say goodbye so the others forget this node at once (waiting at most a second).
   * The control channel stays subscribed until the broker closes: messages on it are ignored from now on.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#peers.clear();
    if (!this.#started || !this.#bus.ready) return;
    const leave = this.#publish({ type: "leave", node: this.#id }).catch((error) =>
      log.warn("could not say goodbye on the control channel", { error: String(error) })
    );
    await raceTimeout(leave, LEAVE_MS, () => undefined, this.#clock);
  }

  #disconnectHere(target: SessionTarget, from: string): number {
    const sessions = this.#matching(target);
    for (const session of sessions) {
      log.info("disconnecting session (admin API)", { session: session.id, from });
      session.closeAfterCallbacks(Closes.disconnected).catch((error) =>
        log.error("admin disconnect failed", { session: session.id, error })
      );
    }
    return sessions.length;
  }

  #unsubscribeHere(target: SessionTarget, name: string, from: string): number {
    let count = 0;
    for (const session of this.#matching(target)) {
      const subscription = session.subscriptions.get(name);
      if (!subscription) continue;
      log.info("unsubscribing session (admin API)", { session: session.id, subscription: name, from });
      session.revoke(subscription, AdminErrors.unsubscribed);
      count++;
    }
    return count;
  }

  /** This node's sessions the target names (a snapshot: closing them changes the node's set). */
  #matching(target: SessionTarget): ControlSession[] {
    const found: ControlSession[] = [];
    for (const session of this.#node.sessions()) if (matches(session, target)) found.push(session);
    return found;
  }

  /** This node's figures, as of now. */
  #figures(): { info: NodeInfo; channels: Map<string, number> } {
    let connections = 0;
    let subscriptions = 0;
    const channels = new Map<string, number>();
    for (const session of this.#node.sessions()) {
      connections++;
      for (const [name, subscription] of session.subscriptions) {
        if (!subscription.active) continue;
        subscriptions++;
        channels.set(name, (channels.get(name) ?? 0) + 1);
      }
    }
    const info: NodeInfo = {
      id: this.#id,
      runtime: this.#runtime,
      version: this.#version,
      uptime: Math.floor((this.#clock.now() - this.#startedAt) / 1000),
      connections,
      subscriptions,
      channels: channels.size,
    };
    return { info, channels };
  }

  /** Report now and schedule the next tick. */
  #tick(): void {
    this.#timer = undefined;
    if (this.#closed) return;
    this.#prune();
    this.#report();
    this.#timer = this.#clock.setTimeout(() => this.#tick(), this.#interval * 1000);
  }

  /** Publish this node's report; a failure is logged once per outage, never thrown. */
  #report(): void {
    if (this.#closed || !this.#bus.ready) return;
    const { info, channels } = this.#figures();
    const report: Report = {
      type: "report",
      node: this.#id,
      runtime: info.runtime,
      version: info.version,
      uptime: info.uptime,
      interval: this.#interval,
      connections: info.connections,
      subscriptions: info.subscriptions,
      channels: [...channels],
    };
    this.#publish(report).then(
      () => {
        if (this.#reportFailing) log.info("node report published again");
        this.#reportFailing = false;
      },
      (error) => {
        if (!this.#reportFailing) log.warn("node report not published", { error: String(error) });
        this.#reportFailing = true;
      },
    );
  }

  /** Forget the nodes whose last report is more than three of their intervals old. */
  #prune(): void {
    const now = this.#clock.now();
    for (const [id, peer] of this.#peers) {
      if (peer.expiresAt > now) continue;
      this.#peers.delete(id);
      log.warn("node gone: no report for three intervals", { node: id, interval: peer.report.interval });
    }
  }

  #publish(message: ControlMessage): Promise<void> {
    return this.#bus.publish(CONTROL_CHANNEL, controlPayload(message));
  }
}

/** Whether a session is one the target names: by id, or by auth fields (each given one present and `==`). */
function matches(session: ControlSession, target: SessionTarget): boolean {
  if ("session" in target) return session.id === target.session;
  const fields = Object.entries(target.auth);
  // No field names everybody, anonymous sessions included: never a match (the admin API refuses it too).
  if (fields.length === 0) return false;
  const info = session.authInfo;
  return fields.every(([key, value]) => Object.hasOwn(info, key) && pyEquals(info[key], value));
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
