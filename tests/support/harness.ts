import process from "node:process";
import { MemoryBroker } from "../../src/broker/memory_broker.ts";
import { type ConfigInput, parseConfig } from "../../src/config.ts";
import type { Observer } from "../../src/core/observer.ts";
import { Router } from "../../src/core/router.ts";
import type { Session } from "../../src/core/session.ts";
import { ServiceClient } from "../../src/services/service_client.ts";
import { FakeClock, flush } from "./fake_clock.ts";
import { FakeFanout, FakeTransport } from "./fake_transport.ts";
import { ScriptedFetch } from "./scripted_fetch.ts";

/** A router on the memory broker with a fake clock and scripted services: the unit-test world. */
export class Harness {
  readonly clock = new FakeClock();
  readonly services = new ScriptedFetch();
  readonly broker = new MemoryBroker();
  readonly events: { name: string; success: boolean }[] = [];
  readonly filtered: string[] = [];
  delivered = 0;
  readonly router: Router;
  /** Set with `fanout: true`: the hub fans out through it and every new connection can join topics. */
  readonly fanout: FakeFanout | undefined;

  constructor(
    config: ConfigInput,
    options: { http?: Partial<{ tries: number; wait: number; timeout: number }>; fanout?: boolean } = {},
  ) {
    const parsed = parseConfig(config);
    const http = { ...parsed.http, tries: 1, wait: 0, timeout: 5, ...options.http };
    const observer: Observer = {
      event: (name, success) => this.events.push({ name, success }),
      filtered: (reason) => this.filtered.push(reason),
      delivered: (count) => this.delivered += count,
    };
    this.router = new Router({
      config: { ...parsed, http },
      broker: this.broker,
      clock: this.clock,
      observer,
      services: new ServiceClient({ ...http, fetch: this.services.fetch, clock: this.clock }),
    });
    // SHOAL_TEST_FANOUT=1 runs every harness test on the fan-out path (tests/run.mjs does, in a suite of its own).
    const fanout = options.fanout ?? process.env.SHOAL_TEST_FANOUT === "1";
    this.fanout = fanout ? new FakeFanout() : undefined;
    if (this.fanout) this.router.hub.useFanout(this.fanout.publish);
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
    return new Client(session, transport);
  }

  /** Publish through the broker, as a service would, and let delivery happen. */
  async publish(message: unknown, channel?: string): Promise<void> {
    const payload = typeof message === "string" ? message : JSON.stringify(message);
    const name = channel ?? (message as { subscription: string }).subscription;
    await this.broker.publish(name, payload);
    await flush();
  }
}

export class Client {
  constructor(readonly session: Session, readonly transport: FakeTransport) {}

  /** Send one client event (an object is serialized) and wait until the session has handled it. */
  async send(event: unknown): Promise<void> {
    this.session.receive(typeof event === "string" ? event : JSON.stringify(event));
    await flush();
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
