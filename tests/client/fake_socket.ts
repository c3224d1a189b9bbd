// A fake WebSocket for the client SDK's unit tests: the test plays the server, opening, answering and closing each
// socket the client creates; the network counts how many sockets were live at once.
import assert from "node:assert/strict";
import type { WebSocketLike } from "../../client/src/index.ts";
import type { Harness } from "../support/harness.ts";

type Json = Record<string, unknown>;

const CONNECTING = 0;
const OPEN = 1;
const CLOSING = 2;
const CLOSED = 3;

/** Every socket the client created, and the most that were connecting or open at one time. */
export class FakeNetwork {
  readonly sockets: FakeSocket[] = [];
  /** The most sockets that were connecting or open at once. */
  maxLive = 0;
  /** The constructor to pass as `options.WebSocket`. */
  readonly WebSocket: new (url: string) => FakeSocket;

  constructor() {
    const network = this;
    this.WebSocket = class extends FakeSocket {
      constructor(url: string) {
        super(url, network);
      }
    };
  }

  /** Sockets connecting or open now. */
  get live(): number {
    return this.sockets.filter((s) => s.readyState === CONNECTING || s.readyState === OPEN).length;
  }

  /** The newest socket (fails when there is none). */
  get last(): FakeSocket {
    const socket = this.sockets.at(-1);
    assert.ok(socket, "the client created no socket");
    return socket;
  }

  /** @internal */
  changed(): void {
    this.maxLive = Math.max(this.maxLive, this.live);
  }
}

/** One socket: `open()`, `receive()` and `serverClose()` act as the server; `sent` records the client's frames. */
export class FakeSocket implements WebSocketLike {
  readyState = CONNECTING;
  binaryType = "blob";
  onopen: ((event: unknown) => unknown) | null = null;
  onmessage: ((event: { data: unknown }) => unknown) | null = null;
  onclose: ((event: { code: number; reason: string }) => unknown) | null = null;
  onerror: ((event: unknown) => unknown) | null = null;
  readonly url: string;
  /** Frames the client sent, as text. */
  readonly sent: string[] = [];
  /** How the client closed it, if it did. */
  closedByClient: { code?: number; reason?: string } | undefined;
  /** Called with each frame the client sends (a scripted server). */
  onSend: ((frame: Json) => void) | undefined;
  readonly #network: FakeNetwork;
  #taken = 0;

  constructor(url: string, network: FakeNetwork) {
    this.url = url;
    this.#network = network;
    network.sockets.push(this);
    network.changed();
  }

  send(data: string): void {
    if (this.readyState !== OPEN) throw new Error(`send on a socket in state ${this.readyState}`);
    this.sent.push(data);
    this.onSend?.(JSON.parse(data));
  }

  close(code?: number, reason?: string): void {
    this.closedByClient = { code, reason };
    if (this.readyState === OPEN || this.readyState === CONNECTING) this.readyState = CLOSING;
    this.#network.changed();
  }

  /** The client's frames, parsed. */
  get frames(): Json[] {
    return this.sent.map((text) => JSON.parse(text));
  }

  /** The frames sent since the last `take()`. */
  take(): Json[] {
    const frames = this.frames.slice(this.#taken);
    this.#taken = this.sent.length;
    return frames;
  }

  /** The server accepted the connection. */
  open(): void {
    assert.equal(this.readyState, CONNECTING, "open() on a socket that is not connecting");
    this.readyState = OPEN;
    this.#network.changed();
    this.onopen?.({});
  }

  /** The server sent a frame (an object is serialized). */
  receive(frame: Json | string): void {
    assert.equal(this.readyState, OPEN, "receive() on a socket that is not open");
    this.onmessage?.({ data: typeof frame === "string" ? frame : JSON.stringify(frame) });
  }

  /** The connection closed from the server's side (or the network), with `code`. */
  serverClose(code = 1006, reason = ""): void {
    this.readyState = CLOSED;
    this.#network.changed();
    this.onclose?.({ code, reason });
  }

  /** The close the client started completed. */
  finishClose(): void {
    if (this.readyState !== CLOSING) return;
    this.readyState = CLOSED;
    this.#network.changed();
    this.onclose?.({ code: this.closedByClient?.code ?? 1005, reason: this.closedByClient?.reason ?? "" });
  }
}

/**
 * Answer like Shoal for the common cases: subscribe → OK (with `offset`/`epoch` from `positions` when set),
 * unsubscribe → OK, auth → OK, ping → pong, message → nothing, unknown events → `Event not found.`.
 * Replies go out a microtask later, as from a network.
 */
export function autoAnswer(socket: FakeSocket, options: { positions?: Map<string, { offset: number; epoch: string }> } = {}): void {
  socket.onSend = (frame) => {
    const reply = answer(frame, options.positions);
    if (reply) queueMicrotask(() => socket.readyState === OPEN && socket.receive(reply));
  };
}

function answer(frame: Json, positions?: Map<string, { offset: number; epoch: string }>): Json | undefined {
  const { event, subscription } = frame;
  switch (event) {
    case "auth":
      return { event: "auth", status: "ok" };
    case "subscribe": {
      const position = positions?.get(subscription as string);
      return { event, status: "ok", subscription, ...position, ...(position && frame.recover ? { recovered: true } : {}) };
    }
    case "unsubscribe":
      return { event, status: "ok", subscription };
    case "ping":
      return { event: "pong", data: frame.data ?? null };
    case "message":
      return undefined;
    default:
      return { event, status: "error", error: "Event not found." };
  }
}

/**
 * Connect `socket` to a real in-process Shoal session (the core of tests/support/harness.ts): what the client sends
 * goes to the session, what the session sends comes back a microtask later.
 */
export function bridge(socket: FakeSocket, harness: Harness): void {
  const client = harness.connect();
  const forward = () => {
    for (const text of client.transport.texts.splice(0)) {
      queueMicrotask(() => socket.readyState === OPEN && socket.receive(text));
    }
  };
  const transportSend = client.transport.send.bind(client.transport);
  client.transport.send = (text: string) => {
    transportSend(text);
    forward();
  };
  socket.onSend = (frame) => client.session.receive(JSON.stringify(frame));
  socket.open();
}

/** Let microtasks and one macrotask run (real time; the client's timers run on the fake clock). */
export function tick(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}
