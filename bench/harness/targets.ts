import type { WireProtocol } from "../load/messages.ts";
import type { PublisherKind } from "../peers/publish.ts";

/** Executables the targets run with. */
export interface Tools {
  readonly bun: string;
  readonly deno: string;
  readonly node: string;
  /** The `bun build --compile` executable of Shoal. */
  readonly binary: string;
  /** With `--profile DIR`: shoal-bun and shoal-deno write a CPU profile (Markdown) there when they exit. */
  readonly profileDir?: string;
}

export type TargetName = "bun-limit" | "node-ws" | "socketio" | "shoal-bun" | "shoal-deno" | "shoal-binary";

/** A server the benchmark compares: how to start it and how clients and the publisher talk to it. */
export interface Target {
  readonly name: TargetName;
  readonly protocol: WireProtocol;
  readonly publisher: PublisherKind;
  /** Shoal reads a config module; the peers take PORT and REDIS_URL only. */
  readonly shoal: boolean;
  /** The `message` of its ready line (which also carries `port`). */
  readonly readyMessage: string;
  command(tools: Tools, configPath: string): string[];
}

const peer = (name: TargetName, protocol: WireProtocol, publisher: PublisherKind, command: (t: Tools) => string[]) =>
  ({ name, protocol, publisher, shoal: false, readyMessage: "ready", command }) satisfies Target;

const shoal = (name: TargetName, command: (t: Tools, config: string) => string[]) =>
  ({ name, protocol: "shoal", publisher: "redis", shoal: true, readyMessage: "shoal ready", command }) satisfies Target;

/** Every target, in report order; `bun-limit` is the reference the ratios divide by. */
export const TARGETS: readonly Target[] = [
  peer("bun-limit", "shoal", "redis", (t) => [t.bun, "run", "bench/peers/bun_limit.ts"]),
  peer("node-ws", "shoal", "redis", (t) => [t.node, "bench/peers/node_ws.mjs"]),
  peer("socketio", "socketio", "socketio", (t) => [t.node, "bench/peers/socketio.mjs"]),
  shoal("shoal-bun", (t, config) => [t.bun, ...profileFlags(t), "run", "main.ts", "-c", config]),
  shoal("shoal-deno", (t, config) => [t.deno, "run", "-A", ...profileFlags(t), "main.ts", "-c", config]),
  shoal("shoal-binary", (t, config) => [t.binary, "-c", config]),
];

/** Bun and Deno spell their CPU-profile flags alike. */
function profileFlags(t: Tools): string[] {
  return t.profileDir ? ["--cpu-prof-md", `--cpu-prof-dir=${t.profileDir}`, "--cpu-prof-interval=250"] : [];
}

export function targetNamed(name: string): Target {
  const target = TARGETS.find((t) => t.name === name);
  if (!target) throw new Error(`unknown peer ${JSON.stringify(name)}; known: ${TARGETS.map((t) => t.name).join(", ")}`);
  return target;
}
