import { Buffer } from "node:buffer";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { createClient, ErrorReply, MultiErrorReply } from "redis";

export interface UpstashServerOptions {
  /** The Redis the REST API fronts, e.g. a `RedisServer`'s `url`. */
  readonly redisUrl: string;
  /** The token clients must send as `Authorization: Bearer TOKEN` (or `?_token=TOKEN`). */
  readonly token: string;
}

/** How `dropStreams()` ends the open streams. */
export interface DropOptions {
  /**
   * false (default): destroy the connection mid-stream, as a crashed proxy or network cut would; the reader gets a
   * read error. true: finish the response properly; the reader sees a clean end of stream.
   */
  readonly graceful?: boolean;
}

/** One open server-sent-event stream: `POST /subscribe/<channel>` or `POST /psubscribe/<pattern>`. */
export interface UpstashStream {
  readonly kind: "subscribe" | "psubscribe";
  /** The channel, or the pattern for `psubscribe`. */
  readonly channel: string;
}

/** A command's outcome on the wire: `{"result": ...}` or `{"error": "..."}`. */
type Outcome = { result: unknown } | { error: string };

function connectRedis(url: string) {
  let connected = false;
  const client = createClient({
    url,
    RESP: 2,
    maintNotifications: "disabled",
    // A command while Redis is down fails at once (an error answer) instead of waiting in a queue.
    disableOfflineQueue: true,
    socket: {
      connectTimeout: 2000,
      // Reconnect quickly after an outage; give up on the first connection after ~2 s so start() fails.
      reconnectStrategy: (retries: number, cause: Error) =>
        connected ? Math.min(50 * 2 ** retries, 500) : retries >= 20 ? cause : 100,
    },
  });
  client.on("ready", () => (connected = true));
  return client;
}

type RedisClient = ReturnType<typeof connectRedis>;

/** The live state of one stream; `ended` guards against ending it twice (drop, client close, Redis loss). */
interface Stream extends UpstashStream {
  readonly res: ServerResponse;
  readonly subscriber: RedisClient;
  open: boolean;
  ended: boolean;
}

/**
 * Commands the REST API refuses, as Upstash does: they would block the shared connection or change its state.
 * Pub/sub goes through the streaming endpoints instead.
 */
const REFUSED = new Set([
  "SUBSCRIBE",
  "PSUBSCRIBE",
  "SSUBSCRIBE",
  "UNSUBSCRIBE",
  "PUNSUBSCRIBE",
  "SUNSUBSCRIBE",
  "MONITOR",
  "MULTI",
  "EXEC",
  "DISCARD",
  "WATCH",
  "UNWATCH",
  "SELECT",
  "QUIT",
  "RESET",
  "HELLO",
  "AUTH",
  "BLPOP",
  "BRPOP",
  "BRPOPLPUSH",
  "BLMOVE",
  "BLMPOP",
  "BZPOPMIN",
  "BZPOPMAX",
  "BZMPOP",
]);

/**
 * An Upstash-REST-compatible HTTP server on 127.0.0.1 in front of a real Redis, built on `node:http` so it runs
 * under Deno and Bun, for testing against the real `@upstash/redis` client:
 *
 * - `POST /` with a JSON command array (`["SET","k","v"]`) answers `{"result": ...}`, or `{"error": "..."}` with
 *   status 400; `POST /pipeline` and `POST /multi-exec` take an array of those and answer an array of outcomes
 *   (`/multi-exec` answers one `{"error"}` with 400 when Redis discards the transaction). A path such as
 *   `/set/k/v` is a command too (a non-empty body is its last argument).
 * - With the request header `Upstash-Encoding: base64`, every string in a result is base64 (UTF-8) except a
 *   top-level `"OK"`; errors are never encoded.
 * - `POST /subscribe/<channel>` and `POST /psubscribe/<pattern>` (the name URL-decoded; the client does not encode
 *   it) answer `text/event-stream` on a dedicated Redis connection: `data: subscribe,<channel>,1` once Redis
 *   confirmed, then `data: message,<channel>,<payload>` (`data: pmessage,<pattern>,<channel>,<payload>`), raw,
 *   never base64. A payload's line breaks start new `data: ` lines, as SSE requires. When that Redis connection
 *   is lost, the stream is cut.
 * - A wrong or missing token answers 401 `{"error": "Unauthorized"}`.
 */
export class UpstashServer {
  /** Every command run, in arrival order (pipeline and transaction members one by one). */
  readonly commands: (readonly string[])[] = [];
  readonly #server: Server;
  readonly #token: string;
  readonly #redis: RedisClient;
  readonly #streams = new Set<Stream>();
  readonly #sockets = new Set<Socket>();
  readonly #waiters = new Set<() => void>();
  #port = 0;
  #streamsOpened = 0;
  #closed: Promise<void> | undefined;

  private constructor(server: Server, options: { token: string; redis: RedisClient }) {
    this.#server = server;
    this.#token = options.token;
    this.#redis = options.redis;
    server.on("request", (req: IncomingMessage, res: ServerResponse) => void this.#handle(req, res));
    server.on("connection", (socket: Socket) => {
      this.#sockets.add(socket);
      socket.on("close", () => this.#sockets.delete(socket));
    });
  }

  /** Connect to Redis and listen on a free port. */
  static async start(options: UpstashServerOptions): Promise<UpstashServer> {
    const redis = connectRedis(options.redisUrl);
    redis.on("error", () => {
      // Connection errors surface as command errors; node-redis reconnects by itself.
    });
    try {
      await redis.connect();
    } catch (error) {
      redis.destroy();
      throw new Error(`upstash server: cannot connect to ${options.redisUrl}: ${(error as Error).message}`);
    }
    const server = createServer();
    const upstash = new UpstashServer(server, { token: options.token, redis });
    try {
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(0, "127.0.0.1", () => resolve());
      });
    } catch (error) {
      redis.destroy();
      throw error;
    }
    upstash.#port = (server.address() as AddressInfo).port;
    return upstash;
  }

  get port(): number {
    return this.#port;
  }

  /** `http://127.0.0.1:PORT`, the `url` for `new Redis({ url, token })`. */
  get url(): string {
    return `http://127.0.0.1:${this.#port}`;
  }

  get token(): string {
    return this.#token;
  }

  /** How many event streams are open (Redis confirmed the subscription and the stream has not ended). */
  get openStreams(): number {
    return this.streams.length;
  }

  /** The open streams, in the order they were requested. */
  get streams(): UpstashStream[] {
    return [...this.#streams].filter((s) => s.open).map(({ kind, channel }) => ({ kind, channel }));
  }

  /** The channels (or patterns) of the open streams, in request order; a channel streamed twice appears twice. */
  get channels(): string[] {
    return this.streams.map((s) => s.channel);
  }

  /** How many streams were ever opened: grows when a client re-opens a dropped stream. */
  get streamsOpened(): number {
    return this.#streamsOpened;
  }

  /**
   * Resolve once exactly `count` streams are open; reject after `timeoutMs` naming the open ones. Wait for 0 to see
   * that a client closed its streams.
   */
  waitForStreams(count: number, timeoutMs = 5000): Promise<void> {
    if (this.openStreams === count) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters.delete(check);
        reject(
          new Error(
            `upstash server: waited ${timeoutMs} ms for ${count} open stream(s), have ${JSON.stringify(this.channels)}`,
          ),
        );
      }, timeoutMs);
      const check = () => {
        if (this.openStreams !== count) return;
        clearTimeout(timer);
        this.#waiters.delete(check);
        resolve();
      };
      this.#waiters.add(check);
    });
  }

  /**
   * End every event stream now, open or still subscribing (abruptly unless `graceful`); returns how many. Clients
   * see the end of their stream; a client that re-opens it shows up in `streamsOpened` and `waitForStreams()`.
   */
  dropStreams(options: DropOptions = {}): number {
    const streams = [...this.#streams];
    for (const stream of streams) this.#end(stream, options.graceful ? "graceful" : "abrupt");
    return streams.length;
  }

  /** Cut every stream and connection, stop listening and disconnect from Redis. Safe to call more than once. */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      this.dropStreams();
      const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
      for (const socket of this.#sockets) socket.destroy();
      this.#server.closeAllConnections?.();
      await closed;
      await (this.#redis.isOpen ? this.#redis.close() : this.#redis.destroy());
    })();
    return this.#closed;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = await readBody(req);
    if (this.#closed) return void res.destroy();
    const url = new URL(req.url ?? "/", "http://upstash");
    if (!this.#authorized(req, url)) return reply(res, 401, { error: "Unauthorized" });
    if (req.method !== "POST" && req.method !== "GET") return reply(res, 405, { error: "Method Not Allowed" });
    const base64 = String(req.headers["upstash-encoding"] ?? "").toLowerCase() === "base64";
    const [route = "", ...rest] = url.pathname.split("/").slice(1);

    if ((route === "subscribe" || route === "psubscribe") && rest.length > 0) {
      return this.#stream(res, route, safeDecode(rest.join("/")));
    }
    if (route === "pipeline" || route === "multi-exec") {
      const commands = parseJson(body);
      if (!Array.isArray(commands) || commands.length === 0 || !commands.every(isCommand)) {
        return reply(res, 400, { error: "ERR expected a non-empty JSON array of command arrays" });
      }
      const args = commands.map(toArgs);
      if (route === "pipeline") {
        const outcomes = await Promise.all(args.map((a) => this.#run(a)));
        return reply(res, 200, outcomes.map((o) => encodeOutcome(o, base64)));
      }
      const outcomes = await this.#transaction(args);
      if (!Array.isArray(outcomes)) return reply(res, 400, outcomes);
      return reply(res, 200, outcomes.map((o) => encodeOutcome(o, base64)));
    }
    // The whole command as a JSON array in the body, or in the path (`/set/k/v`, a body being the last argument).
    let command: unknown = route === "" ? parseJson(body) : [route, ...rest].map(safeDecode);
    if (route !== "" && body !== "") command = [...(command as string[]), body];
    if (!isCommand(command)) return reply(res, 400, { error: "ERR expected a non-empty JSON array of strings" });
    const outcome = await this.#run(toArgs(command));
    reply(res, "error" in outcome ? 400 : 200, encodeOutcome(outcome, base64));
  }

  #authorized(req: IncomingMessage, url: URL): boolean {
    return req.headers.authorization === `Bearer ${this.#token}` || url.searchParams.get("_token") === this.#token;
  }

  async #run(args: readonly string[]): Promise<Outcome> {
    this.commands.push(args);
    const refused = this.#refused(args);
    if (refused) return refused;
    try {
      return { result: await this.#redis.sendCommand(args) ?? null };
    } catch (error) {
      return { error: errorText(error) };
    }
  }

  /** MULTI ... EXEC as one batch on the shared connection: an outcome per command, or one error if discarded. */
  async #transaction(commands: readonly (readonly string[])[]): Promise<Outcome[] | { error: string }> {
    this.commands.push(...commands);
    for (const args of commands) {
      const refused = this.#refused(args);
      if (refused) return refused;
    }
    const multi = this.#redis.multi();
    for (const args of commands) multi.addCommand([...args]);
    try {
      const replies: unknown[] = await multi.exec();
      return replies.map((result) => ({ result: result ?? null }));
    } catch (error) {
      if (!(error instanceof MultiErrorReply)) return { error: errorText(error) };
      return error.replies.map((
        r: unknown,
      ) => (r instanceof ErrorReply ? { error: r.message } : { result: r ?? null }));
    }
  }

  #refused(args: readonly string[]): { error: string } | undefined {
    const name = args[0].toUpperCase();
    return REFUSED.has(name) ? { error: `ERR Command is not available: '${name}'` } : undefined;
  }

  /** Subscribe on a dedicated Redis connection and stream what it receives until either side ends. */
  async #stream(res: ServerResponse, kind: "subscribe" | "psubscribe", channel: string): Promise<void> {
    const subscriber = this.#redis.duplicate({ socket: { connectTimeout: 2000, reconnectStrategy: false } });
    const stream: Stream = { kind, channel, res, subscriber, open: false, ended: false };
    this.#streams.add(stream);
    subscriber.on("error", () => {
      // A lost connection ends the stream ("terminated" below); there is nothing else to report to.
    });
    // Redis lost the connection of an open stream: cut it. Before that, the failed subscribe answers 500.
    subscriber.on("terminated", () => stream.open && this.#end(stream, "abrupt"));
    // The client went away (or the stream was dropped): release the Redis connection.
    res.on("close", () => this.#end(stream, "abrupt"));

    // A message can arrive before the subscribe call resolves; it is sent after the confirmation.
    const pending: string[] = [];
    const send = (fields: string[]) => {
      const event = sseEvent(fields);
      if (stream.open) res.write(event);
      else pending.push(event);
    };
    try {
      await subscriber.connect();
      if (kind === "subscribe") {
        await subscriber.subscribe(channel, (message, from) => send(["message", from, message]));
      } else {
        await subscriber.pSubscribe(channel, (message, from) => send(["pmessage", channel, from, message]));
      }
    } catch (error) {
      if (stream.ended) return;
      this.#forget(stream);
      return reply(res, 500, { error: `ERR ${kind} failed: ${errorText(error)}` });
    }
    if (stream.ended) return;
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", connection: "keep-alive" });
    res.write(sseEvent([kind, channel, "1"]) + pending.join(""));
    stream.open = true;
    this.#streamsOpened++;
    this.#changed();
  }

  /** End the response (abruptly: destroy the connection) and forget the stream. */
  #end(stream: Stream, how: "graceful" | "abrupt"): void {
    if (stream.ended) return;
    this.#forget(stream);
    if (how === "graceful") stream.res.end();
    else stream.res.destroy();
  }

  /** Release the stream's Redis connection and stop counting it. */
  #forget(stream: Stream): void {
    stream.ended = true;
    stream.open = false;
    this.#streams.delete(stream);
    if (stream.subscriber.isOpen) stream.subscriber.destroy();
    this.#changed();
  }

  #changed(): void {
    for (const check of [...this.#waiters]) check();
  }
}

/** One SSE event: the fields joined by commas on `data:` lines (one per line of the text), then a blank line. */
function sseEvent(fields: readonly string[]): string {
  return fields.join(",").split(/\r\n|\r|\n/).map((line) => `data: ${line}\n`).join("") + "\n";
}

/**
 * As Upstash encodes results for `Upstash-Encoding: base64`: strings as base64 of their UTF-8 bytes, except a
 * top-level "OK" (the client's decoder keeps that one as is and would garble it encoded or not inside an array).
 */
function encodeOutcome(outcome: Outcome, base64: boolean): Outcome {
  if (!base64 || "error" in outcome) return outcome;
  return { result: encodeResult(outcome.result, true) };
}

function encodeResult(value: unknown, top: boolean): unknown {
  if (typeof value === "string") return top && value === "OK" ? value : Buffer.from(value, "utf8").toString("base64");
  if (Array.isArray(value)) return value.map((item) => encodeResult(item, false));
  return value;
}

/** A command as the client sends it: a non-empty array of strings, numbers and booleans (it JSON-encodes objects). */
function isCommand(value: unknown): value is (string | number | boolean)[] {
  return Array.isArray(value) && value.length > 0 && typeof value[0] === "string" &&
    value.every((v) => typeof v === "string" || typeof v === "number" || typeof v === "boolean");
}

function toArgs(command: (string | number | boolean)[]): string[] {
  return command.map(String);
}

function reply(res: ServerResponse, status: number, body: unknown): void {
  if (res.headersSent || res.destroyed) return;
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", () => resolve(""));
  });
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
