/**
 * `ws.allowedOrigins`: which browser origins may open a WebSocket (against cross-site WebSocket hijacking).
 * Entries are exact origins (`https://app.example.com`) or have a `*.` wildcard for one or more leading host
 * labels (`https://*.example.com` matches `https://a.example.com` and `https://a.b.example.com`, not
 * `https://example.com`). Scheme, host and port must all match; comparison ignores case.
 */
export class OriginPolicy {
  readonly #exact = new Set<string>();
  /** `scheme://` and the `.rest` a wildcard host must end with (port included). */
  readonly #wildcards: { readonly scheme: string; readonly suffix: string }[] = [];

  constructor(allowed: readonly string[]) {
    for (const entry of allowed) {
      const origin = entry.toLowerCase().replace(/\/+$/, "");
      const star = origin.indexOf("://*.");
      if (star < 0) this.#exact.add(origin);
      else this.#wildcards.push({ scheme: origin.slice(0, star + 3), suffix: origin.slice(star + 4) });
    }
  }

  /** Whether a request's `Origin` header is allowed; no header means not a browser, which is allowed. */
  allows(origin: string | undefined): boolean {
    if (origin === undefined) return true;
    const value = origin.toLowerCase();
    if (this.#exact.has(value)) return true;
    for (const { scheme, suffix } of this.#wildcards) {
      if (!value.startsWith(scheme) || !value.endsWith(suffix)) continue;
      const labels = value.slice(scheme.length, value.length - suffix.length);
      // At least one label before the suffix, and nothing that would change scheme, port or path.
      if (labels !== "" && /^[a-z0-9-]+(?:\.[a-z0-9-]+)*$/.test(labels)) return true;
    }
    return false;
  }
}
