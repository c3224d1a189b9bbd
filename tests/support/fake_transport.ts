import type { Transport } from "../../src/core/transport.ts";

/** Records what a session sends; `frames` are the parsed JSON objects. */
export class FakeTransport implements Transport {
  readonly texts: string[] = [];
  closed: { code: number; reason?: string } | undefined;
  subscribe?: (topic: string) => void;
  unsubscribe?: (topic: string) => void;

  /** With a `FakeFanout`, the transport can join its topics, as a Bun socket joins native topics. */
  constructor(fanout?: FakeFanout) {
    if (!fanout) return;
    this.subscribe = (topic) => fanout.join(topic, this);
    this.unsubscribe = (topic) => fanout.leave(topic, this);
  }

  send(text: string): void {
    if (this.closed) return;
    this.texts.push(text);
  }

  close(code: number, reason?: string): void {
    this.closed ??= { code, reason };
  }

  get frames(): Record<string, unknown>[] {
    return this.texts.map((t) => JSON.parse(t));
  }

  /** Frames sent since the last call. */
  take(): Record<string, unknown>[] {
    const frames = this.frames;
    this.texts.length = 0;
    return frames;
  }
}

/** The runtime's native pub/sub as the hub sees it (Bun's `ws.subscribe` + `server.publish`), recording publishes. */
export class FakeFanout {
  readonly topics = new Map<string, Set<FakeTransport>>();
  /** Every `publish` call: topic and text. */
  readonly published: { topic: string; text: string }[] = [];

  readonly publish = (topic: string, text: string): void => {
    this.published.push({ topic, text });
    for (const transport of this.topics.get(topic) ?? []) transport.send(text);
  };

  join(topic: string, transport: FakeTransport): void {
    let members = this.topics.get(topic);
    if (!members) this.topics.set(topic, members = new Set());
    members.add(transport);
  }

  leave(topic: string, transport: FakeTransport): void {
    const members = this.topics.get(topic);
    if (!members?.delete(transport)) return;
    if (members.size === 0) this.topics.delete(topic);
  }
}
