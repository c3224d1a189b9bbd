/// <reference types="@types/bun" />
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { PageAssets } from "./app.ts";

const HERE = dirname(fileURLToPath(import.meta.url));
const PAGE_DIR = join(HERE, "..", "browser");
const SDK_ENTRY = join(HERE, "..", "..", "client", "src", "index.ts");

/**
 * The page from examples/browser/, and the SDK bundled from client/src on each request (a few milliseconds, so an
 * edit shows on reload) with the flags of `bun client/build.ts`, which writes client/dist/shoal-client.min.js. A
 * real app serves that file with its other static assets instead.
 */
export const pageAssets: PageAssets = {
  file(name) {
    return new Response(Bun.file(join(PAGE_DIR, name)));
  },
  async sdk() {
    const headers = { "content-type": "text/javascript; charset=utf-8", "cache-control": "no-cache" };
    try {
      const build = await Bun.build({ entrypoints: [SDK_ENTRY], format: "esm", minify: true, target: "browser" });
      return new Response(await build.outputs[0].text(), { headers });
    } catch (error) {
      console.error(`building the SDK failed: ${error}`);
      return new Response(`throw new Error("building the SDK from client/src failed: see the service's output");`, {
        status: 500,
        headers,
      });
    }
  },
};
