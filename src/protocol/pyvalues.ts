/**
 * SocketShark is Python: these helpers reproduce the few Python value semantics that are visible on the wire
 * (truthiness, `==` between JSON values, `float()` of an option, dict keys, `datetime.fromisoformat`).
 */

/** Python truthiness of a JSON value: null, false, 0, "", [] and {} are falsy. */
export function truthy(value: unknown): boolean {
  if (value === null || value === undefined || value === false || value === 0 || value === "") return false;
  if (Array.isArray(value)) return value.length > 0;
  if (typeof value === "object") return Object.keys(value as object).length > 0;
  return true;
}

/** Python `==` between two JSON values: `true == 1 == 1.0`, `"1" != 1`, deep for lists and objects. */
export function pyEquals(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (a === undefined) a = null;
  if (b === undefined) b = null;
  if (a === null || b === null) return a === b;
  const na = numeric(a);
  const nb = numeric(b);
  if (na !== undefined && nb !== undefined) return na === nb;
  if (typeof a !== typeof b) return false;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    return a.every((item, i) => pyEquals(item, b[i]));
  }
  if (typeof a === "object" && !Array.isArray(b)) {
    const ka = Object.keys(a as object);
    const ob = b as Record<string, unknown>;
    if (ka.length !== Object.keys(ob).length) return false;
    return ka.every((k) => Object.hasOwn(ob, k) && pyEquals((a as Record<string, unknown>)[k], ob[k]));
  }
  return false;
}

function numeric(value: unknown): number | undefined {
  if (typeof value === "number") return value;
  if (typeof value === "boolean") return value ? 1 : 0;
  return undefined;
}

// Python float() literal: optional sign, digits with single underscores between them, fraction, exponent;
// or nan/inf/infinity in any case. Surrounding whitespace is allowed.
const FLOAT_LITERAL = /^[+-]?(?:(?:\d(?:_?\d)*)?\.?\d(?:_?\d)*|\d(?:_?\d)*\.)(?:[eE][+-]?\d(?:_?\d)*)?$/;
const FLOAT_SPECIAL = /^[+-]?(?:nan|inf|infinity)$/i;

/**
 * Python `float(value)` for a JSON value, or undefined where Python raises. Shoal treats non-finite results
 * as invalid too (decision 11), so this returns only finite numbers.
 */
export function finiteFloat(value: unknown): number | undefined {
  let result: number | undefined;
  if (typeof value === "number") result = value;
  else if (typeof value === "boolean") result = value ? 1 : 0;
  else if (typeof value === "string") {
    const text = value.trim();
    if (FLOAT_SPECIAL.test(text)) return undefined;
    if (FLOAT_LITERAL.test(text)) result = Number(text.replaceAll("_", ""));
  }
  return result !== undefined && Number.isFinite(result) ? result : undefined;
}

/**
 * The dict key Python would use for a hashable JSON scalar (`1`, `1.0` and `true` are one key), or undefined
 * for lists and objects, which Python cannot hash.
 */
export function hashKey(value: unknown): string | undefined {
  if (value === null || value === undefined) return "null";
  if (typeof value === "string") return "s" + value;
  const n = numeric(value);
  if (n !== undefined) return "n" + String(n);
  return undefined;
}

const ISO_DATETIME =
  /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2})(?::?(\d{2})(?::?(\d{2})(?:[.,](\d{1,9}))?)?)?(Z|[+-]\d{2}(?::?\d{2}(?::?\d{2}(?:\.\d{1,6})?)?)?)?)?$/;

/**
 * Whether a string is an ISO-8601 date or date-time as Python's `datetime.fromisoformat` reads it (3.11+).
 * Shoal passes a valid `published_at` through unchanged rather than re-formatting it.
 */
export function isIsoDateTime(text: string): boolean {
  const m = ISO_DATETIME.exec(text);
  if (!m) return false;
  const [year, month, day] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (year < 1 || month < 1 || month > 12 || day < 1) return false;
  const daysInMonth = new Date(Date.UTC(2000, month, 0)).getUTCDate(); // leap-year safe for Feb 29 below
  if (day > (month === 2 ? (isLeap(year) ? 29 : 28) : daysInMonth)) return false;
  if (m[4] !== undefined && Number(m[4]) > 23) return false;
  if (m[5] !== undefined && Number(m[5]) > 59) return false;
  if (m[6] !== undefined && Number(m[6]) > 59) return false;
  if (m[8] !== undefined && m[8] !== "Z" && Number(m[8].slice(1, 3)) > 23) return false;
  return true;
}

function isLeap(year: number): boolean {
  return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
}

/** `str[:n]` in Python counts code points, not UTF-16 units. */
export function sliceCodePoints(text: string, n: number): string {
  if (text.length <= n) return text;
  let end = 0;
  let count = 0;
  for (const ch of text) {
    if (count === n) break;
    end += ch.length;
    count++;
  }
  return text.slice(0, end);
}
