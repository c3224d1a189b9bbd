import type { Hono } from "hono";
import { CONSOLE_PAGE } from "./console_page.generated.ts";

/**
 * `GET /console` (README, "Console"): the browser console, when `console.enabled`; built from the client SDK by
 * scripts/build_console.ts into one self-contained page (its CSP lets only its own inline script and style run).
 * Off, a plain 404 (a WebSocket upgrade on the path still reaches the WebSocket endpoint, as on any path).
 */
export function addConsoleRoute(app: Hono, enabled: boolean): void {
  app.get("/console", async (c, next) => {
    if (c.req.header("upgrade")?.toLowerCase() === "websocket") return await next();
    if (!enabled) return c.json({ status: "error", error: "Not found: the console is off (console.enabled)." }, 404);
    return c.html(CONSOLE_PAGE.html, 200, {
      "content-security-policy": CONSOLE_PAGE.csp,
      "x-content-type-options": "nosniff",
      "referrer-policy": "no-referrer",
      "cache-control": "no-cache",
    });
  });
}
