import { type OffsetCount, OffsetLedger, type RecoveryStats } from "./recovery_stats.ts";
import { numberAfter } from "./subscriber.ts";
import { WsConnection } from "./ws_connection.ts";

const SEQ_KEY = Buffer.from('"seq":');
const T_KEY = Buffer.from('"t":');
const OFFSET_KEY = Buffer.from('"offset":');
const EPOCH_KEY = Buffer.from('"epoch":"');
const RECEIVED_AT_KEY = Buffer.from('"received_at":');
const QUOTE = 0x22;
const INSUFFICIENT_STATE = "Insufficient state.";
/** A failed reconnect is tried again this much later. */
const RETRY_MS = 100;

export interface RecoveringSubscriberOptions {
  readonly host: string;
  readonly port: number;
  /** The history subscription. */
  readonly topic: string;
  readonly timeoutMs: number;
  readonly stats: RecoveryStats;
}

/**
 * Where a client is: `subscribing` (waiting for an OK), `replaying` (a recovered OK came; messages without
 * `received_at` are the replay), `live`, `offline` (dropped on purpose, coming back), `closed`.
 */
type State = "subscribing" | "replaying" | "live" | "offline" | "closed";

/**
 * An S6 client of one history subscription (Shoal's protocol, extension E1): it keeps the epoch and the last offset
 * it received, and a ledger of every offset. `drop()` destroys its TCP connection without a closing handshake
 * (a network drop); after the offline time it connects again and subscribes with `recover` from its last offset. An
 * `Insufficient state.` notice gets the same recovering subscribe on the same connection. Deliveries are read with
 * `indexOf` (offset, epoch, `received_at`), as `Subscriber` reads `seq`.
 */
export class RecoveringSubscriber {
  readonly #options: RecoveringSubscriberOptions;
  #connection: WsConnection | undefined;
  #state: State = "subscribing";
  #epoch = "";
  #epochBytes = Buffer.alloc(0);
  #ledger: OffsetLedger | undefined;
  /** The offset the client asked to recover from, while a recovering subscribe is unanswered. */
  #recoverFrom: number | undefined;
  /** Performance time the current reconnect began (a new connection, or the notice that ended the subscription). */
  #reconnectAt = 0;
  /** Whether the current recovery began with a drop (its latency is measured) rather than a notice. */
  #measured = false;
  /** The current recovery's OK said `recovered: true` (only those are timed). */
  #recoveredAnswer = false;
  #started: { resolve(): void; reject(error: Error): void } | undefined;
  #subscribeTimer: ReturnType<typeof setTimeout> | undefined;
  #offlineTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(options: RecoveringSubscriberOptions) {
    this.#options = options;
  }

  /** Live: subscribed and past any replay; only such a client is dropped. */
  get live(): boolean {
    return this.#state === "live";
  }

  /** Replaying or waiting for an answer after a drop or a notice. */
  get recovering(): boolean {
    return this.#state === "subscribing" || this.#state === "replaying" || this.#state === "offline";
  }

  /** The highest offset received (the OK's offset before any message). */
  get highest(): number {
    return this.#ledger?.highest ?? 0;
  }

  /** Connect and subscribe (no `recover`): resolves on the OK, which sets the epoch and the first offset expected. */
  async start(): Promise<void> {
    await this.#connect();
    await new Promise<void>((resolve, reject) => {
      this.#started = { resolve, reject };
      this.#subscribe();
    });
  }

  /** Drop the connection now, and come back with `recover` after `offlineMs`. */
  drop(offlineMs: number): void {
    if (this.#state !== "live") return;
    this.#options.stats.drops++;
    this.#state = "offline";
    this.#abandon();
    this.#offlineTimer = setTimeout(() => this.#reconnect(), offlineMs);
  }

  /** Offsets `first` to `last` this client received (see `OffsetLedger.count`). */
  count(first: number, last: number): OffsetCount {
    const expected = Math.max(0, last - first + 1);
    return this.#ledger?.count(first, last) ?? { expected, delivered: 0, holes: 0, tail: expected };
  }

  /** A recovery not finished: still away, or without a live message after its OK (its latency was never taken). */
  get awaitingLive(): boolean {
    return this.#state === "offline" ||
      (this.#measured && (this.#state === "replaying" || this.#state === "subscribing"));
  }

  /** Close for good (closing handshake); no reconnect follows. */
  close(): void {
    this.#state = "closed";
    clearTimeout(this.#offlineTimer);
    clearTimeout(this.#subscribeTimer);
    this.#connection?.close();
  }

  /** Destroy the connection without a closing handshake; its close is not the server's doing. */
  #abandon(): void {
    const connection = this.#connection;
    this.#connection = undefined;
    connection?.destroy();
  }

  async #connect(): Promise<void> {
    // Assigned once open; a close before that (the handshake's own data) finds it unset and is ignored.
    let connection: WsConnection | undefined = undefined;
    connection = await WsConnection.open({
      host: this.#options.host,
      port: this.#options.port,
      path: "/",
      timeoutMs: this.#options.timeoutMs,
      handlers: {
        message: (payload) => this.#message(payload),
        close: (code) => this.#closed(connection, code),
      },
    });
    this.#connection = connection;
  }

  async #reconnect(): Promise<void> {
    if (this.#state !== "offline") return;
    this.#reconnectAt = performance.now();
    this.#measured = true;
    try {
      await this.#connect();
    } catch {
      this.#options.stats.reconnectFailures++;
      if (this.#state === "offline") this.#offlineTimer = setTimeout(() => this.#reconnect(), RETRY_MS);
      return;
    }
    if (this.#state !== "offline") return this.#connection?.close(); // closed meanwhile
    this.#options.stats.reconnects++;
    this.#options.stats.handshakeLatency.record(performance.now() - this.#reconnectAt);
    this.#state = "subscribing";
    this.#subscribe(this.highest);
  }

  /** Subscribe, with `recover` from `from` when given. */
  #subscribe(from?: number): void {
    this.#state = "subscribing";
    this.#recoverFrom = from;
    const frame: Record<string, unknown> = { event: "subscribe", subscription: this.#options.topic };
    if (from !== undefined) {
      frame.recover = { offset: from, epoch: this.#epoch };
      this.#options.stats.recoveringSubscribes++;
    }
    this.#connection?.send(JSON.stringify(frame));
    clearTimeout(this.#subscribeTimer);
    this.#subscribeTimer = setTimeout(() => this.#failed("no subscribe answer"), this.#options.timeoutMs);
  }

  #message(payload: Buffer): void {
    if (payload.indexOf(SEQ_KEY) >= 0) return this.#delivery(payload);
    let frame: Record<string, unknown>;
    try {
      frame = JSON.parse(payload.toString("utf8"));
    } catch {
      return;
    }
    if (frame.subscription !== this.#options.topic) return;
    if (frame.event === "subscribe" && this.#state === "subscribing") {
      clearTimeout(this.#subscribeTimer);
      if (frame.status === "ok") this.#subscribed(frame);
      else this.#failed(`subscribe: ${JSON.stringify(frame)}`);
    } else if (frame.event === "unsubscribe" && frame.error === INSUFFICIENT_STATE && this.#state === "live") {
      this.#options.stats.insufficientState++;
      this.#reconnectAt = performance.now();
      this.#measured = false;
      this.#subscribe(this.highest);
    }
  }

  #subscribed(ok: Record<string, unknown>): void {
    const stats = this.#options.stats;
    const offset = typeof ok.offset === "number" ? ok.offset : NaN;
    const epoch = typeof ok.epoch === "string" ? ok.epoch : "";
    if (this.#started) {
      // The first OK: where the client starts. Every offset after it is expected.
      if (!Number.isInteger(offset) || epoch === "") {
        return this.#failed(`subscribe OK without a history position: ${JSON.stringify(ok)}`);
      }
      this.#setEpoch(epoch);
      this.#ledger = new OffsetLedger(offset + 1);
      this.#state = "live";
      const started = this.#started;
      this.#started = undefined;
      return started.resolve();
    }
    if (this.#measured) stats.okLatency.record(performance.now() - this.#reconnectAt);
    this.#recoveredAnswer = ok.recovered === true;
    if (this.#recoveredAnswer) {
      stats.recovered++;
      this.#state = "replaying";
    } else {
      // Nothing stored follows (held live messages may); the client stands at the OK's position, perhaps in a new
      // epoch, whose offsets this ledger cannot tell apart from the old one's: they count as foreign.
      stats.notRecovered++;
      if (Number.isInteger(offset) && epoch === this.#epoch) {
        stats.unrecoverable += Math.max(0, offset - (this.#recoverFrom ?? 0));
      }
      if (epoch !== "" && epoch !== this.#epoch) this.#setEpoch(epoch);
      this.#state = "replaying";
    }
  }

  #setEpoch(epoch: string): void {
    this.#epoch = epoch;
    this.#epochBytes = Buffer.from(epoch, "latin1");
  }

  #delivery(payload: Buffer): void {
    const stats = this.#options.stats;
    const now = performance.now();
    stats.lastArrival = now;
    const at = payload.indexOf(EPOCH_KEY);
    const start = at + EPOCH_KEY.length;
    const end = at < 0 ? -1 : payload.indexOf(QUOTE, start);
    if (!this.#ledger || end < 0 || payload.compare(this.#epochBytes, 0, this.#epochBytes.length, start, end) !== 0) {
      stats.foreign++;
      return;
    }
    const kind = this.#ledger.record(numberAfter(payload, OFFSET_KEY));
    if (kind === "foreign") stats.foreign++;
    else if (kind === "duplicate") stats.duplicates++;
    else if (kind === "late") stats.outOfOrder++;
    const live = payload.indexOf(RECEIVED_AT_KEY) >= 0;
    if (live) stats.liveLatency.record(performance.timeOrigin + now - numberAfter(payload, T_KEY));
    if (this.#state !== "replaying") return;
    if (!live) {
      stats.replayed++;
      return;
    }
    if (this.#measured && this.#recoveredAnswer) stats.recoveryLatency.record(now - this.#reconnectAt);
    this.#measured = false;
    this.#state = "live";
  }

  #failed(why: string): void {
    clearTimeout(this.#subscribeTimer);
    if (this.#started) {
      const started = this.#started;
      this.#started = undefined;
      this.#abandon();
      return started.reject(new Error(why));
    }
    if (this.#state === "closed") return;
    // A recovering subscribe that failed: drop this connection and come back.
    this.#options.stats.reconnectFailures++;
    this.#state = "offline";
    this.#abandon();
    this.#offlineTimer = setTimeout(() => this.#reconnect(), RETRY_MS);
  }

  #closed(connection: WsConnection | undefined, code: number): void {
    // A connection abandoned on purpose, or closing for good.
    if (connection === undefined || connection !== this.#connection || this.#state === "closed") return;
    this.#connection = undefined;
    this.#options.stats.closed(code);
    if (this.#started) return this.#failed(`connection closed (${code})`);
    // The server ended it: count it, and come back as after a drop.
    clearTimeout(this.#subscribeTimer);
    this.#state = "offline";
    this.#offlineTimer = setTimeout(() => this.#reconnect(), RETRY_MS);
  }
}
