/**
 * Loading a config module: import it, apply the `SHOAL_*` environment, validate, and check the files it names.
 * Every failure is a `ConfigError` whose lines name the file, the key or the variable at fault, never a stack.
 */
import { accessSync, constants, existsSync, statSync } from "node:fs";
import { relative, resolve } from "node:path";
import process from "node:process";
import { fileURLToPath, pathToFileURL } from "node:url";
import { applyEnv } from "../config_env.ts";
import { type Config, ConfigError, parseConfig } from "../config.ts";
import { errorText } from "../log.ts";
import { JwtVerifier } from "../services/jwt_verifier.ts";

export interface LoadedConfig {
  readonly config: Config;
  /** The `SHOAL_*` variables that were applied. */
  readonly fromEnv: readonly string[];
}

/**
 * Import `path`, apply the environment, validate, and check that the files the config names can be read. The
 * caller applies its flags, then `checkExposure`.
 */
export async function loadConfig(path: string, env: (name: string) => string | undefined): Promise<LoadedConfig> {
  const exported = exportedConfig(path, await importModule(path));
  const { input, applied, origins } = applyEnv(exported, env);
  const config = parseConfig(input, origins);
  checkFiles(config);
  await checkJwtKey(config);
  return { config, fromEnv: applied };
}

async function importModule(path: string): Promise<Record<string, unknown>> {
  const file = resolve(path);
  if (!existsSync(file)) throw new ConfigError([`${path}: no such file`], "cannot load config");
  try {
    return await import(pathToFileURL(file).href);
  } catch (error) {
    throw new ConfigError([importProblem(path, error)], "cannot load config");
  }
}

/** The config a module exports: its default export (or `config`), which must be a plain object. */
function exportedConfig(path: string, module: Record<string, unknown>): Record<string, unknown> {
  const exported = "default" in module ? module.default : module.config;
  if (exported === undefined) {
    throw new ConfigError([`${path} has no default export: end it with \`export default { ... }\``]);
  }
  const proto = exported !== null && typeof exported === "object" ? Object.getPrototypeOf(exported) : undefined;
  if (proto !== Object.prototype && proto !== null) {
    throw new ConfigError([`${path}: the default export must be a plain object (the config), not ${describe(exported)}`]);
  }
  return exported as Record<string, unknown>;
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "function") return "a function (export the object it returns)";
  if (typeof (value as { then?: unknown })?.then === "function") {
    return "a Promise (use top-level await: `export default await makeConfig()`)";
  }
  if (typeof value === "object") {
    const name = (Object.getPrototypeOf(value) as { constructor?: { name?: string } })?.constructor?.name;
    return `${name ? `a ${name}` : "an object with a prototype"} (write the object literal itself)`;
  }
  return `a ${typeof value}`;
}

/**
 * One line for a module that cannot be imported: `file:line:column: message` for a syntax error on every
 * runtime (Bun reports an AggregateError of build messages; Deno a TypeError whose text carries the location).
 */
function importProblem(path: string, error: unknown): string {
  const build = buildMessage(error);
  if (build) {
    const { file, line, column, lineText } = build.position;
    const more = build.others > 0 ? ` (and ${build.others} more)` : "";
    return `${shown(file)}:${line}:${column}: syntax error: ${build.message}${more}${lineText ? `\n      ${lineText.trim()}` : ""}`;
  }
  const text = errorText(error);
  const located = /^(?:SyntaxError: )?(.*?)\n[\s\S]*?\bat (file:\/\/\/.+?):(\d+):(\d+)\s*$/.exec(text);
  if (located) {
    const [, message, url, line, column] = located;
    const source = /\n\s*\d+\s*\|\s*(.*)\n/.exec(text)?.[1];
    return `${shown(fileURLToPath(url))}:${line}:${column}: syntax error: ${message}${source ? `\n      ${source.trim()}` : ""}`;
  }
  return `${path}: ${text.split("\n")[0]}`;
}

interface BuildPosition {
  readonly file: string;
  readonly line: number;
  readonly column: number;
  readonly lineText?: string;
}

/** Bun's first build message with a position, if `error` is Bun's "N errors building" AggregateError. */
function buildMessage(error: unknown): { message: string; position: BuildPosition; others: number } | undefined {
  if (!(error instanceof AggregateError)) return undefined;
  const messages = error.errors.filter((e): e is { message: string; position: BuildPosition } =>
    typeof e?.message === "string" && typeof e?.position?.file === "string" && typeof e.position.line === "number"
  );
  if (messages.length === 0) return undefined;
  return { message: messages[0].message, position: messages[0].position, others: messages.length - 1 };
}

/** A path as the user would type it: relative to the working directory when inside it. */
function shown(file: string): string {
  const rel = relative(process.cwd(), file);
  return rel && !rel.startsWith("..") ? rel : file;
}

/** The files a config names must exist and be readable, checked up front so `--check` catches them too. */
export function checkFiles(config: Config): void {
  const files: [string, string | undefined][] = [
    ["ws.tls.cert", config.ws.tls?.cert],
    ["ws.tls.key", config.ws.tls?.key],
    ["http.caFile", config.http.caFile],
  ];
  const problems: string[] = [];
  for (const [key, file] of files) {
    if (file === undefined) continue;
    const problem = unreadable(file);
    if (problem) problems.push(`${key}: cannot read ${file}: ${problem}`);
  }
  if (problems.length > 0) throw new ConfigError(problems);
}

function unreadable(file: string): string | undefined {
  try {
    if (!statSync(file).isFile()) return "not a file";
    accessSync(file, constants.R_OK);
    return undefined;
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code === "ENOENT") return "no such file";
    if (code === "EACCES" || code === "EPERM") return "permission denied";
    return (error as Error).message;
  }
}

/** A JWT public key must import for every configured algorithm: checked up front, so `--check` catches it. */
async function checkJwtKey(config: Config): Promise<void> {
  const jwt = config.authentication.jwt;
  if (!jwt?.publicKey) return;
  try {
    await JwtVerifier.create(jwt);
  } catch (error) {
    throw new ConfigError([(error as Error).message]);
  }
}

/** The publish token of config.example.ts: published in the README, so never a secret. */
export const EXAMPLE_PUBLISH_TOKEN = "change-me";

/** True for addresses only this machine can reach. */
export function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || host === "[::1]" || /^127(?:\.\d{1,3}){3}$/.test(host);
}

/** The example's publish token may serve loopback only (a quick start), never an address others can reach. */
export function checkExposure(config: Config): void {
  if (config.publish.token !== EXAMPLE_PUBLISH_TOKEN || isLoopback(config.ws.host)) return;
  throw new ConfigError([
    `publish.token: the example token "${EXAMPLE_PUBLISH_TOKEN}" may not be used on ws.host ${config.ws.host}, which ` +
    "is not loopback: set SHOAL_PUBLISH_TOKEN (or publish.token) to a secret of your own, e.g. the output of " +
    "`openssl rand -hex 32`, or remove publish.token to turn POST /publish off",
  ]);
}
