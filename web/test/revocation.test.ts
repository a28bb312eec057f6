import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import { Api, type TokenResponse } from "../src/natter/api";
import { NatterClient } from "../src/natter/client";
import { Close } from "../src/natter/frames";
import { MemorySessionStore, sameSession, Session, type SignOutReason } from "../src/natter/session";
import { FakeServer, ME, setup } from "./fakes";

const tick = (ms = 0) => vi.advanceTimersByTimeAsync(ms);

/** A signed-in client whose connection is up and whose room is joined; `signedOut` collects sign-out reasons. */
async function signedIn() {
  const env = setup();
  env.server.room("lobby");
  const signedOut: SignOutReason[] = [];
  env.session.subscribe((event) => event.type === "signed_out" && signedOut.push(event.reason));
  const client = new NatterClient({ api: env.api, session: env.session, socket: env.sockets.factory, roomsPollMs: 0 });
  await client.start();
  await tick();
  const socket = env.sockets.last;
  socket.accept();
  await tick();
  socket.deliver({ type: "joined", room: "lobby", seq: 0, recovered: true, members: [ME] });
  return { ...env, client, socket, signedOut };
}

/** A JWT-shaped token (unsigned) of session `sid`: enough for telling sessions apart. */
function jwt(sid: string, n: number): string {
  const part = (value: object) => Buffer.from(JSON.stringify(value)).toString("base64url");
  return `${part({ alg: "EdDSA" })}.${part({ sub: ME.id, sid, n })}.sig`;
}

function tokens(sid: string, n: number): TokenResponse {
  return {
    access_token: jwt(sid, n),
    refresh_token: `refresh-${sid}-${n}`,
    expires_in: 900,
    token_type: "Bearer",
    user: { ...ME, guest: false },
  };
}

beforeEach(() => {
  vi.useFakeTimers();
});

afterEach(() => {
  vi.useRealTimers();
});

describe("a revoked session", () => {
  it("closed with 4003: signs out, drops the stored tokens and never reconnects", async () => {
    const env = await signedIn();
    env.socket.drop(Close.SessionRevoked, "session revoked");
    await tick(120_000);
    expect(env.sockets.sockets).toHaveLength(1);
    expect(env.server.calls("/api/gateway")).toHaveLength(1);
    expect(env.server.refreshes).toBe(0);
    expect(env.signedOut).toEqual(["revoked"]);
    expect(env.session.user).toBeUndefined();
    expect(env.store.load()).toBeUndefined();
    expect(env.client.status).toEqual({ state: "offline", reason: "signed out" });
    // Nothing runs after the sign-out: no listing, no read cursor, no history.
    const after = env.server.requests.length;
    await tick(60_000);
    expect(env.server.requests.length).toBe(after);
  });

  it("is not a client bug: the closes that are (1008) stay offline without signing out", async () => {
    const env = await signedIn();
    env.socket.drop(Close.Policy, "too many invalid frames");
    await tick(60_000);
    expect(env.signedOut).toEqual([]);
    expect(env.session.user).toBeDefined();
    expect(env.client.status.state).toBe("offline");
    env.client.stop();
  });

  it("answered token_revoked by the API: signs out", async () => {
    const env = await signedIn();
    env.server.fail("/api/rooms", "GET", 401, 1, "token_revoked");
    await expect(env.client.refreshRooms()).rejects.toMatchObject({ status: 401, code: "token_revoked" });
    expect(env.signedOut).toEqual(["revoked"]);
    expect(env.store.load()).toBeUndefined();
    expect(env.socket.closedWith).toBe(Close.Normal);
  });

  it("another 401 of the API (a token the API could not verify) does not sign out by itself", async () => {
    const env = await signedIn();
    env.server.fail("/api/rooms", "GET", 401, 1, "token_bad_signature");
    await expect(env.client.refreshRooms()).rejects.toMatchObject({ status: 401 });
    expect(env.signedOut).toEqual([]);
    env.client.stop();
  });

  it("refused a refresh (refresh_token_revoked, refresh_token_reused): signs out as revoked", async () => {
    for (const code of ["refresh_token_revoked", "refresh_token_reused"]) {
      const env = await signedIn();
      env.server.fail("/api/refresh", "POST", 401, 1, code);
      env.socket.drop(Close.TokenExpired, "access token expired");
      await tick(1_000);
      expect(env.signedOut).toEqual(["revoked"]);
      expect(env.store.load()).toBeUndefined();
      await tick(60_000);
      expect(env.sockets.sockets).toHaveLength(1);
    }
  });

  it("an in-band refresh the gateway refuses with token_revoked: signs out without asking for new tokens", async () => {
    const env = await signedIn();
    env.socket.deliver({ type: "error", code: "token_revoked", message: "this session was logged out" });
    await tick(1_000);
    expect(env.signedOut).toEqual(["revoked"]);
    expect(env.server.refreshes).toBe(0);
    expect(env.sockets.sockets).toHaveLength(1);
  });

  it("of a session another tab has replaced with a new sign-in: the new session stays", async () => {
    const server = new FakeServer();
    const api = new Api("http://api.test", server.fetch);
    const store = new MemorySessionStore();
    const tab = new Session(api, store);
    tab.begin(tokens("s-old", 1));
    const oldToken = tab.currentAccessToken as string;
    // Another tab signs out and in again (a new session) before this one hears of the old one's revocation.
    store.save({ ...tokens("s-new", 2), expires_at: Date.now() + 900_000 });
    const events: string[] = [];
    tab.subscribe((event) => events.push(event.type === "signed_out" ? `out:${event.reason}` : event.type));
    tab.revoked(oldToken);
    expect(events).toEqual(["tokens"]);
    expect(tab.currentAccessToken).toBe(jwt("s-new", 2));
    expect(store.load()?.access_token).toBe(jwt("s-new", 2));
    // The same session under a refreshed token is still the revoked one.
    tab.revoked(jwt("s-new", 1));
    expect(events).toEqual(["tokens", "out:revoked"]);
    expect(store.load()).toBeUndefined();
    tab.close();
  });

  it("tells sessions apart by their sid, and counts tokens it cannot read as the same session", () => {
    expect(sameSession(jwt("a", 1), jwt("a", 2))).toBe(true);
    expect(sameSession(jwt("a", 1), jwt("b", 1))).toBe(false);
    expect(sameSession("opaque-1", "opaque-2")).toBe(true);
  });

  it("logging out asks again while the API cannot tell the gateways yet (503)", async () => {
    const server = new FakeServer();
    const api = new Api("http://api.test", server.fetch);
    const session = new Session(api, new MemorySessionStore());
    session.begin(server.tokens());
    server.fail("/api/logout", "POST", 503, 2);
    const done = session.logout();
    await tick(10_000);
    await done;
    expect(server.calls("/api/logout")).toHaveLength(3);
    expect(session.user).toBeUndefined();
  });
});
