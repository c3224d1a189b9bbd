import type { PresenceChange, PresenceExpiry, PresenceSnapshot } from "../core/presence_tracker.ts";
import type { Appended, HistoryOptions, HistoryState } from "./broker.ts";
import {
  historyKeys,
  historyPublishScript,
  historyReadScript,
  type LuaScript,
  parseAppended,
  parseHistoryState,
  publishArgs,
  type PublishCommand,
  readArgs,
  scriptKeys,
  sharesChannelSlot,
} from "./history_script.ts";
import {
  parsePresenceRead,
  parsePresenceUpdate,
  presenceKeys,
  presencePurgeScript,
  presenceUpdateArgs,
  presenceUpdateScript,
  presenceValuesScript,
} from "./presence_script.ts";

/** How a Redis (a server, a cluster, Upstash's REST API) runs what the store asks of it. */
export interface ScriptRunner {
  /** EVALSHA, falling back to EVAL when the script is not loaded. */
  evalScript(script: LuaScript, keys: string[], args: string[]): Promise<unknown>;
  /** HVALS, when the connection has it (else a script reads the values). */
  hashValues?(key: string): Promise<string[]>;
}

/**
 * Histories (extension E1) and presence (E3) kept in Redis by the Lua scripts of `history_script.ts` and
 * `presence_script.ts`: one home for what the redis and upstash brokers do the same way. Channels are full Redis
 * channel names (prefix included).
 */
export class ScriptStore {
  readonly #runner: ScriptRunner;
  readonly #publishCommand: PublishCommand;

  constructor(runner: ScriptRunner, publishCommand: PublishCommand) {
    this.#runner = runner;
    this.#publishCommand = publishCommand;
  }

  /** Append and publish in one script (scripts/shoal_history_publish.lua). */
  async append(
    channel: string,
    payload: string,
    history: HistoryOptions & { readonly idempotencyKey?: string },
  ): Promise<Appended> {
    const args = publishArgs(channel, payload, history, this.#publishCommand);
    return parseAppended(await this.#runner.evalScript(historyPublishScript, this.#historyKeys(channel), args));
  }

  async history(channel: string, history: HistoryOptions, since?: number): Promise<HistoryState> {
    const keys = this.#historyKeys(channel);
    return parseHistoryState(await this.#runner.evalScript(historyReadScript, keys, readArgs(history, since)));
  }

  /** A hash and a sorted set per subscription, written by the update script in batches. */
  async updatePresence(
    channel: string,
    change: PresenceChange,
  ): Promise<PresenceExpiry & { readonly restored: readonly string[] }> {
    const keys = presenceKeys(channel);
    const replies: unknown[] = [];
    for (const args of presenceUpdateArgs(change)) {
      replies.push(await this.#runner.evalScript(presenceUpdateScript, [keys.entries, keys.expiries], args));
    }
    return parsePresenceUpdate(replies);
  }

  async readPresence(channel: string): Promise<PresenceSnapshot & PresenceExpiry> {
    const keys = presenceKeys(channel);
    // The purge first: what HVALS then returns is every live entry (one round trip more than a script doing both,
    // and a third of the Redis time for a large room: values through Lua cost more than the plain command).
    const purged = await this.#runner.evalScript(presencePurgeScript, [keys.entries, keys.expiries], []);
    const values = this.#runner.hashValues
      ? await this.#runner.hashValues(keys.entries)
      : await this.#runner.evalScript(presenceValuesScript, [keys.entries], []);
    return parsePresenceRead(purged, values);
  }

  #historyKeys(channel: string): string[] {
    // Refused before the script would: a subscribe fails at once rather than every later append.
    if (this.#publishCommand === "SPUBLISH" && !sharesChannelSlot(channel)) {
      throw new Error(`no history for channel ${JSON.stringify(channel)} with SPUBLISH: a "}" needs a hash tag`);
    }
    return scriptKeys(historyKeys(channel));
  }
}
