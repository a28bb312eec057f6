/**
 * What the protocol client needs from a browser: the session, and real WebSockets.
 *
 * No token is kept where the page's script could read it later: the refresh token is an HttpOnly cookie that only
 * the API sees (the {@link Api} in cookie mode), and the access token lives in this tab's memory. localStorage
 * holds only who is signed in (no token), so a reload knows to refresh through the cookie, and other tabs hear of
 * sign-ins and sign-outs. A Web Lock keeps two tabs from refreshing at the same moment.
 */

import type { SocketFactory, SocketLike } from "../natter/connection";
import type { SessionStore, StoredSession } from "../natter/session";

const KEY = "natter.session";

/** What localStorage holds of a session: its user, never a token. */
interface Hint {
  user: StoredSession["user"];
}

export class BrowserSessionStore implements SessionStore {
  /** This tab's session, access token included. */
  private current: StoredSession | undefined;

  load(): StoredSession | undefined {
    if (this.current) return this.current;
    const hint = readHint(localStorageOrUndefined()?.getItem(KEY) ?? null);
    // Known by its user only: the next use refreshes through the cookie.
    return hint ? { access_token: "", expires_at: 0, user: hint.user } : undefined;
  }

  save(session: StoredSession | undefined): void {
    this.current = session ? { ...session, refresh_token: undefined } : undefined;
    try {
      const storage = localStorageOrUndefined();
      if (!storage) return;
      if (session) storage.setItem(KEY, JSON.stringify({ user: session.user } satisfies Hint));
      else storage.removeItem(KEY);
    } catch {
      // Storage full or disabled: the session lives in this tab only.
    }
  }

  exclusive<T>(work: () => Promise<T>): Promise<T> {
    const locks = (navigator as Navigator & { locks?: LockManager }).locks;
    // request() resolves with what `work` resolves with.
    return locks ? (locks.request("natter.session.refresh", work) as Promise<T>) : work();
  }

  watch(changed: (session: StoredSession | undefined) => void): () => void {
    const onStorage = (event: StorageEvent) => {
      if (event.key !== KEY && event.key !== null) return;
      const hint = readHint(event.newValue);
      if (!hint) {
        this.current = undefined;
        changed(undefined);
      } else if (hint.user.id !== this.current?.user.id) {
        // Another user signed in in another tab: the cookie is theirs now.
        this.current = undefined;
        changed({ access_token: "", expires_at: 0, user: hint.user });
      }
    };
    addEventListener("storage", onStorage);
    return () => removeEventListener("storage", onStorage);
  }
}

function localStorageOrUndefined(): Storage | undefined {
  try {
    return globalThis.localStorage;
  } catch {
    return undefined;
  }
}

function readHint(raw: string | null): Hint | undefined {
  if (!raw) return undefined;
  try {
    const hint = JSON.parse(raw) as Partial<Hint>;
    return typeof hint.user?.id === "string" && typeof hint.user.name === "string" ? (hint as Hint) : undefined;
  } catch {
    return undefined;
  }
}

/** The browser's WebSocket has the shape the client uses; its handler types are only narrower (DOM events). */
export const browserSocket: SocketFactory = (url, protocols) => new WebSocket(url, protocols) as unknown as SocketLike;
