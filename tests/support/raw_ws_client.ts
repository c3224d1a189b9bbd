import { createHash, randomBytes } from "node:crypto";
import { connect, type Socket } from "node:net";
import type { Frame } from "./ws_client.ts";
import { decodeClosePayload, encodeClosePayload, encodeFrame, FrameDecoder, Opcode } from "./ws_codec.ts";

export { Opcode };

export interface RawWsClientOptions {
  /** Answer every ping with a pong carrying the same payload (default true). */
  readonly answerPings?: boolean;
  /** Path and query of the upgrade request (default "/"). */
  readonly path?: string;
  /** Milliseconds for the TCP connect plus the upgrade (default 5000). */
  readonly timeoutMs?: number;
}

/** A ping or pong the server sent, with `Date.now()` when it was parsed. */
export interface ControlFrame {
  readonly payload: Uint8Array;
  readonly at: number;
}

/**
 * How the connection ended: the server's close frame (1005 when it had no status code), or 1006 when the socket
 * ended or failed without one. `at` is `Date.now()` when that happened.
 */
export interface CloseInfo {
  readonly code: number;
  readonly reason: string;
  readonly at: number;
}

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const utf8 = new TextDecoder("utf-8", { fatal: true });

interface Waiter {
  resolve(text: string): void;
  reject(error: Error): void;
}

/**
 * A WebSocket client on `node:net` (Deno and Bun) for tests that need what a browser-style client hides: every
 * server ping (timestamped), whether pings are answered, pausing reads so the server's send buffer fills, raw
 * frames, and the exact close code and reason. Text frames queue up until `next()` takes them; every wait is
 * bounded and fails with what was seen.
 */
export class RawWsClient {
  /** Reply to pings; may be changed at any time. */
  answerPings: boolean;
  /** Every ping received, in order. */
  readonly pings: ControlFrame[] = [];
  /** Every pong received, in order. */
  readonly pongs: ControlFrame[] = [];
  /** Every text message received (fragments joined), in order, taken by `next()` or not. */
  readonly seen: string[] = [];
  /** Every binary message received (fragments joined), in order. */
  readonly binaries: Uint8Array[] = [];
  /** Frames that broke the protocol (a masked server frame, invalid UTF-8, a stray continuation...). */
  readonly protocolErrors: string[] = [];
  /** Resolves once the connection has ended, however it ended. */
  readonly closed: Promise<CloseInfo>;
  readonly #socket: Socket;
  readonly #queue: string[] = [];
  readonly #pingWakers = new Set<() => void>();
  #resolveClosed!: (info: CloseInfo) => void;
  #closeInfo: CloseInfo | undefined;
  #waiter: Waiter | undefined;
  readonly #decoder = new FrameDecoder();
  #fragments: { opcode: number; parts: Buffer[] } | undefined;
  #sentClose = false;

  private constructor(socket: Socket, options: RawWsClientOptions) {
    this.#socket = socket;
    this.answerPings = options.answerPings ?? true;
    this.closed = new Promise((resolve) => (this.#resolveClosed = resolve));
  }

  /** Connect to `ws://host:port/...` and complete the upgrade; rejects unless the server answers 101 correctly. */
  static connect(url: string, options: RawWsClientOptions = {}): Promise<RawWsClient> {
    const target = new URL(url);
    if (target.protocol !== "ws:") throw new TypeError(`RawWsClient speaks ws:// only, not ${url}`);
    const port = Number(target.port || 80);
    const path = options.path ?? `${target.pathname}${target.search}`;
    const timeoutMs = options.timeoutMs ?? 5000;
    const key = randomBytes(16).toString("base64");
    const socket = connect(port, target.hostname);
    socket.setNoDelay(true);
    const client = new RawWsClient(socket, options);

    return new Promise((resolve, reject) => {
      let head = Buffer.alloc(0);
      const timer = setTimeout(() => fail(`no upgrade within ${timeoutMs} ms`), timeoutMs);
      const fail = (why: string) => {
        clearTimeout(timer);
        socket.off("data", onHandshake);
        socket.destroy();
        reject(
          new Error(`WebSocket upgrade to ${url} failed: ${why}; received ${JSON.stringify(head.toString("latin1"))}`),
        );
      };
      const onHandshake = (chunk: Buffer) => {
        head = Buffer.concat([head, chunk]);
        const end = head.indexOf("\r\n\r\n");
        if (end < 0) return;
        const lines = head.subarray(0, end).toString("latin1").split("\r\n");
        const headers = new Map(
          lines.slice(1).map((line) => {
            const colon = line.indexOf(":");
            return [line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim()] as const;
          }),
        );
        if (!/^HTTP\/1\.1 101\b/.test(lines[0])) return fail(`status line ${JSON.stringify(lines[0])}`);
        const accept = createHash("sha1").update(key + GUID).digest("base64");
        if (headers.get("sec-websocket-accept") !== accept) {
          return fail(
            `Sec-WebSocket-Accept is ${JSON.stringify(headers.get("sec-websocket-accept"))}, expected ${accept}`,
          );
        }
        clearTimeout(timer);
        socket.off("data", onHandshake);
        socket.off("close", onEarlyClose);
        socket.off("error", onError);
        client.#listen(head.subarray(end + 4));
        resolve(client);
      };
      const onEarlyClose = () => fail("the socket closed");
      const onError = (error: Error) => fail(error.message);
      socket.on("data", onHandshake);
      socket.once("close", onEarlyClose);
      socket.once("error", onError);
      socket.once("connect", () => {
        socket.write(
          [
            `GET ${path} HTTP/1.1`,
            `Host: ${target.host}`,
            "Upgrade: websocket",
            "Connection: Upgrade",
            `Sec-WebSocket-Key: ${key}`,
            "Sec-WebSocket-Version: 13",
            "",
            "",
          ].join("\r\n"),
        );
      });
    });
  }

  /** How the connection ended, or undefined while it is open. */
  get closeInfo(): CloseInfo | undefined {
    return this.#closeInfo;
  }

  /** Send a string as a text frame, bytes as a binary frame, anything else as JSON text. */
  send(message: unknown): void {
    if (message instanceof Uint8Array) this.sendFrame(Opcode.binary, message);
    else this.sendFrame(Opcode.text, typeof message === "string" ? message : JSON.stringify(message));
  }

  /** Send one masked frame as it is: `fin: false` starts or continues a fragmented message. */
  sendFrame(opcode: number, payload: Uint8Array | string = new Uint8Array(), options: { fin?: boolean } = {}): void {
    this.#socket.write(encodeFrame(opcode, payload, { fin: options.fin }));
  }

  /** Send a WebSocket ping frame (control payloads are at most 125 bytes). */
  ping(payload: Uint8Array | string = new Uint8Array()): void {
    this.sendFrame(Opcode.ping, payload);
  }

  /** Stop reading from the socket: the server's frames pile up in the kernel buffers, then in the server's. */
  pauseReading(): void {
    this.#socket.pause();
  }

  /** Read again, and parse whatever piled up meanwhile. */
  resumeReading(): void {
    this.#socket.resume();
  }

  /** The next text message, parsed as JSON; rejects after `timeoutMs` or when the connection ends first. */
  async next(timeoutMs = 3000): Promise<Frame> {
    const text = await this.nextText(timeoutMs);
    try {
      return JSON.parse(text) as Frame;
    } catch {
      throw new Error(`frame is not JSON: ${JSON.stringify(text)}`);
    }
  }

  /** The next text message as it came. */
  nextText(timeoutMs = 3000): Promise<string> {
    if (this.#queue.length > 0) return Promise.resolve(this.#queue.shift()!);
    if (this.#closeInfo) {
      return Promise.reject(new Error(`connection already closed (${this.#describeClose()}); ${this.#history()}`));
    }
    if (this.#waiter) return Promise.reject(new Error("next() is already waiting"));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiter = undefined;
        reject(new Error(`no frame within ${timeoutMs} ms; ${this.#history()}`));
      }, timeoutMs);
      this.#waiter = {
        resolve: (text) => {
          clearTimeout(timer);
          resolve(text);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      };
    });
  }

  /** Assert that no text message arrives (or is waiting) for `ms` milliseconds. */
  async expectNothing(ms = 300): Promise<void> {
    if (this.#queue.length > 0) throw new Error(`expected no frame, but one is waiting: ${this.#queue[0]}`);
    let text: string | undefined;
    try {
      text = await this.nextText(ms);
    } catch (error) {
      if ((error as Error).message.startsWith("no frame within")) return;
      throw error;
    }
    throw new Error(`expected no frame for ${ms} ms, got ${text}`);
  }

  /** Resolve with the pings once at least `count` have arrived; rejects after `timeoutMs` or on close. */
  waitPings(count: number, timeoutMs = 3000): Promise<ControlFrame[]> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => done(new Error(`${this.pings.length} ping(s) within ${timeoutMs} ms, expected ${count}`)),
        timeoutMs,
      );
      const done = (error?: Error) => {
        clearTimeout(timer);
        this.#pingWakers.delete(wake);
        if (error) reject(error);
        else resolve([...this.pings]);
      };
      const wake = () => {
        if (this.pings.length >= count) done();
        else if (this.#closeInfo) {
          done(new Error(`connection closed (${this.#describeClose()}) after ${this.pings.length} ping(s)`));
        }
      };
      this.#pingWakers.add(wake);
      wake();
    });
  }

  /** How the connection ended; rejects if it is still open after `timeoutMs`. */
  async waitClosed(timeoutMs = 3000): Promise<CloseInfo> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      return await Promise.race([
        this.closed,
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`still open after ${timeoutMs} ms; ${this.#history()}`)),
            timeoutMs,
          );
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Start the closing handshake and resolve with how the connection ended, or undefined if the server did not
   * finish it within `timeoutMs` (the socket is destroyed then).
   */
  async close(code = 1000, reason = "", timeoutMs = 3000): Promise<CloseInfo | undefined> {
    if (this.#closeInfo) return this.#closeInfo;
    this.#sendClose(code, reason);
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      const info = await Promise.race([
        this.closed,
        new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), timeoutMs))),
      ]);
      if (!info) this.destroy();
      return info;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Drop the TCP connection at once, without a closing handshake. */
  destroy(): void {
    this.#socket.destroy();
  }

  [Symbol.asyncDispose](): Promise<void> {
    this.destroy();
    return Promise.resolve();
  }

  #listen(rest: Buffer): void {
    this.#socket.on("data", (chunk: Buffer) => this.#receive(chunk));
    this.#socket.on("error", () => this.#ended()); // ECONNRESET and friends: "close" follows
    this.#socket.on("close", () => this.#ended());
    if (rest.length > 0) this.#receive(rest);
  }

  #receive(chunk: Buffer): void {
    for (const frame of this.#decoder.push(chunk)) {
      if (frame.masked) this.protocolErrors.push(`masked server frame (opcode ${frame.opcode})`);
      // A copy: fragments and recorded pings outlive the chunk.
      this.#frame(frame.fin, frame.opcode, Buffer.from(frame.payload));
    }
  }

  #frame(fin: boolean, opcode: number, payload: Buffer): void {
    const at = Date.now();
    switch (opcode) {
      case Opcode.ping:
        this.pings.push({ payload: new Uint8Array(payload), at });
        if (this.answerPings && !this.#sentClose) this.sendFrame(Opcode.pong, payload);
        for (const wake of [...this.#pingWakers]) wake();
        return;
      case Opcode.pong:
        this.pongs.push({ payload: new Uint8Array(payload), at });
        return;
      case Opcode.close: {
        const { code, reason } = decodeClosePayload(payload);
        // Echo the close (RFC 6455 §5.5.1) unless we started the handshake, then let the server end TCP.
        if (!this.#sentClose) this.#sendClose(payload.length >= 2 ? code : undefined, "");
        this.#socket.end();
        this.#finish({ code, reason, at });
        return;
      }
      case Opcode.text:
      case Opcode.binary:
        if (this.#fragments) this.protocolErrors.push("a new data frame before the fragmented message ended");
        if (fin) return this.#message(opcode, payload);
        this.#fragments = { opcode, parts: [payload] };
        return;
      case Opcode.continuation:
        if (!this.#fragments) {
          return void this.protocolErrors.push("a continuation frame without a message to continue");
        }
        this.#fragments.parts.push(payload);
        if (fin) {
          const { opcode: first, parts } = this.#fragments;
          this.#fragments = undefined;
          this.#message(first, Buffer.concat(parts));
        }
        return;
      default:
        this.protocolErrors.push(`unknown opcode ${opcode}`);
    }
  }

  #message(opcode: number, payload: Buffer): void {
    if (opcode === Opcode.binary) return void this.binaries.push(new Uint8Array(payload));
    let text: string;
    try {
      text = utf8.decode(payload);
    } catch {
      this.protocolErrors.push("a text message that is not UTF-8");
      text = payload.toString("utf8");
    }
    this.seen.push(text);
    const waiter = this.#waiter;
    this.#waiter = undefined;
    if (waiter) waiter.resolve(text);
    else this.#queue.push(text);
  }

  #sendClose(code: number | undefined, reason: string): void {
    if (this.#sentClose || this.#socket.destroyed || !this.#socket.writable) return;
    this.#sentClose = true;
    this.sendFrame(Opcode.close, code === undefined ? undefined : encodeClosePayload(code, reason));
  }

  /** The socket ended or failed: a close without a close frame is 1006. */
  #ended(): void {
    this.#finish({ code: 1006, reason: "", at: Date.now() });
  }

  #finish(info: CloseInfo): void {
    if (this.#closeInfo) return;
    this.#closeInfo = info;
    const waiter = this.#waiter;
    this.#waiter = undefined;
    waiter?.reject(
      new Error(`connection closed (${this.#describeClose()}) while waiting for a frame; ${this.#history()}`),
    );
    for (const wake of [...this.#pingWakers]) wake();
    this.#resolveClosed(info);
  }

  #describeClose(): string {
    return this.#closeInfo ? `code ${this.#closeInfo.code} ${JSON.stringify(this.#closeInfo.reason)}` : "open";
  }

  #history(): string {
    const cut = (text: string) => (text.length > 200 ? `${text.slice(0, 200)}… (${text.length} chars)` : text);
    const shown = this.seen.slice(0, 20).map(cut);
    if (this.seen.length > 20) shown.push(`… ${this.seen.length - 20} more`);
    return `${this.pings.length} ping(s); frames seen: ${shown.length === 0 ? "none" : shown.join(" | ")}`;
  }
}
