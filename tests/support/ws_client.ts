/** A server frame, parsed. */
export type Frame = Record<string, unknown>;

interface Waiter {
  resolve(text: string): void;
  reject(error: Error): void;
}

/**
 * A WebSocket client for end-to-end tests on the global `WebSocket` (Deno and Bun): frames queue up until
 * `next()` takes them, and every wait is bounded and fails with what was seen.
 */
export class WsClient {
  readonly socket: WebSocket;
  /** Resolves with the close code once the connection is closed, whoever closed it. */
  readonly closed: Promise<number>;
  /** Every frame received, as text, in order (taken or not). */
  readonly seen: string[] = [];
  /** The close reason, once closed. */
  closeReason: string | undefined;
  readonly #queue: string[] = [];
  #waiter: Waiter | undefined;
  #closeCode: number | undefined;

  private constructor(socket: WebSocket) {
    this.socket = socket;
    socket.binaryType = "arraybuffer";
    socket.addEventListener("message", (event) => {
      const data = (event as MessageEvent).data;
      const text = typeof data === "string" ? data : new TextDecoder().decode(data as ArrayBuffer);
      this.seen.push(text);
      const waiter = this.#waiter;
      this.#waiter = undefined;
      if (waiter) waiter.resolve(text);
      else this.#queue.push(text);
    });
    this.closed = new Promise((resolve) => {
      socket.addEventListener("close", (event) => {
        const { code, reason } = event as CloseEvent;
        this.#closeCode = code;
        this.closeReason = reason;
        const waiter = this.#waiter;
        this.#waiter = undefined;
        waiter?.reject(new Error(`connection closed with code ${code} while waiting for a frame; ${this.#history()}`));
        resolve(code);
      });
    });
  }

  /** Open a connection; rejects if it is not open within `timeoutMs`. */
  static connect(url: string, timeoutMs = 5000): Promise<WsClient> {
    const socket = new WebSocket(url);
    const client = new WsClient(socket);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        socket.close();
        reject(new Error(`WebSocket to ${url} not open within ${timeoutMs} ms`));
      }, timeoutMs);
      socket.addEventListener("open", () => {
        clearTimeout(timer);
        resolve(client);
      });
      socket.addEventListener("close", (event) => {
        clearTimeout(timer);
        reject(new Error(`WebSocket to ${url} closed before it opened (code ${(event as CloseEvent).code})`));
      });
    });
  }

  /** The close code, or undefined while open. */
  get closeCode(): number | undefined {
    return this.#closeCode;
  }

  /** Send a string as it is, bytes as a binary frame, anything else as JSON text. */
  send(message: unknown): void {
    if (typeof message === "string" || message instanceof Uint8Array || message instanceof ArrayBuffer) {
      this.socket.send(message);
    } else {
      this.socket.send(JSON.stringify(message));
    }
  }

  /** The next frame, parsed; rejects after `timeoutMs`, or if the connection closes first, listing what was seen. */
  async next(timeoutMs = 3000): Promise<Frame> {
    const text = await this.nextText(timeoutMs);
    try {
      return JSON.parse(text) as Frame;
    } catch {
      throw new Error(`frame is not JSON: ${JSON.stringify(text)}`);
    }
  }

  /** The next frame as text. */
  nextText(timeoutMs = 3000): Promise<string> {
    if (this.#queue.length > 0) return Promise.resolve(this.#queue.shift()!);
    if (this.#closeCode !== undefined) {
      return Promise.reject(new Error(`connection already closed with code ${this.#closeCode}; ${this.#history()}`));
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

  /** Assert that no frame arrives (or is waiting) for `ms` milliseconds. */
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

  /** The close code once the connection closes; rejects if it is still open after `timeoutMs`. */
  async waitClosed(timeoutMs = 3000): Promise<number> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      return await Promise.race([
        this.closed,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`still open after ${timeoutMs} ms; ${this.#history()}`)), timeoutMs);
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Close from the client side and resolve with the close code (bounded: gives up waiting after `timeoutMs`). */
  async close(code = 1000, timeoutMs = 3000): Promise<number | undefined> {
    if (this.#closeCode !== undefined) return this.#closeCode;
    if (this.socket.readyState === WebSocket.CONNECTING || this.socket.readyState === WebSocket.OPEN) {
      this.socket.close(code);
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      return await Promise.race([
        this.closed,
        new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), timeoutMs))),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  #history(): string {
    return `frames seen: ${this.seen.length === 0 ? "none" : this.seen.join(" | ")}`;
  }
}
