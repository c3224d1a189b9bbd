/**
 * A small Dockerfile reader for tests that check the image without a Docker engine: instructions per stage, the
 * final stage's environment, entrypoint and health check.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { REPO_ROOT } from "./shoal_process.ts";

/** One instruction: its keyword in upper case and the rest of its (joined) line. */
export interface Instruction {
  readonly keyword: string;
  readonly args: string;
}

/** The instructions of each build stage, from each `FROM` to the next. */
export function parseDockerfile(text: string): Instruction[][] {
  const stages: Instruction[][] = [];
  let pending = "";
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (pending === "" && (line === "" || line.startsWith("#"))) continue;
    if (line.startsWith("#")) continue; // a comment inside a continued instruction
    if (line.endsWith("\\")) {
      pending += `${line.slice(0, -1)} `;
      continue;
    }
    const whole = (pending + line).trim();
    pending = "";
    if (whole === "") continue;
    const keyword = whole.split(/\s+/, 1)[0];
    const instruction = { keyword: keyword.toUpperCase(), args: whole.slice(keyword.length).trim() };
    if (instruction.keyword === "FROM") stages.push([]);
    if (stages.length === 0) throw new Error(`instruction before FROM: ${whole}`);
    stages.at(-1)!.push(instruction);
  }
  return stages;
}

/** The variables an `ENV` instruction sets (`KEY=VALUE …`, values optionally quoted; or the old `KEY VALUE`). */
export function envOf(args: string): Record<string, string> {
  const env: Record<string, string> = {};
  if (!/^[A-Za-z_][A-Za-z0-9_]*=/.test(args)) {
    const [key, ...value] = args.split(/\s+/);
    env[key] = value.join(" ");
    return env;
  }
  for (const match of args.matchAll(/([A-Za-z_][A-Za-z0-9_]*)=("(?:[^"\\]|\\.)*"|'[^']*'|\S*)/g)) {
    const value = match[2];
    env[match[1]] = /^["']/.test(value) ? value.slice(1, -1) : value;
  }
  return env;
}

/** An exec-form (JSON array) command, or undefined for the shell form. */
export function execForm(args: string): string[] | undefined {
  if (!args.startsWith("[")) return undefined;
  const parsed = JSON.parse(args);
  if (!Array.isArray(parsed) || !parsed.every((part) => typeof part === "string")) return undefined;
  return parsed;
}

/** What the tests need of the repository's Dockerfile. */
export interface ImageFacts {
  /** Every stage's instructions. */
  readonly stages: Instruction[][];
  /** The final stage's environment (its ENV instructions, in order). */
  readonly env: Readonly<Record<string, string>>;
  /** The final stage's ENTRYPOINT, exec form. */
  readonly entrypoint: readonly string[] | undefined;
  /** The HEALTHCHECK's `CMD`, exec form, and its options (`--interval=10s` …). */
  readonly healthcheck:
    | { readonly options: readonly string[]; readonly cmd: readonly string[] | undefined }
    | undefined;
}

/** Read and parse `Dockerfile` at the repository root. */
export function imageFacts(path = join(REPO_ROOT, "Dockerfile")): ImageFacts {
  const stages = parseDockerfile(readFileSync(path, "utf8"));
  const final = stages.at(-1) ?? [];
  const env: Record<string, string> = {};
  for (const { keyword, args } of final) if (keyword === "ENV") Object.assign(env, envOf(args));
  const entry = final.findLast((i) => i.keyword === "ENTRYPOINT");
  const health = final.findLast((i) => i.keyword === "HEALTHCHECK");
  let healthcheck: ImageFacts["healthcheck"];
  if (health) {
    const at = health.args.search(/\bCMD\b/);
    const options = at < 0 ? [] : health.args.slice(0, at).trim().split(/\s+/).filter((o) => o !== "");
    healthcheck = { options, cmd: at < 0 ? undefined : execForm(health.args.slice(at + 3).trim()) };
  }
  return { stages, env, entrypoint: entry ? execForm(entry.args) : undefined, healthcheck };
}
