import { getLogger } from "@logtape/logtape";
import type { WSContext } from "hono/ws";
import type { Router } from "../core/router.ts";
import type { Session } from "../core/session.ts";
import type { Transport } from "../core/transport.ts";
import { debugEnabled } from "../log.ts";
import { Closes } from "../protocol/close_codes.ts";
import { utf8Exceeds } from "../protocol/utf8.ts";
import type { SocketSupport } from "../runtime/runtime.ts";
import { BufferBudget, type Budgeted } from "./buffer_budget.ts";
import { KeepAlive, type KeepAlivePeer } from "./keep_alive.ts";

const log = getLogger(["shoal", "server"]);

/** How many sends may pass between two measurements of a connection's send buffer (fewer for large frames). */
const MEASURE_EVERY = 16;

/** What every connection of one app shares. */
export interface ConnectionContext {
  readonly router: Router;
  readonly support: SocketSupport;
  readonly sweeper: BufferSweeper;
  readonly budget: BufferBudget;
  readonly maxMessageBytes: number;
  readonly maxBufferedBytes: number;
  readonly ping: { readonly interval: number; readonly timeout: number };
}

export function connectionContext(
  router: Router,
  support: SocketSupport,
  sweeper: BufferSweeper,
  budget: BufferBudget = new BufferBudget(router.config.limits.maxBufferedBytesTotal),
): ConnectionContext {
  const { maxMessageBytes, maxBufferedBytes, ping } = router.config.ws;
  return { router, support, sweeper, budget, maxMessageBytes, maxBufferedBytes, ping };
}

/**
 * One WebSocket connection: Hono's event handlers, the session's transport, the keep-alive's peer and the
 * sweeper's watched socket, all in one object. Methods rather than closures: there may be many thousands of
 * connections, and each closure costs memory. Every handler catches: on Deno an exception in a WebSocket handler
 * would end the process. Keeps the runtime's socket (`WSContext.raw`), not Hono's per-event `WSContext`.
 */
export class Connection implements Transport, KeepAlivePeer, Watched, Budgeted {
  readonly #context: ConnectionContext;
  #socket: unknown;
  #session: Session | undefined;
  #keepAlive: KeepAlive | undefined;
  #closed = false;
  #terminateTimer: unknown;
  /** Sends, and characters sent, since the send buffer was last measured. */
  #unmeasured = 0;
  #unmeasuredChars = 0;

  constructor(context: ConnectionContext) {
    this.#context = context;
  }

  onOpen(_event: Event, ws: WSContext): void {
    try {
      const { router, support, ping } = this.#context;
      this.#socket = ws.raw;
      this.#session = router.connect(this);
      if (!this.#session) {
        const close = router.stopping ? Closes.normal : Closes.tooManyConnections;
        return this.close(close.code, close.reason);
      }
      if (support.ping && ping.interval > 0) {
        this.#keepAlive = new KeepAlive(router.clock, ping, this);
        this.#keepAlive.start();
      } else if (support.watchKeepAlive && ping.interval > 0) {
        support.watchKeepAlive(ws.raw, this); // the runtime pings (Deno) and tells `pingTimedOut`
      }
    } catch (error) {
      log.error("unhandled error in open handler", { error });
    }
  }

  onMessage(event: MessageEvent, _ws: WSContext): void {
    const session = this.#session;
    try {
      if (!session) return;
      const data = event.data as string | ArrayBuffer | Uint8Array | Blob;
      if (data instanceof Blob) return; // binaryType is arraybuffer on both runtimes; a Blob never arrives
      if (utf8Exceeds(data, this.#context.maxMessageBytes)) {
        void session.close(Closes.messageTooBig);
        return;
      }
      session.receive(data);
    } catch (error) {
      log.error("unhandled error in consumer handler", { session: session?.id, error });
    }
  }

  /** Not a Hono event: the Bun runtime calls it for every pong frame. */
  onPong(): void {
    this.#keepAlive?.pong();
  }

  onClose(event: CloseEvent): void {
    const session = this.#session;
    try {
      this.#closed = true;
      this.#context.sweeper.unwatch(this);
      this.#context.budget.remove(this);
      this.#keepAlive?.stop();
      this.#context.router.clock.clearTimeout(this.#terminateTimer);
      session?.disconnected().catch((error) => log.error("teardown failed", { session: session.id, error }));
    } catch (error) {
      log.error("unhandled error in close handler", { session: session?.id, error });
    }
  }

  onError(event: Event): void {
    log.debug("websocket error", {
      session: this.#session?.id,
      error: String((event as ErrorEvent).message ?? event.type),
    });
  }

  // Transport

  send(text: string): void {
    try {
      // The runtime checks the live socket state (Hono's `readyState` is a snapshot on Bun).
      const { support, maxBufferedBytes } = this.#context;
      if (!support.send(this.#socket, text, maxBufferedBytes)) return this.#slowConsumer();
      // A client that stopped reading is found within MEASURE_EVERY frames, or an eighth of the limit, of passing it.
      this.#unmeasuredChars += text.length;
      if (++this.#unmeasured >= MEASURE_EVERY || this.#unmeasuredChars * 8 >= maxBufferedBytes) {
        this.#unmeasured = this.#unmeasuredChars = 0;
        if (this.overLimit()) this.#slowConsumer();
      }
    } catch (error) {
      if (debugEnabled()) {
        log.debug("attempted to send to closed socket", { session: this.#session?.id, error: String(error) });
      }
    }
  }

  close(code: number, reason?: string): void {
    try {
      this.#context.support.close(this.#socket, code, reason ?? "");
    } catch (error) {
      log.debug("connection already closing", { session: this.#session?.id, error: String(error) });
    }
  }

  // KeepAlivePeer

  ping(): void {
    try {
      this.#context.support.ping!(this.#socket);
    } catch (error) {
      log.debug("ping failed", { session: this.#session?.id, error: String(error) });
    }
  }

  pingTimedOut(): void {
    log.info("ping timeout", { session: this.#session?.id });
    void this.#session?.close(Closes.pingTimeout);
  }

  // Watched

  /** Measure the send buffer (and report it to the node's budget): over this connection's own limit? */
  overLimit(): boolean {
    const bytes = this.measure();
    this.#context.budget.record(this, bytes);
    return bytes > this.#context.maxBufferedBytes;
  }

  onOverLimit(): void {
    this.#slowConsumer();
  }

  // Budgeted

  measure(): number {
    return this.#closed ? 0 : this.#context.support.bufferedAmount(this.#socket);
  }

  onOverBudget(): void {
    if (!this.#session?.open) return;
    this.#context.router.observer.refused?.("buffered_total");
    this.#slowConsumer();
  }

  /** The client stopped reading: close it, and drop it if it does not read its close frame either. */
  #slowConsumer(): void {
    const session = this.#session;
    if (!session?.open) return;
    const { router, support, maxBufferedBytes, ping } = this.#context;
    log.warn("slow consumer; closing", { session: session.id, maxBufferedBytes });
    router.observer.dropped?.("backpressure");
    void session.close(Closes.slowConsumer);
    if (support.terminate) {
      this.#terminateTimer = router.clock.setTimeout(() => {
        try {
          if (!this.#closed) support.terminate!(this.#socket);
        } catch (error) {
          log.debug("terminate failed", { session: session.id, error: String(error) });
        }
      }, ping.timeout * 1000);
    }
  }

  protected get socket(): unknown {
    return this.#socket;
  }

  protected get context(): ConnectionContext {
    return this.#context;
  }
}

/** A connection on a runtime with native fan-out topics (Bun): the transport can join them. */
export class TopicConnection extends Connection {
  subscribe(topic: string): void {
    this.context.support.topics!.subscribe(this.socket, topic);
    // Fanned-out frames bypass `send`: the sweeper watches this socket's buffer instead.
    this.context.sweeper.watch(this);
  }

  unsubscribe(topic: string): void {
    this.context.support.topics!.unsubscribe(this.socket, topic);
  }
}

/** The connection object for one upgrade: with native topics where the runtime has them. */
export function newConnection(context: ConnectionContext): Connection {
  return context.support.topics ? new TopicConnection(context) : new Connection(context);
}

/** How often sockets on the fan-out path have their send buffer checked, milliseconds. */
const SWEEP_INTERVAL_MS = 250;

export interface Watched {
  overLimit(): boolean;
  onOverLimit(): void;
}

/**
 * Watches the send buffers of sockets that receive fanned-out frames (written by the runtime, not through the
 * connection's `send`), closing slow consumers within `SWEEP_INTERVAL_MS`. One timer for all, running only while
 * there is something to watch.
 */
export class BufferSweeper {
  readonly #sockets = new Set<Watched>();
  #timer: ReturnType<typeof setInterval> | undefined;

  watch(socket: Watched): void {
    this.#sockets.add(socket);
    this.#timer ??= setInterval(() => this.#sweep(), SWEEP_INTERVAL_MS);
  }

  unwatch(socket: Watched): void {
    this.#sockets.delete(socket);
    if (this.#sockets.size === 0 && this.#timer !== undefined) {
      clearInterval(this.#timer);
      this.#timer = undefined;
    }
  }

  #sweep(): void {
    for (const socket of this.#sockets) {
      try {
        if (socket.overLimit()) {
          this.unwatch(socket);
          socket.onOverLimit();
        }
      } catch (error) {
        log.debug("buffer check failed", { error: String(error) });
      }
    }
  }
}
