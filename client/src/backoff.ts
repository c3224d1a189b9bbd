/**
 * The wait before reconnect attempt `attempt` (0 for the first), in milliseconds: "full jitter" exponential
 * backoff, a uniformly random time between `minMs` and `min(maxMs, minMs × 2^(attempt + 1))`. Random spread keeps many
 * clients that lost the same server from coming back in step.
 */
export function backoffDelay(attempt: number, minMs: number, maxMs: number, random: () => number): number {
  const ceiling = Math.min(maxMs, minMs * 2 ** Math.min(attempt + 1, 30));
  return Math.round(minMs + random() * Math.max(0, ceiling - minMs));
}
