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

// nan/inf/infinity in any case, with an optional sign.
const FLOAT_SPECIAL = /^[+-]?(?:nan|inf|infinity)$/i;

/** Python `float(value)` for a JSON value, NaN and infinities included, or undefined where Python raises. */
export function pyFloat(value: unknown): number | undefined {
  if (typeof value === "number") return value;
  if (typeof value === "boolean") return value ? 1 : 0;
  if (typeof value !== "string") return undefined;
  const text = value.trim();
  if (FLOAT_SPECIAL.test(text)) {
    const lower = text.toLowerCase();
    if (lower.endsWith("nan")) return NaN;
    return lower.startsWith("-") ? -Infinity : Infinity;
  }
  return isFloatLiteral(text) ? Number(text.replaceAll("_", "")) : undefined;
}

/**
 * Python's float() literal: optional sign, digits with single underscores between them, an optional fraction
 * (digits on at least one side of the point) and an optional exponent. A single left-to-right scan: a
 * backtracking regex for this grammar takes quadratic time on a long run of digits that ends badly.
 */
function isFloatLiteral(text: string): boolean {
  let i = text[0] === "+" || text[0] === "-" ? 1 : 0;
  const digitsFrom = (start: number): number => {
    let j = start;
    while (isDigit(text, j)) {
      j++;
      if (text[j] === "_" && isDigit(text, j + 1)) j++;
    }
    return j;
  };
  let end = digitsFrom(i);
  let digits = end - i;
  i = end;
  if (text[i] === ".") {
    end = digitsFrom(i + 1);
    digits += end - i - 1;
    i = end;
  }
  if (digits === 0) return false;
  if (text[i] === "e" || text[i] === "E") {
    let start = i + 1;
    if (text[start] === "+" || text[start] === "-") start++;
    end = digitsFrom(start);
    if (end === start) return false;
    i = end;
  }
  return i === text.length;
}

function isDigit(text: string, i: number): boolean {
  const c = text.charCodeAt(i);
  return c >= 0x30 && c <= 0x39;
}

/** `float(value)` restricted to finite results: Shoal treats NaN and infinities as invalid (decision 11). */
export function finiteFloat(value: unknown): number | undefined {
  const result = pyFloat(value);
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

// datetime.fromisoformat (3.11): extended or basic dates, ISO week dates, any one-character separator, times of
// HH[:MM[:SS[.fff]]] (or basic), and Z or ±HH[:MM[:SS[.ffffff]]] offsets.
const ISO_DATE = /^(\d{4})(?:-(\d{2})-(\d{2})|(\d{2})(\d{2})|-?W(\d{2})(?:-?([1-7]))?)/;
const ISO_TIME =
  /^(\d{2})(?:(:?)(\d{2})(?:\2(\d{2})(?:[.,]\d{1,9})?)?)?(?:Z|[+-](\d{2})(?::?\d{2}(?::?\d{2}(?:\.\d{1,6})?)?)?)?$/;

/**
 * Whether a string is an ISO-8601 date or date-time as Python's `datetime.fromisoformat` (3.11+) reads it.
 * Shoal passes a valid `published_at` through unchanged rather than re-formatting it.
 */
export function isIsoDateTime(text: string): boolean {
  const date = ISO_DATE.exec(text);
  if (!date) return false;
  const year = Number(date[1]);
  if (year < 1) return false;
  if (date[6] !== undefined) {
    const week = Number(date[6]);
    if (week < 1 || week > isoWeeks(year)) return false;
  } else {
    const month = Number(date[2] ?? date[4]);
    const day = Number(date[3] ?? date[5]);
    const days = [31, isLeap(year) ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if (month < 1 || month > 12 || day < 1 || day > days[month - 1]) return false;
  }
  const rest = text.slice(date[0].length);
  if (rest === "") return true;
  const time = ISO_TIME.exec([...rest].slice(1).join("")); // the separator is any single character
  if (!time) return false;
  if (Number(time[1]) > 23 || Number(time[3] ?? 0) > 59 || Number(time[4] ?? 0) > 59) return false;
  if (time[5] !== undefined && Number(time[5]) > 23) return false;
  return true;
}

/** ISO years have 53 weeks when they start on a Thursday, or on a Wednesday in a leap year. */
function isoWeeks(year: number): number {
  const jan1 = new Date(Date.UTC(2000, 0, 1));
  jan1.setUTCFullYear(year, 0, 1);
  const weekday = jan1.getUTCDay();
  return weekday === 4 || (weekday === 3 && isLeap(year)) ? 53 : 52;
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
