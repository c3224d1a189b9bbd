import type { DeliveryStats, TopicState } from "./delivery_stats.ts";
import type { WireProtocol } from "./messages.ts";
import { WsConnection } from "./ws_connection.ts";

const SUBSCRIPTION_KEY = Buffer.from('"subscription":"');
const SEQ_KEY = Buffer.from('"seq":');
const T_KEY = Buffer.from('"t":');
const P_KEY = Buffer.from('"p":');
const QUOTE = 0x22;
const CHAR_0 = 0x30;
const CHAR_2 = 0x32;
const CHAR_3 = 0x33;
const CHAR_4 = 0x34;

export interface SubscriberOptions {
  readonly host: string;
  readonly port: number;
  readonly protocol: WireProtocol;
  readonly timeoutMs: number;
  readonly stats: DeliveryStats;
  /** Called once if the server closes the connection (or it drops). */
  readonly onClose: (subscriber: Subscriber, code: number) => void;
}

type Waiter = { resolve(): void; reject(error: Error): void };

/**
 * One benchmark client: a connection that subscribes to names and hands every delivery to the worker's
 * `DeliveryStats`. Speaks Shoal's protocol (`{"event":"subscribe",...}`) or Socket.IO 4's (`40` connect,
 * `42<id>["subscribe",name]` with an ack, engine.io pings answered). Deliveries are recognised by the `"seq":`
 * of the benchmark data and read with `indexOf`, without parsing the whole frame.
 */
export class Subscriber {
  /** Subscribed names and the delivery state of each. */
  readonly topics = new Map<string, TopicState>();
  /** Close code once closed. */
  closeCode: number | undefined;
  /** Bytes received since `resume()`. */
  bytesSinceResume = 0;
  readonly #options: SubscriberOptions;
  readonly #waiters = new Map<string, Waiter>();
  #connection: WsConnection | undefined;
  #nextAck = 1;

  constructor(options: SubscriberOptions) {
    this.#options = options;
  }

  get localPort(): number {
    return this.#connection?.localPort ?? 0;
  }

  /** Connect, then subscribe to every name; rejects on a refused connection, an error reply or a timeout. */
  async start(names: readonly string[]): Promise<void> {
    const { protocol, timeoutMs } = this.#options;
    const deadline = Date.now() + timeoutMs;
    const ready = protocol === "socketio" ? this.#wait("connect", timeoutMs) : Promise.resolve();
    try {
      this.#connection = await WsConnection.open({
        host: this.#options.host,
        port: this.#options.port,
        path: protocol === "socketio" ? "/socket.io/?EIO=4&transport=websocket" : "/",
        timeoutMs,
        handlers: {
          message: (payload, connection) => this.#message(payload, connection),
          close: (code) => this.#closed(code),
        },
      });
    } catch (error) {
      this.#failWaiters("not connected");
      ready.catch(() => {});
      throw error;
    }
    await ready;
    await Promise.all(names.map((name) => this.#subscribe(name, Math.max(1, deadline - Date.now()))));
  }

  pause(): void {
    this.#connection?.pause();
  }

  resume(): void {
    this.bytesSinceResume = 0;
    this.#connection?.resume();
  }

  close(): void {
    this.#connection?.close();
  }

  #subscribe(name: string, timeoutMs: number): Promise<void> {
    this.topics.set(name, { phase: 0, last: 0, count: 0 });
    if (this.#options.protocol === "socketio") {
      const id = this.#nextAck++;
      const acked = this.#wait(`ack${id}`, timeoutMs, name);
      this.#connection!.send(`42${id}${JSON.stringify(["subscribe", name])}`);
      return acked;
    }
    const replied = this.#wait(`sub${name}`, timeoutMs, name);
    this.#connection!.send(JSON.stringify({ event: "subscribe", subscription: name }));
    return replied;
  }

  #wait(key: string, timeoutMs: number, what = key): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters.delete(key);
        reject(new Error(`${what}: no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#waiters.set(key, {
        resolve: () => (clearTimeout(timer), resolve()),
        reject: (error) => (clearTimeout(timer), reject(error)),
      });
    });
  }

  #settle(key: string, error?: string): void {
    const waiter = this.#waiters.get(key);
    if (!waiter) return;
    this.#waiters.delete(key);
    if (error === undefined) waiter.resolve();
    else waiter.reject(new Error(error));
  }

  #message(payload: Buffer, connection: WsConnection): void {
    this.bytesSinceResume += payload.length;
    if (this.#options.protocol === "socketio") return this.#socketIo(payload, connection);
    if (payload.indexOf(SEQ_KEY) >= 0) return this.#delivery(payload);
    let frame: { event?: unknown; status?: unknown; subscription?: unknown; error?: unknown };
    try {
      frame = JSON.parse(payload.toString("utf8"));
    } catch {
      return;
    }
    if (frame.event === "subscribe" && typeof frame.subscription === "string") {
      this.#settle(
        `sub${frame.subscription}`,
        frame.status === "ok" ? undefined : `subscribe: ${JSON.stringify(frame)}`,
      );
    }
  }

  /** Engine.io packet type in the first byte; Socket.IO packet type in the second for engine.io messages ("4"). */
  #socketIo(payload: Buffer, connection: WsConnection): void {
    const type = payload[0];
    if (type === CHAR_4) {
      const packet = payload[1];
      if (packet === CHAR_2) {
        if (payload.indexOf(SEQ_KEY) >= 0) this.#delivery(payload);
      } else if (packet === CHAR_3) {
        // "43<id>[...]": an ack
        let i = 2;
        let id = 0;
        while (payload[i] >= CHAR_0 && payload[i] <= CHAR_0 + 9) id = id * 10 + payload[i++] - CHAR_0;
        const text = payload.toString("utf8", i);
        const ok = /"status"\s*:\s*"ok"/.test(text);
        this.#settle(`ack${id}`, ok ? undefined : `subscribe ack: ${text}`);
      } else if (packet === CHAR_0) {
        this.#settle("connect");
      } else if (packet === CHAR_4) {
        this.#settle("connect", `socket.io connect error: ${payload.toString("utf8")}`);
      }
    } else if (type === CHAR_0) {
      connection.send("40"); // engine.io open: join the main namespace
    } else if (type === CHAR_2) {
      connection.send("3"); // engine.io ping
    }
  }

  #delivery(payload: Buffer): void {
    const at = payload.indexOf(SUBSCRIPTION_KEY);
    let state: TopicState | undefined;
    if (at >= 0) {
      const start = at + SUBSCRIPTION_KEY.length;
      state = this.topics.get(payload.toString("latin1", start, payload.indexOf(QUOTE, start)));
    }
    this.#options.stats.delivery(
      state,
      numberAfter(payload, SEQ_KEY),
      numberAfter(payload, T_KEY),
      numberAfter(payload, P_KEY),
    );
  }

  #closed(code: number): void {
    this.closeCode = code;
    this.#failWaiters(`connection closed (${code})`);
    this.#options.onClose(this, code);
  }

  #failWaiters(why: string): void {
    for (const key of [...this.#waiters.keys()]) this.#settle(key, why);
  }
}

/** The JSON number after the first `key` (and optional spaces); NaN if there is none. */
export function numberAfter(buf: Buffer, key: Buffer): number {
  const at = buf.indexOf(key);
  if (at < 0) return NaN;
  let i = at + key.length;
  while (buf[i] === 0x20) i++;
  const start = i;
  for (; i < buf.length; i++) {
    const c = buf[i];
    // digits, '.', '-', '+', 'e', 'E'
    if (!((c >= 0x30 && c <= 0x39) || c === 0x2e || c === 0x2d || c === 0x2b || c === 0x65 || c === 0x45)) break;
  }
  return i > start ? Number(buf.toString("latin1", start, i)) : NaN;
}
