/**
 * Deepest nesting of arrays and objects Shoal accepts in any JSON it parses from outside (client frames, published
 * messages, service answers). `JSON.parse` takes 100,000 levels, but serializing or walking such a value overflows
 * the stack; bounding it where it enters means the core never meets one. Python's own parser stops near 1,000.
 */
export const MAX_JSON_DEPTH = 128;

/** Why a text was refused: not JSON at all, or JSON nested deeper than the limit. */
export type JsonRefusal = "invalid" | "too deep";

export type JsonResult = { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly reason: JsonRefusal };

/** `JSON.parse` that refuses values nested deeper than `maxDepth` (checked first, in one pass over the text). */
export function parseJson(text: string, maxDepth: number = MAX_JSON_DEPTH): JsonResult {
  if (jsonDepthExceeds(text, maxDepth)) return { ok: false, reason: "too deep" };
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch {
    return { ok: false, reason: "invalid" };
  }
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;

/**
 * Whether brackets outside strings nest deeper than `maxDepth`. Linear and allocation-free; it does not validate
 * (unbalanced text is left for `JSON.parse` to refuse).
 */
export function jsonDepthExceeds(text: string, maxDepth: number): boolean {
  // Each level needs its own opening bracket: a shorter text cannot go deeper.
  if (text.length <= maxDepth) return false;
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === BACKSLASH) i++;
      else if (c === QUOTE) inString = false;
    } else if (c === QUOTE) {
      inString = true;
    } else if (c === OPEN_ARRAY || c === OPEN_OBJECT) {
      if (++depth > maxDepth) return true;
    } else if (c === CLOSE_ARRAY || c === CLOSE_OBJECT) {
      depth--;
    }
  }
  return false;
}

/** What one JSON object, array or element costs in memory once parsed, beyond its text, in bytes (estimated). */
const NODE_BYTES = 32;
const COMMA = 0x2c;

/**
 * Estimated memory of a JSON frame once parsed: its length plus `NODE_BYTES` for every `{`, `[` and `,` (counted
 * in strings too, which only overestimates). Dense text such as `[{},{},…]` parses into many times its own size,
 * so a budget of queued frames counted by length alone would not bound memory.
 */
export function parsedWeight(frame: string | ArrayBuffer | Uint8Array): number {
  let nodes = 0;
  if (typeof frame === "string") {
    for (let i = 0; i < frame.length; i++) {
      const c = frame.charCodeAt(i);
      if (c === COMMA || c === OPEN_ARRAY || c === OPEN_OBJECT) nodes++;
    }
    return frame.length + nodes * NODE_BYTES;
  }
  const bytes = frame instanceof Uint8Array ? frame : new Uint8Array(frame);
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes[i];
    if (c === COMMA || c === OPEN_ARRAY || c === OPEN_OBJECT) nodes++;
  }
  return bytes.length + nodes * NODE_BYTES;
}
