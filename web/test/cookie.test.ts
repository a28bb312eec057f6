import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import { Api } from "../src/natter/api";
import { Session, type SignOutReason } from "../src/natter/session";
import { BrowserSessionStore } from "../src/ui/browser";
import { FakeServer, ME } from "./fakes";

/** A browser's localStorage and its storage events, in memory. */
class FakeStorage {
  readonly items = new Map<string, string>();
  readonly listeners = new Set<(event: { key: string | null; newValue: string | null }) => void>();
  getItem(key: string): string | null {
    return this.items.get(key) ?? null;
  }
  setItem(key: string, value: string): void {
    this.items.set(key, value);
  }
  removeItem(key: string): void {
    this.items.delete(key);
  }
  /** What another tab's write looks like to this one. */
  fromAnotherTab(key: string, value: string | null): void {
    if (value === null) this.items.delete(key);
    else this.items.set(key, value);
    for (const listener of [...this.listeners]) listener({ key, newValue: value });
  }
  /** Everything stored, as one string. */
  dump(): string {
    return JSON.stringify([...this.items]);
  }
}

let storage: FakeStorage;

beforeEach(() => {
  vi.useFakeTimers();
  storage = new FakeStorage();
  vi.stubGlobal("localStorage", storage);
  vi.stubGlobal("navigator", {});
  vi.stubGlobal("addEventListener", (type: string, listener: never) => {
    if (type === "storage") storage.listeners.add(listener);
  });
  vi.stubGlobal("removeEventListener", (type: string, listener: never) => {
    if (type === "storage") storage.listeners.delete(listener);
  });
});

afterEach(() => {
  vi.unstubAllGlobals();
  vi.useRealTimers();
});

/** A page of the browser app: the API in cookie mode, the browser's store. */
function page(server: FakeServer) {
  const api = new Api("http://api.test", server.fetch, { refreshCookie: true });
  const session = new Session(api, new BrowserSessionStore());
  const ended: SignOutReason[] = [];
  session.subscribe((event) => event.type === "signed_out" && ended.push(event.reason));
  return { api, session, ended };
}

describe("the refresh token in an HttpOnly cookie", () => {
  it("asks for cookie mode on every sign-in, refresh and logout, and sends no refresh token itself", async () => {
    const server = new FakeServer();
    const { api, session } = page(server);
    session.begin(await api.login("alice", "correct horse"));
    session.begin(await api.register("alice2", "correct horse"));
    await session.refresh();
    await session.logout();
    for (const path of ["/api/login", "/api/register", "/api/refresh", "/api/logout"]) {
      const [call] = server.calls(path);
      expect(call.headers["natter-refresh-token"], path).toBe("cookie");
    }
    expect(server.calls("/api/refresh")[0].body).toBeUndefined();
    expect(server.calls("/api/logout")[0].body).toBeUndefined();
    expect(server.cookie).toBeUndefined();
  });

  it("keeps no token in storage, and a reload signs in again through the cookie", async () => {
    const server = new FakeServer();
    const first = page(server);
    first.session.begin(await first.api.login("alice", "correct horse"));
    const access = await first.session.accessToken();
    expect(access).toMatch(/^access-/);
    expect(storage.dump()).not.toMatch(/access-|refresh-/);
    expect(JSON.parse(storage.getItem("natter.session") ?? "null")).toEqual({ user: { ...ME, guest: false } });
    const cookieBefore = server.cookie;

    // The page is loaded again: it knows who was signed in, and gets tokens with the cookie.
    first.session.close();
    const reloaded = page(server);
    expect(reloaded.session.user?.id).toBe(ME.id);
    expect(reloaded.session.currentAccessToken).toBe("");
    const token = await reloaded.session.accessToken();
    expect(token).toMatch(/^access-/);
    expect(token).not.toBe(access);
    expect(server.calls("/api/refresh")).toHaveLength(1);
    expect(server.calls("/api/refresh")[0].body).toBeUndefined();
    expect(server.cookie).not.toBe(cookieBefore);
    expect(storage.dump()).not.toMatch(/access-|refresh-/);
    expect(reloaded.ended).toEqual([]);
    reloaded.session.close();
  });

  it("a reload whose cookie is gone signs out and forgets who was signed in", async () => {
    const server = new FakeServer();
    const first = page(server);
    first.session.begin(await first.api.login("alice", "correct horse"));
    first.session.close();
    server.cookie = undefined;
    const reloaded = page(server);
    await expect(reloaded.session.accessToken()).rejects.toMatchObject({ status: 401 });
    expect(reloaded.ended).toEqual(["expired"]);
    expect(reloaded.session.user).toBeUndefined();
    expect(storage.getItem("natter.session")).toBeNull();
  });

  it("hears of a sign-out in another tab, and of a sign-in there, whose tokens it gets from the cookie", async () => {
    const server = new FakeServer();
    const tab = page(server);
    tab.session.begin(await tab.api.login("alice", "correct horse"));
    storage.fromAnotherTab("natter.session", null);
    expect(tab.ended).toEqual(["elsewhere"]);
    expect(tab.session.user).toBeUndefined();

    // Another tab signs in (the cookie is set there): this tab follows with tokens of its own.
    const other = new FakeServer();
    server.cookie = other.tokens().refresh_token;
    const events: string[] = [];
    tab.session.subscribe((event) => events.push(event.type));
    storage.fromAnotherTab("natter.session", JSON.stringify({ user: { id: "u-new", name: "nina", guest: false } }));
    await vi.advanceTimersByTimeAsync(0);
    expect(events).toEqual(["tokens"]);
    expect(tab.session.currentAccessToken).toMatch(/^access-/);
    expect(server.calls("/api/refresh")).toHaveLength(1);
    tab.session.close();
  });
});
