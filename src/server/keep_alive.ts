import type { Clock } from "../core/clock.ts";

/** The connection a keep-alive pings: methods, so one connection needs no closures for it. */
export interface KeepAlivePeer {
  /** Send a ping frame. */
  ping(): void;
  /** No pong came within `timeout`: give up on the connection (called once). */
  pingTimedOut(): void;
}

export interface KeepAliveOptions {
  /** Seconds between pings (minus the last round trip, as SocketShark); 0 disables. */
  readonly interval: number;
  /** Seconds to wait for the pong. */
  readonly timeout: number;
}

/**
 * SocketShark's WebSocket keep-alive for one connection: wait `interval - last round trip`, send a ping, and give
 * up on the connection if no pong arrives within `timeout`. One ping is outstanding at a time; a pong after the
 * timeout does not save the connection.
 */
export class KeepAlive {
  readonly #clock: Clock;
  readonly #options: KeepAliveOptions;
  readonly #peer: KeepAlivePeer;
  #timer: unknown;
  #sentAt: number | undefined;
  #stopped = false;

  constructor(clock: Clock, options: KeepAliveOptions, peer: KeepAlivePeer) {
    this.#clock = clock;
    this.#options = options;
    this.#peer = peer;
  }

  start(): void {
    if (this.#options.interval > 0) this.#schedule(this.#options.interval * 1000);
  }

  /** A pong arrived: measure the round trip and schedule the next ping. */
  pong(): void {
    if (this.#stopped || this.#sentAt === undefined) return;
    const roundTrip = this.#clock.now() - this.#sentAt;
    this.#sentAt = undefined;
    this.#clock.clearTimeout(this.#timer);
    this.#schedule(this.#options.interval * 1000 - roundTrip);
  }

  stop(): void {
    this.#stopped = true;
    this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** Whether a timer is pending (for leak checks). */
  get running(): boolean {
    return this.#timer !== undefined;
  }

  #schedule(ms: number): void {
    this.#timer = this.#clock.setTimeout(() => this.#send(), Math.max(0, ms));
  }

  #send(): void {
    if (this.#stopped) return;
    this.#sentAt = this.#clock.now();
    this.#timer = this.#clock.setTimeout(() => {
      this.#timer = undefined;
      if (this.#stopped) return;
      this.#stopped = true;
      this.#peer.pingTimedOut();
    }, this.#options.timeout * 1000);
    this.#peer.ping();
  }
}
