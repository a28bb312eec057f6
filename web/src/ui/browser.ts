/**
 * What the protocol client needs from a browser: the session kept in localStorage (shared by tabs, with a Web
 * Lock around refreshes so two tabs never spend one refresh token), and real WebSockets.
 */

import type { SocketFactory, SocketLike } from "../natter/connection";
import type { SessionStore, StoredSession } from "../natter/session";

const KEY = "natter.session";

export class BrowserSessionStore implements SessionStore {
  load(): StoredSession | undefined {
    try {
      const raw = localStorage.getItem(KEY);
      return raw ? (JSON.parse(raw) as StoredSession) : undefined;
    } catch {
      return undefined;
    }
  }

  save(session: StoredSession | undefined): void {
    try {
      if (session) localStorage.setItem(KEY, JSON.stringify(session));
      else localStorage.removeItem(KEY);
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
      if (event.key === KEY || event.key === null) changed(this.load());
    };
    addEventListener("storage", onStorage);
    return () => removeEventListener("storage", onStorage);
  }
}

/** The browser's WebSocket has the shape the client uses; its handler types are only narrower (DOM events). */
export const browserSocket: SocketFactory = (url, protocols) => new WebSocket(url, protocols) as unknown as SocketLike;
