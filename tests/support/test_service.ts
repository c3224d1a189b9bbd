import { createServer, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";

/**
 * One scripted answer: a JSON object (status 200, `application/json`), a full HTTP response, or another reply
 * sent after a delay. A JSON object answer must not have an `http` or `delayMs` key.
 */
export type ServiceReply =
  | Readonly<Record<string, unknown>>
  | {
    readonly http: number;
    readonly body?: string;
    readonly contentType?: string;
    readonly headers?: Readonly<Record<string, string>>;
  }
  | { readonly delayMs: number; readonly reply: ServiceReply }
  | LargeReply;

/**
 * A 200 `application/json` answer of `bytes` bytes (`{"status":"ok","pad":"xxx…"}`, a valid JSON object), or an
 * endless one that never closes its string, written in 64 KiB chunks as fast as the client reads. With
 * `contentLength` the size is declared; otherwise the body is chunked.
 */
export interface LargeReply {
  readonly bytes: number | "endless";
  readonly contentLength?: boolean;
}

/** A request the service received. */
export interface ServiceRequest {
  readonly method: string;
  readonly path: string;
  /** The parsed JSON body, or the raw text when it is not JSON (undefined when empty). */
  readonly body: unknown;
  readonly headers: IncomingHttpHeaders;
  /** `Date.now()` when the request was complete. */
  readonly at: number;
}

interface Waiter {
  readonly path: string;
  readonly count: number;
  resolve(requests: ServiceRequest[]): void;
}

/**
 * A real HTTP service on 127.0.0.1 for end-to-end tests, built on `node:http` so it runs under Deno and Bun.
 * Each path answers from its queue of scripted replies (the last one repeats); unscripted paths answer 404.
 * Every request is recorded in arrival order.
 */
export class TestService {
  readonly requests: ServiceRequest[] = [];
  /** Paths whose large answer the client cut off before its end (it closed the connection), in order. */
  readonly cutShort: string[] = [];
  readonly #server: Server;
  readonly #port: number;
  readonly #replies = new Map<string, ServiceReply[]>();
  readonly #waiters = new Set<Waiter>();
  readonly #sockets = new Set<Socket>();
  readonly #timers = new Set<ReturnType<typeof setTimeout>>();
  #closed: Promise<void> | undefined;

  private constructor(server: Server, port: number) {
    this.#server = server;
    this.#port = port;
    server.on("connection", (socket: Socket) => {
      this.#sockets.add(socket);
      socket.on("close", () => this.#sockets.delete(socket));
    });
  }

  /** Start a service on a free port. */
  static async start(): Promise<TestService> {
    let service: TestService | undefined;
    const server = createServer((req, res) => service!.#handle(req, res));
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => resolve());
    });
    service = new TestService(server, (server.address() as AddressInfo).port);
    return service;
  }

  get port(): number {
    return this.#port;
  }

  /** The absolute URL of a path on this service, e.g. `url("/auth")`. */
  url(path: string): string {
    return `http://127.0.0.1:${this.#port}${path.startsWith("/") ? path : `/${path}`}`;
  }

  /** Answer `path` with these replies in turn; the last one repeats. Replaces any earlier script for it. */
  on(path: string, ...replies: ServiceReply[]): this {
    if (replies.length === 0) throw new TypeError(`on(${path}): give at least one reply`);
    this.#replies.set(path, [...replies]);
    return this;
  }

  /** The requests to one path, in arrival order. */
  requestsTo(path: string): ServiceRequest[] {
    return this.requests.filter((r) => r.path === path);
  }

  /** The parsed bodies posted to one path, in arrival order. */
  bodies(path: string): unknown[] {
    return this.requestsTo(path).map((r) => r.body);
  }

  /** The paths requested, in arrival order. */
  paths(): string[] {
    return this.requests.map((r) => r.path);
  }

  /**
   * Resolve with the first `count` requests to `path` once they have arrived; reject after `timeoutMs` with a
   * message naming what did arrive.
   */
  waitFor(path: string, count = 1, timeoutMs = 5000): Promise<ServiceRequest[]> {
    const seen = this.requestsTo(path);
    if (seen.length >= count) return Promise.resolve(seen.slice(0, count));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters.delete(waiter);
        reject(
          new Error(
            `test service: waited ${timeoutMs} ms for ${count} request(s) to ${path}, got ` +
              `${this.requestsTo(path).length}; all requests so far: ${JSON.stringify(this.paths())}`,
          ),
        );
      }, timeoutMs);
      const waiter: Waiter = {
        path,
        count,
        resolve: (requests) => {
          clearTimeout(timer);
          resolve(requests);
        },
      };
      this.#waiters.add(waiter);
    });
  }

  /** Stop listening, drop open connections (delayed answers included) and cancel pending delays. */
  close(): Promise<void> {
    this.#closed ??= new Promise<void>((resolve) => {
      for (const timer of this.#timers) clearTimeout(timer);
      this.#timers.clear();
      this.#server.close(() => resolve());
      for (const socket of this.#sockets) socket.destroy();
      this.#server.closeAllConnections?.();
    });
    return this.#closed;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      const text = Buffer.concat(chunks).toString("utf8");
      const path = new URL(req.url ?? "/", "http://test").pathname;
      const request: ServiceRequest = { method: req.method ?? "", path, body: parseBody(text), headers: req.headers, at: Date.now() };
      this.requests.push(request);
      this.#answer(res, this.#nextReply(path));
      for (const waiter of [...this.#waiters]) {
        const matching = this.requestsTo(waiter.path);
        if (matching.length >= waiter.count) {
          this.#waiters.delete(waiter);
          waiter.resolve(matching.slice(0, waiter.count));
        }
      }
    });
  }

  /** Write a large or endless answer, waiting for the client to read (drain) and stopping when it goes away. */
  #large(res: ServerResponse, reply: LargeReply): void {
    const path = new URL(res.req.url ?? "/", "http://test").pathname;
    const total = reply.bytes === "endless" ? Infinity : Math.max(reply.bytes, LARGE_HEAD.length + LARGE_TAIL.length);
    const headers: Record<string, string | number> = { "content-type": "application/json" };
    if (reply.contentLength && total !== Infinity) headers["content-length"] = total;
    res.writeHead(200, headers);
    res.write(LARGE_HEAD);
    let left = total - LARGE_HEAD.length - LARGE_TAIL.length;
    let done = false;
    res.on("close", () => {
      if (!done) this.cutShort.push(path);
      done = true;
    });
    const filler = Buffer.alloc(CHUNK, "x");
    const pump = (): void => {
      while (!done && !this.#closed) {
        if (left <= 0) {
          done = true;
          return void res.end(LARGE_TAIL);
        }
        const size = Math.min(CHUNK, left);
        left -= size;
        if (!res.write(size === CHUNK ? filler : filler.subarray(0, size))) return void res.once("drain", pump);
      }
    };
    pump();
  }

  #nextReply(path: string): ServiceReply | undefined {
    const queue = this.#replies.get(path);
    if (!queue) return undefined;
    return queue.length > 1 ? queue.shift() : queue[0];
  }

  #answer(res: ServerResponse, reply: ServiceReply | undefined): void {
    if (this.#closed) return void res.destroy();
    if (reply === undefined) {
      res.writeHead(404, { "content-type": "application/json" });
      return void res.end(JSON.stringify({ status: "error", error: "not scripted" }));
    }
    if (isDelayed(reply)) {
      const timer = setTimeout(() => {
        this.#timers.delete(timer);
        this.#answer(res, reply.reply);
      }, reply.delayMs);
      this.#timers.add(timer);
      return;
    }
    if (isLarge(reply)) return this.#large(res, reply);
    if (isHttp(reply)) {
      res.writeHead(reply.http, { "content-type": reply.contentType ?? "application/json", ...reply.headers });
      return void res.end(reply.body ?? "");
    }
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify(reply));
  }
}

const CHUNK = 64 * 1024;

/** The opening and closing of a large answer; the padding goes in between. */
const LARGE_HEAD = '{"status":"ok","pad":"';
const LARGE_TAIL = '"}';

function isLarge(reply: ServiceReply): reply is LargeReply {
  const bytes = (reply as { bytes?: unknown }).bytes;
  return typeof bytes === "number" || bytes === "endless";
}

function isDelayed(reply: ServiceReply): reply is { readonly delayMs: number; readonly reply: ServiceReply } {
  return typeof (reply as { delayMs?: unknown }).delayMs === "number" && "reply" in reply;
}

function isHttp(reply: ServiceReply): reply is Extract<ServiceReply, { http: number }> {
  return typeof (reply as { http?: unknown }).http === "number";
}

function parseBody(text: string): unknown {
  if (text === "") return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
