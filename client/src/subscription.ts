import type { Timer } from "./clock.ts";
import { ShoalRequestError } from "./errors.ts";
import type {
  Frame,
  Message,
  Position,
  Reply,
  SendOptions,
  SubscribeOptions,
  SubscribeReply,
  SubscriptionState,
} from "./types.ts";

/** A subscription of a `ShoalClient`, from `client.subscribe()`. */
export interface Subscription<T = unknown> {
  /** The subscription name, e.g. `"books.1"`. */
  readonly name: string;
  /**
   * Resolves with the first subscribe OK; rejects with `ShoalError` (`error`, `data`) on an error reply, or with
   * `ShoalRequestError` when the subscription ended first (`unsubscribed`, `closed`). Rejections are marked
   * handled: not awaiting it never makes an unhandled rejection.
   */
  readonly ready: Promise<SubscribeReply>;
  /** Where the subscription is. */
  readonly state: SubscriptionState;
  /** The last history position seen (subscribe OK or message), for services with history; else undefined. */
  readonly position: Position | undefined;
  /**
   * Unsubscribe. Resolves with the unsubscribe OK, or undefined when there was nothing to tell Shoal (not
   * connected, or Shoal had ended the subscription already). Rejects with `ShoalError` when the service refused
   * (`before_unsubscribe`): the subscription then stays active, as on the server.
   */
  unsubscribe(): Promise<Reply | undefined>;
  /** `client.send(this.name, data, options)`. */
  send<R = unknown>(data: unknown, options?: SendOptions): Promise<Reply<R> | undefined>;
}

/** What a subscription needs of its client. */
export interface SubscriptionHost {
  unsubscribe(subscription: ClientSubscription): Promise<Reply | undefined>;
  send<R>(name: string, data: unknown, options?: SendOptions): Promise<Reply<R> | undefined>;
  /** An application callback of the subscription threw: report it (it never propagates). */
  callbackFailed(callback: string, subscription: string, error: unknown): void;
}

/** Keys the SDK writes itself in a subscribe frame; extra fields may not name them. */
const RESERVED = new Set(["event", "subscription", "recover"]);

/** A promise with its settle functions, settled at most once. */
class Deferred<T> {
  readonly promise: Promise<T>;
  settled = false;
  #resolve!: (value: T) => void;
  #reject!: (error: unknown) => void;

  constructor() {
    this.promise = new Promise<T>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
  }

  resolve(value: T): void {
    if (this.settled) return;
    this.settled = true;
    this.#resolve(value);
  }

  reject(error: unknown): void {
    if (this.settled) return;
    this.settled = true;
    this.#reject(error);
  }
}

/** One subscription's state, owned by its client; handed to the application as a `Subscription`. */
export class ClientSubscription<T = unknown> implements Subscription<T> {
  readonly name: string;
  readonly options: SubscribeOptions<T>;
  state: SubscriptionState = "subscribing";
  /** A subscribe for it was sent on the current connection (or it is active there). */
  sent = false;
  /** Its subscribe OK arrived on the current connection: messages for the name are its own. */
  confirmed = false;
  /** Shoal ended it while its unsubscribe was on the way. */
  revoked = false;
  position: Position | undefined;
  /** Re-subscribes refused for a passing reason in a row, and the timer of the next try. */
  retries = 0;
  retry: Timer | undefined;
  readonly #ready = new Deferred<SubscribeReply>();
  #leaving: Deferred<Reply | undefined> | undefined;
  readonly #host: SubscriptionHost;
  readonly #forgetSignal: () => void;

  constructor(name: string, options: SubscribeOptions<T>, host: SubscriptionHost) {
    for (const key of Object.keys(options.fields ?? {})) {
      if (RESERVED.has(key)) throw new TypeError(`subscribe(${JSON.stringify(name)}): fields may not set "${key}"`);
    }
    JSON.stringify(options.fields); // throws now (a BigInt, a cycle) rather than at every connect
    this.name = name;
    this.options = options;
    this.#host = host;
    if (typeof options.recover === "object" && options.recover !== null) this.position = { ...options.recover };
    this.#ready.promise.catch(() => {}); // the application may never await it
    const signal = options.signal;
    const onAbort = () => void this.unsubscribe().catch(() => {});
    signal?.addEventListener("abort", onAbort, { once: true });
    this.#forgetSignal = () => signal?.removeEventListener("abort", onAbort);
  }

  get ready(): Promise<SubscribeReply> {
    return this.#ready.promise;
  }

  /** Whether `ready` has settled (so a later OK is a re-subscribe). */
  get readySettled(): boolean {
    return this.#ready.settled;
  }

  unsubscribe(): Promise<Reply | undefined> {
    return this.#host.unsubscribe(this);
  }

  send<R = unknown>(data: unknown, options?: SendOptions): Promise<Reply<R> | undefined> {
    return this.#host.send<R>(this.name, data, options);
  }

  /** The subscribe frame: name, extra fields, and `recover` from the last position unless recovery is off. */
  frame(): Frame {
    const frame: Record<string, unknown> = { event: "subscribe", subscription: this.name, ...this.options.fields };
    if (this.options.recover !== false && this.position) frame.recover = { ...this.position };
    return frame;
  }

  /** A subscribe OK: take its position, settle `ready` or tell the application it re-subscribed. */
  subscribed(reply: SubscribeReply): void {
    this.confirmed = true;
    this.retries = 0;
    if (this.state === "subscribing") this.state = "active";
    const { offset, epoch, recovered } = reply;
    if (Number.isInteger(offset) && typeof epoch === "string") {
      // Recovered: the replay follows from our own position. Otherwise the stream starts at the OK's.
      if (!(recovered === true && this.position?.epoch === epoch)) this.position = { offset: offset as number, epoch };
    }
    if (!this.#ready.settled) return this.#ready.resolve(reply);
    try {
      this.options.onResubscribed?.({ recovered: recovered === true, reply });
    } catch (error) {
      this.#host.callbackFailed("onResubscribed", this.name, error);
    }
  }

  /** A published message: dropped when its offset was delivered already, else handed to `onMessage`. */
  deliver(frame: Frame): void {
    const { offset, epoch } = frame;
    if (Number.isInteger(offset) && typeof epoch === "string") {
      const position = this.position;
      if (position && position.epoch === epoch && (offset as number) <= position.offset) return;
      this.position = { offset: offset as number, epoch };
    }
    try {
      this.options.onMessage(frame as Message<T>);
    } catch (error) {
      this.#host.callbackFailed("onMessage", this.name, error);
    }
  }

  /** Waiting on the unsubscribe reply. */
  leave(): Promise<Reply | undefined> {
    this.state = "unsubscribing";
    this.#leaving = new Deferred();
    return this.#leaving.promise;
  }

  /** The promise of the unsubscribe on its way, if any. */
  get leaving(): Promise<Reply | undefined> | undefined {
    return this.#leaving?.promise;
  }

  /** The unsubscribe was refused: active again. */
  stay(error: unknown): void {
    this.state = "active";
    const leaving = this.#leaving;
    this.#leaving = undefined;
    leaving?.reject(error);
  }

  /**
   * Over. `ready`, if still waiting, rejects with `failure` (default: unsubscribed); a pending unsubscribe
   * resolves with `reply`.
   */
  end(options: { failure?: unknown; reply?: Reply } = {}): void {
    this.state = "unsubscribed";
    this.retry?.clear();
    this.#forgetSignal();
    this.sent = false;
    this.confirmed = false;
    this.#ready.reject(
      options.failure ?? new ShoalRequestError("unsubscribed", `${this.name} was unsubscribed before its subscribe was answered`),
    );
    this.#leaving?.resolve(options.reply);
  }
}
