// Builds the browser bundle of the client SDK: client/dist/shoal-client.min.js (one minified ES module, no
// dependencies) and prints its size, raw and gzipped. Run from anywhere with Bun or Deno:
//   bun client/build.ts [--types]        deno run -A client/build.ts [--types]
// It runs `bun build` (Bun from the repository's node_modules, else from PATH). With --types it also writes the
// npm package's declarations to client/dist/types/ with TypeScript's tsc (node_modules, else `npx typescript`).
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "..");
const entry = join(here, "src", "index.ts");
const outfile = join(here, "dist", "shoal-client.min.js");
const localBun = join(root, "node_modules", ".bin", "bun");
const bun = existsSync(localBun) ? localBun : "bun";

const result = spawnSync(bun, ["build", entry, "--minify", "--format", "esm", "--target", "browser", "--outfile", outfile], {
  stdio: "inherit",
});
if (result.status !== 0) {
  console.error(`client/build.ts: bun build failed${result.error ? `: ${result.error.message}` : ""}`);
  process.exit(1);
}
const bundle = readFileSync(outfile);
const text = bundle.toString("utf8");
// The bundle must run in a browser: nothing from node:, Deno. or Bun.
const forbidden = [/\bfrom\s*["']node:/, /\brequire\(/, /\bDeno\./, /\bBun\./].filter((pattern) => pattern.test(text));
if (forbidden.length > 0) {
  console.error(`client/build.ts: the bundle is not browser-safe: it matches ${forbidden.join(", ")}`);
  process.exit(1);
}
const gzipped = gzipSync(bundle, { level: 9 }).length;
const kib = (bytes: number) => `${(bytes / 1024).toFixed(1)} KiB`;
console.log(`${relative(process.cwd(), outfile)}: ${bundle.length} bytes (${kib(bundle.length)}), ${gzipped} bytes gzipped (${kib(gzipped)})`);

if (process.argv.includes("--types")) {
  const types = join(here, "dist", "types");
  rmSync(types, { recursive: true, force: true });
  const localTsc = join(root, "node_modules", ".bin", "tsc");
  const [cmd, ...args] = existsSync(localTsc) ? [localTsc] : ["npx", "--yes", "-p", "typescript@5.9.3", "tsc"];
  const tsc = spawnSync(cmd, [...args, "-p", join(here, "tsconfig.build.json")], { stdio: "inherit" });
  if (tsc.status !== 0) {
    console.error(`client/build.ts: tsc failed${tsc.error ? `: ${tsc.error.message}` : ""}`);
    process.exit(1);
  }
  // The sources import "./x.ts" (Deno and Bun run them as they are); declarations name "./x.js", which resolves
  // to ./x.d.ts under every moduleResolution.
  for (const name of readdirSync(types)) {
    const path = join(types, name);
    writeFileSync(path, readFileSync(path, "utf8").replace(/(from\s+["']\.{1,2}\/[^"']+)\.ts(["'])/g, "$1.js$2"));
  }
  console.log(`${relative(process.cwd(), types)}: ${readdirSync(types).length} declaration files`);
}
