import process from "node:process";
import { MemoryBroker } from "../../src/broker/memory_broker.ts";
import { type ConfigInput, parseConfig } from "../../src/config.ts";
import type { TokenVerifier } from "../../src/core/context.ts";
import type { Observer } from "../../src/core/observer.ts";
import { Router } from "../../src/core/router.ts";
import type { Session } from "../../src/core/session.ts";
import { FETCH_BUDGET, FetchSlots } from "../../src/services/fetch_slots.ts";
import { ServiceClient } from "../../src/services/service_client.ts";
import { FakeClock } from "./fake_clock.ts";
import { FakeFanout, FakeTransport } from "./fake_transport.ts";
import { ScriptedFetch } from "./scripted_fetch.ts";

/** A router on the memory broker with a fake clock and scripted services: the unit-test world. */
export class Harness {
  readonly clock = new FakeClock();
  readonly services = new ScriptedFetch();
  readonly broker = new MemoryBroker({ clock: this.clock });
  /** The service client's call slots (its own, not the process-wide ones, so `settled` can count waiters). */
  readonly slots = new FetchSlots(FETCH_BUDGET.callbacks);
  readonly events: { name: string; success: boolean }[] = [];
  readonly filtered: string[] = [];
  readonly jwtFailures: string[] = [];
  delivered = 0;
  readonly router: Router;
  /** Set with `fanout: true`: the hub fans out through it and every new connection can join topics. */
  readonly fanout: FakeFanout | undefined;

  constructor(
    config: ConfigInput,
    options: {
      http?: Partial<{ tries: number; wait: number; timeout: number }>;
      fanout?: boolean;
      /** Verifies `auth` with `method: "jwt"` (a `JwtVerifier` on this harness's clock). */
      tokens?: TokenVerifier;
    } = {},
  ) {
    const parsed = parseConfig(config);
    const http = { ...parsed.http, tries: 1, wait: 0, timeout: 5, ...options.http };
    const observer: Observer = {
      event: (name, success) => this.events.push({ name, success }),
      filtered: (reason) => this.filtered.push(reason),
      delivered: (count) => this.delivered += count,
      jwtFailure: (reason) => this.jwtFailures.push(reason),
    };
    this.router = new Router({
      config: { ...parsed, http },
      broker: this.broker,
      clock: this.clock,
      observer,
      services: new ServiceClient({ ...http, fetch: this.services.fetch, clock: this.clock, slots: this.slots }),
      tokens: options.tokens,
    });
    // SHOAL_TEST_FANOUT=1 runs every harness test on the fan-out path (tests/run.mjs does, in a suite of its own).
    const fanout = options.fanout ?? process.env.SHOAL_TEST_FANOUT === "1";
    this.fanout = fanout ? new FakeFanout() : undefined;
    if (this.fanout) this.router.hub.useFanout(this.fanout.publish);
    this.clock.settle = () => this.settled();
  }

  /**
   * Resolves once the core can make no progress without the test: every piece of its work in flight is waiting
   * on a service call the test holds (a closed gate, a hang) or on a call slot such a call holds. Fails, with the
   * counts, if that does not happen within `ms` of real time (a piece of work waiting on something else).
   */
  async settled(ms = 2000): Promise<void> {
    const activity = this.router.activity;
    const deadline = Date.now() + ms;
    for (;;) {
      const waiting = this.services.parked + this.slots.waiting;
      if (activity.busy <= waiting) return;
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(`the core did not settle: ${activity.busy} pieces of work in flight, ${waiting} held by the test`);
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        activity.changed(),
        this.services.changed(),
        new Promise<void>((resolve) => (timer = setTimeout(resolve, left))),
      ]);
      clearTimeout(timer);
    }
  }

  async start(): Promise<this> {
    await this.router.start();
    return this;
  }

  /** A new session with its recording transport. */
  connect(): Client {
    const transport = new FakeTransport(this.fanout);
    const session = this.router.connect(transport);
    if (!session) throw new Error("router refused the connection");
    return new Client(session, transport, this);
  }

  /** Publish through the broker, as a service would, and let delivery happen. */
  async publish(message: unknown, channel?: string): Promise<void> {
    const payload = typeof message === "string" ? message : JSON.stringify(message);
    const name = channel ?? (message as { subscription: string }).subscription;
    await this.broker.publish(name, payload);
    await this.settled();
  }
}

export class Client {
  constructor(readonly session: Session, readonly transport: FakeTransport, readonly harness: Harness) {}

  /** Send one client event (an object is serialized) and wait until the core settled (`Harness.settled`). */
  async send(event: unknown): Promise<void> {
    this.session.receive(typeof event === "string" ? event : JSON.stringify(event));
    await this.harness.settled();
  }

  /** Send an event and return the frames it produced. */
  async call(event: unknown): Promise<Record<string, unknown>[]> {
    this.transport.take();
    await this.send(event);
    return this.transport.take();
  }

  take(): Record<string, unknown>[] {
    return this.transport.take();
  }
}
