/**
 * The signed-in user's account: their sessions (one per signed-in device or browser), ending them, and changing
 * the password.
 *
 * Ending a session is recorded by the API before the gateways are told; when they could not be told yet the API
 * answers 503 `unavailable` and asking again completes it (ending an ended session tells them again). So those
 * answers are retried here, a few times, through the shared backoff.
 */

import { type Api, ApiError, type SessionInfo } from "./api";
import { type BackoffOptions, backoffDelay, sleep } from "./backoff";
import type { Session } from "./session";

/** Retries of a 503 `unavailable` answer: about 1, 2 and 4 seconds apart. */
const RETRIES = 3;
const RETRY_BACKOFF: BackoffOptions = { first: 1_000, max: 4_000 };

export class Account {
  private readonly token = () => this.session.accessToken();

  constructor(
    private readonly api: Api,
    private readonly session: Session,
  ) {}

  /** The user's live sessions: this one first, then the most recently used. */
  async sessions(): Promise<SessionInfo[]> {
    const list = await this.api.sessions(this.token);
    return [...list.filter((s) => s.current), ...list.filter((s) => !s.current)];
  }

  /** Ends another session: its device is signed out within seconds. */
  end(id: string): Promise<void> {
    return untilTold(() => this.api.endSession(this.token, id));
  }

  /** Ends every session but this one ("log out everywhere else"); returns how many it ended. */
  endOthers(): Promise<number> {
    return untilTold(() => this.api.endSessions(this.token, true));
  }

  /**
   * Changes the password; every other session is ended, this one goes on. Returns how many were ended (undefined
   * when the API changed it but could not say, and the ending was completed afterwards). Refusals
   * keep the API's codes: `wrong_password`, `invalid_password` (too short or too long), `no_password` (a guest).
   */
  async changePassword(currentPassword: string, newPassword: string): Promise<number | undefined> {
    try {
      return await this.api.changePassword(this.token, currentPassword, newPassword);
    } catch (err) {
      // Changed, and the other sessions ended, but their sockets were not told yet: finish as the API says.
      if (isUntold(err)) {
        await this.endOthers();
        return undefined;
      }
      throw err;
    }
  }
}

function isUntold(err: unknown): boolean {
  return err instanceof ApiError && err.status === 503 && err.code === "unavailable";
}

async function untilTold<T>(work: () => Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await work();
    } catch (err) {
      if (!isUntold(err) || attempt >= RETRIES) throw err;
      await sleep(backoffDelay(attempt, RETRY_BACKOFF));
    }
  }
}
