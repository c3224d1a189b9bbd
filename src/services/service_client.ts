import { getLogger } from "@logtape/logtape";
import { type Clock, sleep, systemClock } from "../core/clock.ts";
import { MAX_JSON_DEPTH, parseJson } from "../protocol/json.ts";
import { pyFloat } from "../protocol/pyvalues.ts";
import { scrubUrl } from "./scrub_url.ts";
import { clip, debugEnabled, REDACTED } from "../log.ts";

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

/** What one callback came to: the service's JSON object, or unavailable after every try failed. */
export type ServiceAnswer =
  | { readonly ok: true; readonly body: Readonly<Record<string, unknown>> }
  | { readonly ok: false };

export interface ServiceClientOptions {
  /** Seconds per attempt. */
  readonly timeout: number;
  readonly tries: number;
  /** Seconds between attempts (replaced by the rate-limit header after a 429). */
  readonly wait: number;
  /** Headers holding the seconds to wait after a 429, first present wins. */
  readonly rateLimitResetHeaderNames: readonly string[];
  readonly fetch?: typeof fetch;
  readonly clock?: Clock;
  /** Cancels waits and requests at shutdown. */
  readonly signal?: AbortSignal;
  /** Called once per callback with its outcome and total duration, for metrics. */
  readonly observe?: (callback: CallbackName, outcome: "ok" | "error" | "unavailable", seconds: number) => void;
}

const MAX_RATE_LIMIT_WAIT = 3600;
const log = getLogger(["shoal", "http"]);
const HEADERS: Readonly<Record<string, string>> = { "content-type": "application/json", accept: "application/json" };

/**
 * Posts callback bodies to services: JSON in, a JSON object out, with SocketShark's timeout, tries, wait and
 * 429 rules. Connections are reused (the runtime's fetch keeps them alive). Anything that is not a JSON object
 * answered with a 2xx/3xx is a failed attempt (decision 5), so a broken service yields `Service unavailable.`.
 */
export class ServiceClient {
  readonly #options: ServiceClientOptions;
  readonly #fetch: typeof fetch;
  readonly #clock: Clock;
  /** Requests in flight, aborted together at shutdown (cheaper than combining two signals per request). */
  readonly #inFlight = new Set<AbortController>();

  constructor(options: ServiceClientOptions) {
    this.#options = options;
    this.#fetch = options.fetch ?? fetch;
    this.#clock = options.clock ?? systemClock;
    options.signal?.addEventListener("abort", () => {
      for (const controller of this.#inFlight) controller.abort(options.signal!.reason);
    }, { once: true });
  }

  /** POST `body` to `url`, retrying as configured. Never throws. */
  async post(url: string, body: unknown, callback: CallbackName): Promise<ServiceAnswer> {
    const started = this.#clock.now();
    const answer = await this.#attempts(url, JSON.stringify(body), callback);
    const outcome = !answer.ok ? "unavailable" : answer.body.status === "ok" ? "ok" : "error";
    this.#options.observe?.(callback, outcome, (this.#clock.now() - started) / 1000);
    return answer;
  }

  async #attempts(url: string, text: string, callback: CallbackName): Promise<ServiceAnswer> {
    const { tries, timeout, signal } = this.#options;
    let wait = this.#options.wait;
    for (let attempt = 0; attempt < tries; attempt++) {
      if (attempt > 0) await sleep(this.#clock, wait * 1000, signal);
      if (signal?.aborted) break;
      const started = this.#clock.now();
      const controller = new AbortController();
      // The per-attempt timeout runs on real time, like the request itself (capped where timers overflow).
      const timer = setTimeout(() => controller.abort(TIMED_OUT), Math.min(timeout * 1000, MAX_TIMER_MS));
      this.#inFlight.add(controller);
      try {
        const response = await this.#fetch(url, { method: "POST", headers: HEADERS, body: text, signal: controller.signal });
        if (response.status === 429) {
          await response.body?.cancel();
          wait = this.#rateLimitWait(response, url);
          log.warn("rate limited by service", { url: scrubUrl(url), callback, wait });
          continue;
        }
        wait = this.#options.wait;
        if (response.status >= 400) {
          await response.body?.cancel();
          log.warn("service answered an error status", { url: scrubUrl(url), callback, status: response.status });
          continue;
        }
        const parsed = await readJsonObject(response);
        if (typeof parsed === "string") {
          log.warn("invalid service response", { url: scrubUrl(url), callback, problem: parsed });
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
        const timedOut = controller.signal.reason === TIMED_OUT;
        log.warn(timedOut ? "timeout in http_post" : "service unreachable", {
          url: scrubUrl(url),
          callback,
          error: timedOut ? `no answer within ${timeout} s` : String(error),
        });
      } finally {
        clearTimeout(timer);
        this.#inFlight.delete(controller);
      }
    }
    return { ok: false };
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

/** The longest delay a timer takes (2^31 − 1 ms, about 24.8 days); longer ones fire at once. */
const MAX_TIMER_MS = 2_147_483_647;

/** The abort reason of an attempt that ran out of time. */
const TIMED_OUT = new DOMException("The service did not answer in time.", "TimeoutError");

const JSON_TYPE = /^application\/(?:[\w.+-]+\+)?json$/i;

/** The response's JSON object, or a string saying what was wrong with it. */
async function readJsonObject(response: Response): Promise<Record<string, unknown> | string> {
  const type = (response.headers.get("content-type") ?? "").split(";")[0].trim();
  if (!JSON_TYPE.test(type)) {
    await response.body?.cancel();
    return `content type ${type || "(none)"} is not JSON`;
  }
  const json = parseJson(await response.text());
  if (!json.ok) return json.reason === "too deep" ? `body is nested deeper than ${MAX_JSON_DEPTH} levels` : "body is not valid JSON";
  const value = json.value;
  if (value === null || typeof value !== "object" || Array.isArray(value)) return "body is not a JSON object";
  return value as Record<string, unknown>;
}
