/**
 * Reconnect delays: exponential with full jitter, so a fleet of clients dropped at once (a gateway dies) does not
 * come back at once.
 */

export interface BackoffOptions {
  /** The first retry's upper bound (ms). */
  first: number;
  /** The longest delay (ms). */
  max: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = { first: 500, max: 15_000 };

/**
 * The delay before retry number `attempt` (0 for the first): uniformly random in [bound/2, bound], where the
 * bound doubles from `first` each attempt up to `max`. Half the bound is kept so a retry is never instant.
 */
export function backoffDelay(
  attempt: number,
  options: BackoffOptions = DEFAULT_BACKOFF,
  random: () => number = Math.random,
): number {
  const bound = Math.min(options.max, options.first * 2 ** Math.min(attempt, 30));
  return Math.round(bound / 2 + random() * (bound / 2));
}
