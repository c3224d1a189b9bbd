// No import cycle anywhere in src/, type-only imports included: each part can be built and tested alone.
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const SRC = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..", "src");

/** Every .ts file under a folder. */
function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? sources(join(dir, entry.name)) : entry.name.endsWith(".ts") ? [join(dir, entry.name)] : []
  );
}

/** The relative modules a file imports or re-exports (static `import`/`export … from`, `import type` too). */
export function relativeImports(file: string, text: string): string[] {
  const found: string[] = [];
  for (const match of text.matchAll(/^\s*(?:import|export)\b[^;]*?\bfrom\s+["'](\.{1,2}\/[^"']+)["']/gms)) {
    found.push(resolve(dirname(file), match[1]));
  }
  for (const match of text.matchAll(/import\(\s*["'](\.{1,2}\/[^"']+)["']\s*\)/g)) found.push(resolve(dirname(file), match[1]));
  return found;
}

/** The cycles of a graph, each as the list of its nodes (one per strongly connected group, by depth-first search). */
export function findCycles(graph: ReadonlyMap<string, readonly string[]>): string[][] {
  const cycles: string[][] = [];
  const state = new Map<string, "visiting" | "done">();
  const stack: string[] = [];
  const visit = (node: string) => {
    state.set(node, "visiting");
    stack.push(node);
    for (const next of graph.get(node) ?? []) {
      if (state.get(next) === "visiting") cycles.push([...stack.slice(stack.indexOf(next)), next]);
      else if (!state.has(next)) visit(next);
    }
    stack.pop();
    state.set(node, "done");
  };
  for (const node of graph.keys()) if (!state.has(node)) visit(node);
  return cycles;
}

test("findCycles: finds a cycle through type-only imports, and none in a tree", () => {
  const text = 'import type { A } from "./a.ts";\nexport { B } from "./b.ts";\nimport {\n  C,\n} from "../c.ts";';
  assert.deepEqual(relativeImports("/x/y.ts", text), ["/x/a.ts", "/x/b.ts", "/c.ts"]);
  assert.deepEqual(findCycles(new Map([["a", ["b"]], ["b", ["c"]], ["c", []]])), []);
  assert.deepEqual(findCycles(new Map([["a", ["b"]], ["b", ["a"]]])), [["a", "b", "a"]]);
});

test("src/ has no import cycle, type-only imports included", () => {
  const graph = new Map<string, string[]>();
  for (const file of sources(SRC)) graph.set(file, relativeImports(file, readFileSync(file, "utf8")));
  const cycles = findCycles(graph).map((cycle) => cycle.map((f) => relative(SRC, f)).join(" → "));
  assert.deepEqual(cycles, [], `import cycles:\n${cycles.join("\n")}`);
});
