import { getLogger } from "@logtape/logtape";
import { DEFAULTS } from "../config.ts";
import { type Clock, sleep, systemClock } from "../core/clock.ts";
import { MAX_JSON_DEPTH, parseJson } from "../protocol/json.ts";
import { pyFloat } from "../protocol/pyvalues.ts";
import { FETCH_BUDGET, FetchSlots } from "./fetch_slots.ts";
import { clip, debugEnabled, REDACTED, scrubUrl } from "../log.ts";

/** The callbacks a service may configure; used in logs and metrics. */
export type CallbackName =
  | "ticket"
  | "authorizer"
  | "before_subscribe"
  | "on_subscribe"
  | "on_message"
  | "before_unsubscribe"
  | "on_unsubscribe"
  | "on_authorization_change"
  | "on_heartbeat";

/** What one callback came to: the service's JSON object, or unavailable (every try failed, refused, or cancelled). */
export type ServiceAnswer =
  | { readonly ok: true; readonly body: Readonly<Record<string, unknown>> }
  | { readonly ok: false };

export interface ServiceClientOptions {
  /** Seconds per attempt, counted from when the request can really be sent (a slot of the fetch budget taken). */
  readonly timeout: number;
  readonly tries: number;
  /** Seconds between attempts (replaced by the rate-limit header after a 429). */
  readonly wait: number;
  /** Headers holding the seconds to wait after a 429, first present wins. */
  readonly rateLimitResetHeaderNames: readonly string[];
  /** Bytes of an answer's body; a longer one is a failed attempt. */
  readonly maxResponseBytes?: number;
  /** Calls in flight to one service (all sessions); past it a call fails at once. */
  readonly maxCallbacksPerService?: number;
  readonly fetch?: typeof fetch;
  readonly clock?: Clock;
  /** Cancels waits and requests at shutdown. */
  readonly signal?: AbortSignal;
  /** The process-wide budget of callback fetches; defaults to the one every client of the process shares. */
  readonly slots?: FetchSlots;
  /** Called once per callback with its outcome and total duration, for metrics. */
  readonly observe?: (callback: CallbackName, outcome: "ok" | "error" | "unavailable", seconds: number) => void;
  /**
   * Called for each call refused by `maxCallbacksPerService` (`callbacks`) and each answer cut at
   * `maxResponseBytes` (`response_size`), for the refusal metric.
   */
  readonly onRefused?: (callback: CallbackName, reason: "callbacks" | "response_size") => void;
}

/** Options of one call. */
export interface PostOptions {
  /** The service the call belongs to, which keys `maxCallbacksPerService`; defaults to the URL's origin. */
  readonly service?: string;
  /** Aborts the call (every try and wait), e.g. when its client went away: the answer is `{ ok: false }`. */
  readonly signal?: AbortSignal;
}

const MAX_RATE_LIMIT_WAIT = 3600;
const log = getLogger(["shoal", "http"]);
const HEADERS: Readonly<Record<string, string>> = { "content-type": "application/json", accept: "application/json" };

/** Every client of the process shares one budget: Bun's fetch pool is per process (see `FETCH_BUDGET`). */
const callbackSlots = new FetchSlots(FETCH_BUDGET.callbacks);

/**
 * Posts callback bodies to services: JSON in, a JSON object out, with SocketShark's timeout, tries, wait and
 * 429 rules. Connections are reused (the runtime's fetch keeps them alive). Anything that is not a JSON object
 * answered with a 2xx is a failed attempt (decision 5), so a broken service yields `Service unavailable.`; so is a
 * redirect (never followed: it would re-post a ticket to wherever it points) and a body over `maxResponseBytes`.
 * One slow service cannot starve the others: each has at most `maxCallbacksPerService` calls in flight, and all of
 * them together at most their share of the fetch budget, waited for before an attempt's timer starts.
 */
export class ServiceClient {
  readonly #options: ServiceClientOptions;
  readonly #fetch: typeof fetch;
  readonly #clock: Clock;
  readonly #slots: FetchSlots;
  readonly #maxResponseBytes: number;
  readonly #maxPerService: number;
  /** Calls in flight, aborted together at shutdown (cheaper than combining two signals per request). */
  readonly #calls = new Set<AbortController>();
  /** Calls in flight per service key. */
  readonly #perService = new Map<string, number>();
  /** Services whose refusals were logged since they last had no call in flight: one line per overload, not per call. */
  readonly #saturated = new Set<string>();
  #abandoned = 0;

  constructor(options: ServiceClientOptions) {
    this.#options = options;
    this.#fetch = options.fetch ?? fetch;
    this.#clock = options.clock ?? systemClock;
    this.#slots = options.slots ?? callbackSlots;
    this.#maxResponseBytes = options.maxResponseBytes ?? DEFAULTS.http.maxResponseBytes;
    this.#maxPerService = options.maxCallbacksPerService ?? DEFAULTS.limits.maxCallbacksPerService;
    options.signal?.addEventListener("abort", () => {
      for (const call of this.#calls) call.abort(options.signal!.reason);
    }, { once: true });
  }

  /**
   * Calls that ended without an answer: every try failed, the service's bound refused them, or they were
   * cancelled (shutdown or the caller's signal). Shutdown reports how many callbacks were not delivered.
   */
  get abandoned(): number {
    return this.#abandoned;
  }

  /** POST `body` to `url`, retrying as configured. Never throws. */
  async post(url: string, body: unknown, callback: CallbackName, options: PostOptions = {}): Promise<ServiceAnswer> {
    const started = this.#clock.now();
    const service = options.service ?? originOf(url);
    let answer: ServiceAnswer = UNAVAILABLE;
    if (this.#enter(service, url, callback)) {
      try {
        answer = await this.#call(url, JSON.stringify(body), callback, options.signal);
      } finally {
        this.#leave(service);
      }
    }
    if (!answer.ok) this.#abandoned++;
    const outcome = !answer.ok ? "unavailable" : answer.body.status === "ok" ? "ok" : "error";
    this.#options.observe?.(callback, outcome, (this.#clock.now() - started) / 1000);
    return answer;
  }

  /** Count a call against its service's bound; false (and no call) when the bound is reached. */
  #enter(service: string, url: string, callback: CallbackName): boolean {
    const count = this.#perService.get(service) ?? 0;
    if (count >= this.#maxPerService) {
      this.#options.onRefused?.(callback, "callbacks");
      if (!this.#saturated.has(service)) {
        this.#saturated.add(service);
        log.warn("too many callbacks in flight to one service; refusing more", {
          url: scrubUrl(url),
          callback,
          limit: this.#maxPerService,
        });
      }
      return false;
    }
    this.#perService.set(service, count + 1);
    return true;
  }

  #leave(service: string): void {
    const count = (this.#perService.get(service) ?? 1) - 1;
    if (count > 0) return void this.#perService.set(service, count);
    this.#perService.delete(service);
    this.#saturated.delete(service);
  }

  /** One call's tries under one signal, aborted by shutdown or by the caller's signal. */
  async #call(url: string, text: string, callback: CallbackName, callerSignal?: AbortSignal): Promise<ServiceAnswer> {
    if (this.#options.signal?.aborted || callerSignal?.aborted) return UNAVAILABLE;
    const call = new AbortController();
    const onCallerAbort = () => call.abort(callerSignal!.reason);
    callerSignal?.addEventListener("abort", onCallerAbort, { once: true });
    this.#calls.add(call);
    try {
      return await this.#attempts(url, text, callback, call.signal);
    } finally {
      callerSignal?.removeEventListener("abort", onCallerAbort);
      this.#calls.delete(call);
    }
  }

  async #attempts(url: string, text: string, callback: CallbackName, signal: AbortSignal): Promise<ServiceAnswer> {
    const { tries, timeout } = this.#options;
    let wait = this.#options.wait;
    for (let attempt = 0; attempt < tries; attempt++) {
      if (attempt > 0) await sleep(this.#clock, wait * 1000, signal);
      if (signal.aborted) break;
      // Wait for a slot before the timer starts, so time spent queueing never counts as the service's.
      const release = await this.#slots.acquire(signal);
      if (!release) break;
      if (signal.aborted) {
        release(); // granted just as the call was cancelled
        break;
      }
      const started = this.#clock.now();
      const controller = new AbortController();
      const onAbort = () => controller.abort(signal.reason);
      signal.addEventListener("abort", onAbort, { once: true });
      // The per-attempt timeout runs on real time, like the request itself (capped where timers overflow).
      const timer = setTimeout(() => controller.abort(TIMED_OUT), Math.min(timeout * 1000, MAX_TIMER_MS));
      try {
        const response = await this.#fetch(url, {
          method: "POST",
          headers: HEADERS,
          body: text,
          signal: controller.signal,
          redirect: "manual",
        });
        if (response.status === 429) {
          await response.body?.cancel();
          wait = this.#rateLimitWait(response, url);
          log.warn("rate limited by service", { url: scrubUrl(url), callback, wait });
          continue;
        }
        wait = this.#options.wait;
        if (response.status >= 300 || response.type === "opaqueredirect") {
          await response.body?.cancel();
          const problem = response.status >= 400 ? "service answered an error status" : "service answered a redirect (not followed)";
          log.warn(problem, { url: scrubUrl(url), callback, status: response.status });
          continue;
        }
        const parsed = await readJsonObject(response, this.#maxResponseBytes);
        if (typeof parsed === "string") {
          // The body may still be arriving (an answer over the limit): drop the connection, not just the reader.
          controller.abort();
          const tooLarge = parsed === TOO_LARGE;
          if (tooLarge) this.#options.onRefused?.(callback, "response_size");
          const problem = tooLarge ? `${parsed} (${this.#maxResponseBytes} bytes)` : parsed;
          log.warn("invalid service response", { url: scrubUrl(url), callback, problem });
          continue;
        }
        if (debugEnabled()) {
          log.debug("http request", {
            url: scrubUrl(url),
            callback,
            // A ticket and the identity it stands for are credentials: never logged.
            request: callback === "ticket" ? REDACTED : clip(text),
            response: callback === "ticket" ? REDACTED : parsed,
            duration: (this.#clock.now() - started) / 1000,
          });
        }
        return { ok: true, body: parsed };
      } catch (error) {
        if (signal.aborted) {
          // Cancelled on purpose (shutdown, or the client went away): not the service's fault, nothing to retry.
          if (debugEnabled()) log.debug("callback cancelled", { url: scrubUrl(url), callback });
          break;
        }
        const timedOut = controller.signal.reason === TIMED_OUT;
        log.warn(timedOut ? "timeout in http_post" : "service unreachable", {
          url: scrubUrl(url),
          callback,
          error: timedOut ? `no answer within ${timeout} s` : String(error),
        });
      } finally {
        clearTimeout(timer);
        signal.removeEventListener("abort", onAbort);
        release();
      }
    }
    return UNAVAILABLE;
  }

  #rateLimitWait(response: Response, url: string): number {
    for (const name of this.#options.rateLimitResetHeaderNames) {
      const raw = response.headers.get(name);
      if (raw === null || raw.trim() === "") continue;
      const value = pyFloat(raw);
      if (value === undefined || Number.isNaN(value) || value < 0) {
        log.warn("invalid rate reset value", { url: scrubUrl(url), header: name, value: raw });
        return this.#options.wait;
      }
      if (value > MAX_RATE_LIMIT_WAIT) {
        log.warn("rate reset value too high", { url: scrubUrl(url), header: name, value: raw });
        return MAX_RATE_LIMIT_WAIT;
      }
      return value;
    }
    log.warn("got a 429 but no rate limit reset header found in response", { url: scrubUrl(url) });
    return this.#options.wait;
  }
}

const UNAVAILABLE: ServiceAnswer = { ok: false };

/** The key of a call given no service name: scheme, host and port (never the user info). */
function originOf(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return url;
  }
}

/** The longest delay a timer takes (2^31 − 1 ms, about 24.8 days); longer ones fire at once. */
const MAX_TIMER_MS = 2_147_483_647;

/** The abort reason of an attempt that ran out of time. */
const TIMED_OUT = new DOMException("The service did not answer in time.", "TimeoutError");

/** What `readJsonObject` says of an answer longer than `maxResponseBytes`. */
const TOO_LARGE = "body is longer than http.maxResponseBytes";

const JSON_TYPE = /^application\/(?:[\w.+-]+\+)?json$/i;

/** The response's JSON object, or a string saying what was wrong with it; the body is read up to `maxBytes`. */
async function readJsonObject(response: Response, maxBytes: number): Promise<Record<string, unknown> | string> {
  const type = (response.headers.get("content-type") ?? "").split(";")[0].trim();
  if (!JSON_TYPE.test(type)) {
    await response.body?.cancel();
    return `content type ${type || "(none)"} is not JSON`;
  }
  const text = await readText(response, maxBytes);
  if (text === undefined) return TOO_LARGE;
  const json = parseJson(text);
  if (!json.ok) return json.reason === "too deep" ? `body is nested deeper than ${MAX_JSON_DEPTH} levels` : "body is not valid JSON";
  const value = json.value;
  if (value === null || typeof value !== "object" || Array.isArray(value)) return "body is not a JSON object";
  return value as Record<string, unknown>;
}

/** The body as text, or undefined (and the body cancelled) once it is longer than `maxBytes`. */
async function readText(response: Response, maxBytes: number): Promise<string | undefined> {
  // A declared length over the limit is refused before a byte is read; the count below catches the rest
  // (chunked, endless, or decompressed past its declared size).
  const declared = Number(response.headers.get("content-length") ?? NaN);
  if (declared > maxBytes || !response.body) {
    await response.body?.cancel();
    return declared > maxBytes ? undefined : "";
  }
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let text = "";
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return text + decoder.decode();
    size += value.byteLength;
    if (size > maxBytes) {
      // Not awaited: an endless body's cancel must not hold the attempt; the caller also aborts the request.
      reader.cancel().catch(() => {});
      return undefined;
    }
    text += decoder.decode(value, { stream: true });
  }
}
