/**
 * The HTTP/1.1 wire format that Shoal's Deno server speaks until a connection becomes a WebSocket (RFC 9112):
 * request heads, chunked request bodies and response heads. Strict on purpose: a request that two parsers could
 * read two ways (request smuggling behind a proxy) is refused rather than guessed at. Runtime-free.
 */

/** Largest request head (request line and fields), bytes; a longer one gets 431. */
export const MAX_HEAD_BYTES = 16 * 1024;
/** Most header fields in one request head; more get 431. */
export const MAX_FIELDS = 100;

/** How a request's body is delimited. */
export type BodyFraming =
  | { readonly kind: "none" }
  | { readonly kind: "length"; readonly length: number }
  | { readonly kind: "chunked" };

export interface RequestHead {
  readonly method: string;
  /** As sent: origin-form (`/path?query`) or absolute-form. */
  readonly target: string;
  /** `HTTP/1.<minor>`. */
  readonly minor: 0 | 1;
  /** Field names in lower case, values without surrounding whitespace, in the order sent. */
  readonly fields: readonly (readonly [string, string])[];
  readonly host: string | undefined;
  readonly body: BodyFraming;
  /** The connection ends after this exchange (`Connection: close`, or HTTP/1.0 without keep-alive). */
  readonly close: boolean;
  /** `Expect: 100-continue`: the client waits for a `100 Continue` before it sends the body. */
  readonly expectContinue: boolean;
  /** A `GET` with `Upgrade: websocket` and no body. */
  readonly websocket: boolean;
}

/** A request head, or why it is refused and with which status. */
export type HeadResult =
  | { readonly ok: true; readonly head: RequestHead }
  | { readonly ok: false; readonly status: 400 | 431 | 501 | 505; readonly error: string };

const CR = 13;
const LF = 10;

/** Where the head that starts at `from` ends (just past its blank line), or -1 while it is incomplete. */
export function headEnd(bytes: Uint8Array, from = 0): number {
  for (let i = Math.max(0, from); i + 3 < bytes.length; i++) {
    if (bytes[i] === CR && bytes[i + 1] === LF && bytes[i + 2] === CR && bytes[i + 3] === LF) return i + 4;
  }
  return -1;
}

/** How many bytes at the start are empty lines, which a server ignores before a request line (RFC 9112 §2.2). */
export function leadingEmptyLines(bytes: Uint8Array): number {
  let i = 0;
  while (i + 1 < bytes.length && bytes[i] === CR && bytes[i + 1] === LF) i += 2;
  return i;
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** Field values: visible characters, obs-text, space and tab (no other controls: no bare CR or LF, no NUL). */
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
const TARGET = /^[\x21-\x7e]+$/;
const DIGITS = /^[0-9]+$/;

function refuse(status: 400 | 431 | 501 | 505, error: string): HeadResult {
  return { ok: false, status, error };
}

/** Whether a comma-separated field value lists `token` (case-insensitive). */
function lists(value: string | undefined, token: string): boolean {
  if (value === undefined) return false;
  return value.split(",").some((part) => part.trim().toLowerCase() === token);
}

/**
 * Parse one request head: `bytes` ends with its blank line (see `headEnd`) and starts at the request line. Bytes are
 * read as Latin-1, as field values may carry obs-text.
 */
export function parseRequestHead(bytes: Uint8Array): HeadResult {
  if (bytes.length > MAX_HEAD_BYTES) return refuse(431, "Request header fields too large.");
  const lines = latin1(bytes.subarray(0, bytes.length - 4)).split("\r\n");
  const requestLine = /^([^ ]+) ([^ ]+) HTTP\/(\d)\.(\d)$/.exec(lines[0]);
  if (!requestLine || !TOKEN.test(requestLine[1]) || !TARGET.test(requestLine[2])) {
    return refuse(400, "Malformed request line.");
  }
  const [, method, target, major, minor] = requestLine;
  if (major !== "1" || (minor !== "0" && minor !== "1")) return refuse(505, "HTTP version not supported.");
  if (lines.length - 1 > MAX_FIELDS) return refuse(431, "Request header fields too large.");

  const fields: [string, string][] = [];
  const seen = new Map<string, string[]>();
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i];
    const colon = line.indexOf(":");
    // No name, whitespace before the colon, a folded line (obs-fold) or a control character: all refused.
    if (colon <= 0) return refuse(400, "Malformed header field.");
    const name = line.slice(0, colon);
    const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, "");
    if (!TOKEN.test(name) || !FIELD_VALUE.test(value)) return refuse(400, "Malformed header field.");
    const lower = name.toLowerCase();
    fields.push([lower, value]);
    const values = seen.get(lower);
    if (values) values.push(value);
    else seen.set(lower, [value]);
  }

  const hosts = seen.get("host");
  if (hosts && hosts.length > 1) return refuse(400, "More than one Host field.");
  if (minor === "1" && !hosts) return refuse(400, "Missing Host field.");

  const lengths = seen.get("content-length");
  const encodings = seen.get("transfer-encoding");
  let body: BodyFraming = { kind: "none" };
  if (encodings) {
    // Both framings, or chunked in HTTP/1.0: the classic smuggling shapes.
    if (lengths) return refuse(400, "Both Content-Length and Transfer-Encoding.");
    if (minor === "0") return refuse(400, "Transfer-Encoding in HTTP/1.0.");
    if (encodings.length !== 1 || encodings[0].toLowerCase() !== "chunked") {
      return refuse(501, "Only Transfer-Encoding: chunked is supported.");
    }
    body = { kind: "chunked" };
  } else if (lengths) {
    if (!lengths.every((value) => DIGITS.test(value) && value === lengths[0])) {
      return refuse(400, "Malformed Content-Length.");
    }
    const length = Number(lengths[0]);
    if (!Number.isSafeInteger(length)) return refuse(400, "Malformed Content-Length.");
    if (length > 0) body = { kind: "length", length };
  }

  const connection = seen.get("connection")?.join(",");
  const close = lists(connection, "close") || (minor === "0" && !lists(connection, "keep-alive"));
  const expectContinue = minor === "1" && (seen.get("expect") ?? []).some((v) => v.toLowerCase() === "100-continue");
  const websocket = method === "GET" && body.kind === "none" && lists(seen.get("upgrade")?.join(","), "websocket");
  return {
    ok: true,
    head: {
      method,
      target,
      minor: minor === "1" ? 1 : 0,
      fields,
      host: hosts?.[0],
      body,
      close,
      expectContinue,
      websocket,
    },
  };
}

const ascii = new TextDecoder();

function latin1(bytes: Uint8Array): string {
  // Heads are ASCII nearly always, and the native decoder is several times faster than building the string here.
  let high = false;
  for (let i = 0; i < bytes.length && !high; i++) high = bytes[i] > 0x7f;
  if (!high) return ascii.decode(bytes);
  let text = "";
  for (let i = 0; i < bytes.length; i += 8192) {
    text += String.fromCharCode(...bytes.subarray(i, Math.min(bytes.length, i + 8192)));
  }
  return text;
}

/** A chunked body that does not follow RFC 9112 §7.1. */
export class ChunkedBodyError extends Error {
  override readonly name = "ChunkedBodyError";
  /** The client's fault: the app answers 400 to a request whose body fails with this (see `createApp`). */
  readonly status = 400;
}

/** Longest chunk-size line (with extensions) or trailer section accepted. */
const MAX_CHUNK_LINE = 1024;

/**
 * Decodes a chunked request body as its bytes arrive. Chunk extensions and trailer fields are read and dropped;
 * every line must end with CRLF.
 */
export class ChunkedDecoder {
  /** What the next bytes are: a size line, chunk data, the CRLF after the data, or the trailer section. */
  #state: "size" | "data" | "data-end" | "trailer" | "done" = "size";
  /** Bytes of a line not yet complete (size line or trailer). */
  #line = "";
  #remaining = 0;

  get done(): boolean {
    return this.#state === "done";
  }

  /**
   * Decode what `input` holds; returns the body bytes in it and how many input bytes were used. Bytes past the end
   * of the body (the next request) are left unused. Throws `ChunkedBodyError` on a malformed body.
   */
  decode(input: Uint8Array): { readonly data: Uint8Array[]; readonly used: number } {
    const data: Uint8Array[] = [];
    let i = 0;
    while (i < input.length && this.#state !== "done") {
      switch (this.#state) {
        case "size":
        case "trailer": {
          const lf = input.indexOf(LF, i);
          const end = lf < 0 ? input.length : lf + 1;
          this.#line += latin1(input.subarray(i, end));
          i = end;
          if (this.#line.length > (this.#state === "size" ? MAX_CHUNK_LINE : MAX_HEAD_BYTES)) {
            throw new ChunkedBodyError("chunk line too long");
          }
          if (lf >= 0) this.#endLine();
          break;
        }
        case "data": {
          const take = Math.min(this.#remaining, input.length - i);
          data.push(input.subarray(i, i + take));
          i += take;
          this.#remaining -= take;
          if (this.#remaining === 0) this.#state = "data-end";
          break;
        }
        case "data-end": {
          this.#line += String.fromCharCode(input[i++]);
          if (this.#line.length === 2) {
            if (this.#line !== "\r\n") throw new ChunkedBodyError("chunk data not followed by CRLF");
            this.#line = "";
            this.#state = "size";
          }
          break;
        }
      }
    }
    return { data, used: i };
  }

  #endLine(): void {
    const line = this.#line;
    this.#line = "";
    if (!line.endsWith("\r\n") || line.indexOf("\r") !== line.length - 2) throw new ChunkedBodyError("bare LF or CR");
    const text = line.slice(0, -2);
    if (this.#state === "trailer") {
      // The trailer section ends with an empty line; its fields are dropped (each capped like the size line).
      if (text === "") this.#state = "done";
      else this.#line = "";
      return;
    }
    const size = /^([0-9A-Fa-f]{1,8})(?:[ \t]*;.*)?$/.exec(text);
    if (!size || /[\x00-\x08\x0a-\x1f\x7f]/.test(text)) throw new ChunkedBodyError("malformed chunk size");
    this.#remaining = parseInt(size[1], 16);
    this.#state = this.#remaining === 0 ? "trailer" : "data";
  }
}

/** Reason phrases for the statuses Shoal sends (the phrase is informative only: RFC 9112 §4). */
const REASONS: Readonly<Record<number, string>> = {
  100: "Continue",
  101: "Switching Protocols",
  200: "OK",
  204: "No Content",
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  408: "Request Timeout",
  413: "Content Too Large",
  426: "Upgrade Required",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
  501: "Not Implemented",
  503: "Service Unavailable",
  505: "HTTP Version Not Supported",
};

/** Fields the server sets itself from how it frames the response. */
const FRAMING_FIELDS = new Set(["connection", "content-length", "transfer-encoding", "keep-alive"]);

/**
 * A response head with a Content-Length body (`length` undefined: none, as for 1xx, 204 and 304) and
 * `Connection: close` when `close`.
 */
export function responseHead(
  status: number,
  fields: Iterable<readonly [string, string]>,
  options: { readonly length: number | undefined; readonly close: boolean },
): string {
  let head = `HTTP/1.1 ${status} ${REASONS[status] ?? ""}\r\n`;
  for (const [name, value] of fields) {
    if (!FRAMING_FIELDS.has(name.toLowerCase())) head += `${name}: ${value}\r\n`;
  }
  if (options.length !== undefined) head += `content-length: ${options.length}\r\n`;
  if (options.close) head += "connection: close\r\n";
  return head + "\r\n";
}
