/**
 * The signed-in session: access and refresh tokens, refreshed before the access token expires.
 *
 * Refresh tokens are single-use and a reused one revokes the whole session, so two tabs sharing one session
 * must never both spend it: a refresh runs under the store's exclusive lock and first looks whether another
 * holder already refreshed. (The API also answers a token spent moments ago with the same successor.)
 *
 * In a browser the refresh token is not held here at all: it lives in an HttpOnly cookie (the {@link Api} in
 * cookie mode), and the access token lives in this tab's memory only. A session loaded from storage then holds
 * just its user, with no access token: the first call refreshes through the cookie.
 */

import { Api, ApiError, type TokenResponse } from "./api";
import { backoffDelay, NO_JITTER, sleep, type BackoffOptions } from "./backoff";

/** Waits between the attempts of a logout the API could not complete yet (a transient error): 1, 2 and 4 s. */
const LOGOUT_RETRY: BackoffOptions = { first: 1_000, max: 4_000, jitter: NO_JITTER };

/** What is kept of a session between page loads. */
export interface StoredSession {
  /** Empty for a session known only by its user (a page just loaded): the next use refreshes. */
  access_token: string;
  /** Absent when the refresh token is in an HttpOnly cookie. */
  refresh_token?: string;
  /** When the access token expires (milliseconds since the epoch). */
  expires_at: number;
  user: { id: string; name: string; guest: boolean };
}

/** Where a session is kept, shared by every tab of a browser (or by nothing, in a test). */
export interface SessionStore {
  load(): StoredSession | undefined;
  save(session: StoredSession | undefined): void;
  /** Runs `work` while no other holder of the store runs its own (a cross-tab lock in browsers). */
  exclusive<T>(work: () => Promise<T>): Promise<T>;
  /** Calls `changed` when another holder saves; returns how to stop. */
  watch?(changed: (session: StoredSession | undefined) => void): () => void;
}

/** A store for one process: no persistence, a lock within this process only. */
export class MemorySessionStore implements SessionStore {
  private value: StoredSession | undefined;
  private chain: Promise<unknown> = Promise.resolve();

  constructor(initial?: StoredSession) {
    this.value = initial;
  }

  load(): StoredSession | undefined {
    return this.value;
  }

  save(session: StoredSession | undefined): void {
    this.value = session;
  }

  exclusive<T>(work: () => Promise<T>): Promise<T> {
    const run = this.chain.then(work, work);
    this.chain = run.catch(() => undefined);
    return run;
  }
}

/**
 * Why a session ended: signed out here (`logout`); the refresh token ran out or was refused (`expired`); signed
 * out in another tab of this browser (`elsewhere`); or the server revoked the session (`revoked`: logged out on
 * another device, or its refresh token was used twice).
 */
export type SignOutReason = "logout" | "expired" | "elsewhere" | "revoked";

type SessionEvent =
  | { type: "tokens"; accessToken: string }
  | { type: "signed_out"; reason: SignOutReason };

/** An access token valid for less than this is refreshed before use. */
const MIN_VALIDITY_MS = 30_000;

/** Refresh refusals that mean the session was revoked rather than that it ran out. */
const REVOKED_REFRESH = new Set(["refresh_token_revoked", "refresh_token_reused"]);

export class Session {
  private current: StoredSession | undefined;
  private inflight: Promise<string> | undefined;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private readonly listeners = new Set<(event: SessionEvent) => void>();
  private readonly unwatch: (() => void) | undefined;
  private readonly unwatchApi: () => void;

  constructor(
    private readonly api: Api,
    private readonly store: SessionStore,
  ) {
    this.current = store.load();
    this.unwatch = store.watch?.((session) => this.adopt(session));
    // Any call refused because its session was revoked ends the session, whichever part of the app made it.
    this.unwatchApi = api.onUnauthorized((err, token) => {
      if (err.code === "token_revoked") this.revoked(token);
    });
    this.schedule();
  }

  /** The signed-in user, if any. */
  get user(): StoredSession["user"] | undefined {
    return this.current?.user;
  }

  /** The access token held now (valid or not), without refreshing. */
  get currentAccessToken(): string | undefined {
    return this.current?.access_token;
  }

  /** Starts a session from a token response (login, register, guest). */
  begin(tokens: TokenResponse): void {
    this.current = toStored(tokens);
    this.store.save(this.current);
    this.schedule();
    this.emit({ type: "tokens", accessToken: this.current.access_token });
  }

  /** A currently valid access token, refreshed first when it is about to expire. */
  async accessToken(minValidityMs = MIN_VALIDITY_MS): Promise<string> {
    const current = this.current;
    if (!current) throw new ApiError(401, "signed_out", "not signed in");
    if (current.expires_at - Date.now() > minValidityMs) return current.access_token;
    return this.refresh();
  }

  /** Trades the refresh token for new tokens, once across every holder of the store. */
  refresh(): Promise<string> {
    if (this.inflight) return this.inflight;
    const stale = this.current?.access_token;
    this.inflight = this.store
      .exclusive(async () => {
        const stored = this.store.load();
        if (!stored) {
          this.end("elsewhere");
          throw new ApiError(401, "signed_out", "signed out in another tab");
        }
        if (stored.access_token !== stale && stored.expires_at - Date.now() > MIN_VALIDITY_MS) {
          // Another tab refreshed while this one waited for the lock.
          this.current = stored;
          return stored.access_token;
        }
        try {
          const tokens = await this.api.refresh(stored.refresh_token);
          this.current = toStored(tokens);
          this.store.save(this.current);
          return this.current.access_token;
        } catch (err) {
          if (err instanceof ApiError && (err.status === 401 || err.status === 403)) {
            this.end(REVOKED_REFRESH.has(err.code) ? "revoked" : "expired");
          }
          throw err;
        }
      })
      .then((token) => {
        this.schedule();
        this.emit({ type: "tokens", accessToken: token });
        return token;
      })
      .finally(() => {
        this.inflight = undefined;
      });
    return this.inflight;
  }

  /**
   * Signs out: forgets the session everywhere and revokes it on the server (best effort). The API answers 503
   * when the session is revoked but its open connections could not be told yet; asking again completes it.
   */
  async logout(): Promise<void> {
    const stored = this.current;
    this.end("logout");
    if (!stored) return;
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        await this.api.logout(stored.refresh_token);
        return;
      } catch (err) {
        if (!(err instanceof ApiError && err.transient)) return;
        await sleep(backoffDelay(attempt, LOGOUT_RETRY));
      }
    }
  }

  /**
   * The server says the session that `token` belongs to was revoked (a gateway closed with 4003, or the API
   * answered `token_revoked`): signs out. Unless the store holds another session by then (signed in again in
   * another tab): that one is kept.
   */
  revoked(token?: string): void {
    const stored = this.store.load();
    if (stored && token !== undefined && !sameSession(stored.access_token, token)) {
      this.adopt(stored);
      return;
    }
    this.end("revoked");
  }

  /** Listens to new tokens and sign-outs; returns how to stop. */
  subscribe(listener: (event: SessionEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Stops timers and store watching (the session stays stored). */
  close(): void {
    clearTimeout(this.timer);
    this.unwatch?.();
    this.unwatchApi();
    this.listeners.clear();
  }

  private adopt(session: StoredSession | undefined): void {
    if (!session) {
      if (this.current) this.end("elsewhere");
      return;
    }
    if (!session.access_token) {
      // Signed in anew in another tab, whose tokens this tab cannot see: its own come from the cookie.
      if (session.user.id === this.current?.user.id && this.current.access_token) return;
      this.current = session;
      this.refresh().catch(() => undefined);
      return;
    }
    const changed = session.access_token !== this.current?.access_token;
    this.current = session;
    if (changed) {
      this.schedule();
      this.emit({ type: "tokens", accessToken: session.access_token });
    }
  }

  private end(reason: SignOutReason): void {
    const had = this.current !== undefined;
    this.current = undefined;
    clearTimeout(this.timer);
    this.store.save(undefined);
    if (had || reason !== "elsewhere") this.emit({ type: "signed_out", reason });
  }

  /**
   * Refreshes a minute before expiry, or at 80% of what is left of a short lifetime (under five minutes), so
   * connections never hold an expired token.
   */
  private schedule(): void {
    clearTimeout(this.timer);
    const current = this.current;
    if (!current) return;
    const left = current.expires_at - Date.now();
    const due = Math.max(1_000, left - 60_000, left * 0.8);
    this.timer = setTimeout(() => {
      this.refresh().catch(() => {
        // A passing failure: try again shortly, while the token may still be valid.
        if (this.current) this.timer = setTimeout(() => this.schedule(), 5_000);
      });
    }, due);
  }

  private emit(event: SessionEvent): void {
    for (const listener of [...this.listeners]) listener(event);
  }
}

/**
 * Whether two access tokens belong to one session (their `sid` claims agree). Read without verifying: this only
 * decides whose sign-out a revocation is. A token whose session cannot be read counts as the same session.
 */
export function sameSession(a: string, b: string): boolean {
  if (a === b) return true;
  const first = sessionId(a);
  const second = sessionId(b);
  return first === undefined || second === undefined || first === second;
}

function sessionId(token: string): string | undefined {
  const payload = token.split(".")[1];
  if (!payload) return undefined;
  try {
    const json = atob(payload.replace(/-/g, "+").replace(/_/g, "/"));
    const sid = (JSON.parse(json) as { sid?: unknown }).sid;
    return typeof sid === "string" ? sid : undefined;
  } catch {
    return undefined;
  }
}

function toStored(tokens: TokenResponse): StoredSession {
  return {
    access_token: tokens.access_token,
    refresh_token: tokens.refresh_token,
    expires_at: Date.now() + tokens.expires_in * 1000,
    user: tokens.user,
  };
}
