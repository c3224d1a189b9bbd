import { createHash, randomBytes } from "node:crypto";
import net from "node:net";
import {
  decodeClosePayload,
  encodeClosePayload,
  encodeFrame,
  FrameDecoder,
  Opcode,
} from "../../tests/support/ws_codec.ts";

/**
 * What a connection reports. `message` gets a view that is valid only during the call, and the connection itself:
 * messages that came with the handshake answer are handed over before `open()` resolves.
 */
export interface WsHandlers {
  message(payload: Buffer, connection: WsConnection): void;
  /** Called once: the close code the server sent, 1005 for none in its close frame, 1006 for no close frame. */
  close(code: number): void;
}

export interface WsConnectOptions {
  readonly host: string;
  readonly port: number;
  /** Request target, e.g. "/" or "/socket.io/?EIO=4&transport=websocket". */
  readonly path: string;
  readonly timeoutMs: number;
  readonly handlers: WsHandlers;
}

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const HEADER_END = Buffer.from("\r\n\r\n");

/**
 * A WebSocket client (RFC 6455) written on a plain TCP socket, for two reasons a library client cannot serve:
 * `pause()` really stops reading, so the kernel buffers fill and the server has to buffer or drop (the stalled
 * clients of S5), and a chunk holding hundreds of frames costs one JS callback, so one load-generator core keeps
 * up with a server that fans out on another core. Server frames are expected unmasked and uncompressed (no
 * extension is offered).
 */
export class WsConnection {
  readonly #socket: net.Socket;
  readonly #handlers: WsHandlers;
  readonly #decoder = new FrameDecoder();
  #fragments: Buffer[] | undefined;
  #closeSent = false;
  #closed = false;
  #localPort = 0;

  private constructor(socket: net.Socket, handlers: WsHandlers) {
    this.#socket = socket;
    this.#handlers = handlers;
  }

  /** Connect and complete the opening handshake; rejects on a refused connection, a non-101 answer or a timeout. */
  static open(options: WsConnectOptions): Promise<WsConnection> {
    return new Promise((resolve, reject) => {
      const key = randomBytes(16).toString("base64");
      const socket = net.connect({ host: options.host, port: options.port, noDelay: true });
      const connection = new WsConnection(socket, options.handlers);
      let head: Buffer = Buffer.alloc(0);
      let opened = false;
      const fail = (why: string) => {
        if (opened) return;
        opened = true;
        clearTimeout(timer);
        socket.destroy();
        reject(new Error(why));
      };
      const timer = setTimeout(() => fail(`no handshake within ${options.timeoutMs} ms`), options.timeoutMs);
      socket.once("connect", () => {
        connection.#localPort = socket.localPort ?? 0;
        socket.write(
          `GET ${options.path} HTTP/1.1\r\nHost: ${options.host}:${options.port}\r\nUpgrade: websocket\r\n` +
            `Connection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
        );
      });
      const onHandshakeData = (chunk: Buffer) => {
        head = head.length === 0 ? chunk : Buffer.concat([head, chunk]);
        const end = head.indexOf(HEADER_END);
        if (end < 0) {
          if (head.length > 16384) fail("handshake answer too long");
          return;
        }
        const lines = head.toString("latin1", 0, end).split("\r\n");
        if (!/^HTTP\/1\.1 101/.test(lines[0])) return fail(`handshake answered ${JSON.stringify(lines[0])}`);
        const accept = lines.find((l) => /^sec-websocket-accept:/i.test(l))?.slice(21).trim();
        const expected = createHash("sha1").update(key + GUID).digest("base64");
        if (accept !== expected) return fail("bad Sec-WebSocket-Accept");
        opened = true;
        clearTimeout(timer);
        socket.off("data", onHandshakeData);
        socket.on("data", (data: Buffer) => connection.#onData(data));
        resolve(connection);
        const rest = head.subarray(end + HEADER_END.length);
        if (rest.length > 0) connection.#onData(rest);
      };
      socket.on("data", onHandshakeData);
      socket.on("error", (error) => (opened ? connection.#finish(1006) : fail(error.message)));
      socket.on("close", () => (opened ? connection.#finish(1006) : fail("closed during the handshake")));
    });
  }

  /** The client's local TCP port (kept after the close): names the connection in `/proc/net/tcp`. */
  get localPort(): number {
    return this.#localPort;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Send a text frame. */
  send(text: string): void {
    if (!this.#closed && !this.#closeSent) this.#write(Opcode.text, text);
  }

  /** Stop reading from the socket: the kernel's receive buffer fills, then the server's send buffer. */
  pause(): void {
    this.#socket.pause();
  }

  resume(): void {
    this.#socket.resume();
  }

  /** Start the closing handshake; the socket ends when the server answers (or at once if it already closed). */
  close(code = 1000): void {
    if (this.#closed) return;
    if (!this.#closeSent) {
      this.#write(Opcode.close, encodeClosePayload(code));
      this.#closeSent = true;
    }
    this.#socket.end();
  }

  /** Drop the TCP connection without a closing handshake. */
  destroy(): void {
    this.#socket.destroy();
    this.#finish(1006);
  }

  #onData(chunk: Buffer): void {
    // A masked server frame is a protocol error, but cheap to accept.
    for (const frame of this.#decoder.push(chunk)) {
      this.#frame(frame.fin, frame.opcode, frame.payload);
      if (this.#closed) return;
    }
  }

  #frame(fin: boolean, opcode: number, payload: Buffer): void {
    switch (opcode) {
      case Opcode.text:
      case Opcode.binary:
        if (fin) this.#handlers.message(payload, this);
        else this.#fragments = [Buffer.from(payload)];
        return;
      case Opcode.continuation:
        if (!this.#fragments) return;
        this.#fragments.push(Buffer.from(payload));
        if (fin) {
          const whole = Buffer.concat(this.#fragments);
          this.#fragments = undefined;
          this.#handlers.message(whole, this);
        }
        return;
      case Opcode.ping:
        this.#write(Opcode.pong, payload);
        return;
      case Opcode.pong:
        return;
      case Opcode.close: {
        const { code } = decodeClosePayload(payload);
        if (!this.#closeSent) {
          // Echo the code alone, or nothing when the server sent none.
          this.#write(Opcode.close, payload.length >= 2 ? encodeClosePayload(code) : undefined);
          this.#closeSent = true;
        }
        this.#socket.end();
        this.#finish(code);
        return;
      }
    }
  }

  #write(opcode: number, payload?: Uint8Array | string): void {
    this.#socket.write(encodeFrame(opcode, payload));
  }

  #finish(code: number): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#handlers.close(code);
  }
}
