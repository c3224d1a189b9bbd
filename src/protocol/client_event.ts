import * as v from "valibot";
import { MAX_EVENT_LENGTH } from "./errors.ts";
import { parseJson } from "./json.ts";

/** The names of the client events Shoal handles. */
export type EventName = "auth" | "subscribe" | "message" | "unsubscribe" | "presence" | "ping";

/** A decoded client frame, checked only as far as the envelope; each event checks its own fields. */
export type ClientEvent =
  | { readonly kind: "undecodable" }
  | { readonly kind: "invalid" }
  | { readonly kind: "unknown"; readonly event: string }
  | { readonly kind: EventName; readonly fields: Readonly<Record<string, unknown>> };

const KNOWN = new Set<string>(["auth", "subscribe", "message", "unsubscribe", "presence", "ping"]);

// Python's len() counts code points, so the 40-character limit does too.
const Envelope = v.looseObject({
  event: v.pipe(v.string(), v.check((name) => codePointLength(name) <= MAX_EVENT_LENGTH)),
});

function codePointLength(text: string): number {
  if (text.length <= MAX_EVENT_LENGTH) return text.length;
  let n = 0;
  for (const _ of text) n++;
  return n;
}

/**
 * Decode one WebSocket frame. Text frames are JSON; binary frames are JSON in UTF-8 (a BOM is allowed) or
 * UTF-16, as Python's `json.loads` accepts them. A frame that does not decode is `undecodable`; one nested deeper
 * than `MAX_JSON_DEPTH` is `invalid`.
 */
export function parseClientEvent(frame: string | ArrayBuffer | Uint8Array): ClientEvent {
  const text = typeof frame === "string" ? frame : decodeBinary(frame instanceof Uint8Array ? frame : new Uint8Array(frame));
  if (text === undefined) return { kind: "undecodable" };
  const json = parseJson(text);
  // Nesting past the limit gets the same answer as a frame without a usable event (a contract error).
  if (!json.ok) return { kind: json.reason === "too deep" ? "invalid" : "undecodable" };
  const value = json.value;
  const envelope = v.safeParse(Envelope, value);
  if (!envelope.success) return { kind: "invalid" };
  const fields = envelope.output as Record<string, unknown> & { event: string };
  if (!KNOWN.has(fields.event)) return { kind: "unknown", event: fields.event };
  return { kind: fields.event as EventName, fields };
}

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false });
const utf16le = new TextDecoder("utf-16le", { fatal: true, ignoreBOM: false });
const utf16be = new TextDecoder("utf-16be", { fatal: true, ignoreBOM: false });

function decodeBinary(bytes: Uint8Array): string | undefined {
  try {
    // Python's json.detect_encoding: BOMs first, then the position of NUL bytes in the first two bytes.
    if (bytes[0] === 0xff && bytes[1] === 0xfe) return utf16le.decode(bytes);
    if (bytes[0] === 0xfe && bytes[1] === 0xff) return utf16be.decode(bytes);
    if (bytes.length >= 2 && bytes[0] !== 0 && bytes[1] === 0) return utf16le.decode(bytes);
    if (bytes.length >= 2 && bytes[0] === 0 && bytes[1] !== 0) return utf16be.decode(bytes);
    return utf8.decode(bytes);
  } catch {
    return undefined;
  }
}
