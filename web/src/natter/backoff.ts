/**
 * Retry delays: the one helper every retry of the client goes through (reconnects, joins, sends, history, read
 * cursors, session calls). Exponential and capped; jittered where many clients may retry together, so a fleet
 * dropped at once (a gateway dies) does not come back at once.
 */

export interface BackoffOptions {
  /** The first retry's bound (ms). */
  first: number;
  /** The largest bound (ms). */
  max: number;
  /**
   * Where the delay falls, as fractions of the bound: uniformly random in [bound × low, bound × high]. The default
   * [0.5, 1] keeps half the bound, so a retry is never instant; [1, 1] is no jitter at all.
   */
  jitter?: readonly [low: number, high: number];
}

/** The delay is the bound itself. */
export const NO_JITTER = [1, 1] as const;

/** Reconnects: within 0.5 s, the bound doubling to 15 s. */
export const DEFAULT_BACKOFF: BackoffOptions = { first: 500, max: 15_000 };

const HALF_JITTER = [0.5, 1] as const;

/**
 * The delay before retry number `attempt` (0 for the first), in whole milliseconds: the bound doubles from
 * `first` each attempt up to `max`, and the delay falls within it as `jitter` says.
 */
export function backoffDelay(
  attempt: number,
  options: BackoffOptions = DEFAULT_BACKOFF,
  random: () => number = Math.random,
): number {
  const bound = Math.min(options.max, options.first * 2 ** Math.min(attempt, 30));
  const [low, high] = options.jitter ?? HALF_JITTER;
  if (low === high) return Math.round(bound * low);
  return Math.round(bound * low + random() * bound * (high - low));
}

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
