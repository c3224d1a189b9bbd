const encoder = new TextEncoder();

/**
 * Whether a frame or string is longer than `max` bytes in UTF-8, encoding a string only when its length leaves the
 * answer open (every UTF-16 unit is 1 to 3 bytes).
 */
export function utf8Exceeds(data: string | ArrayBuffer | Uint8Array, max: number): boolean {
  if (typeof data !== "string") return data.byteLength > max;
  if (data.length > max) return true;
  if (data.length * 3 <= max) return false;
  return encoder.encode(data).byteLength > max;
}
