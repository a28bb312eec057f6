import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import { Api } from "../src/natter/api";
import { backoffDelay, NO_JITTER } from "../src/natter/backoff";
import { Connection } from "../src/natter/connection";
import { MemorySessionStore, Session } from "../src/natter/session";
import { FakeServer, SocketLog } from "./fakes";

beforeEach(() => {
  vi.useFakeTimers();
});

afterEach(() => {
  vi.useRealTimers();
});

describe("Session", () => {
  it("spends a refresh token once when two tabs refresh together", async () => {
    const server = new FakeServer();
    const api = new Api("http://api.test", server.fetch);
    const store = new MemorySessionStore();
    const first = new Session(api, store);
    first.begin(server.tokens());
    // A second tab opened later reads the same stored session.
    const second = new Session(api, store);
    const [a, b] = await Promise.all([first.refresh(), second.refresh()]);
    expect(server.refreshes).toBe(1);
    expect(a).toBe(b);
    expect(server.calls("/api/refresh").map((r) => r.body)).toEqual([{ refresh_token: "refresh-1" }]);
    first.close();
    second.close();
  });

  it("signs out when the refresh token is refused, and tells its listeners why", async () => {
    const server = new FakeServer();
    const refused: typeof fetch = async (input, init) =>
      String(input).endsWith("/api/refresh")
        ? new Response(JSON.stringify({ error: { code: "invalid_refresh_token", message: "revoked" } }), {
            status: 401,
          })
        : server.fetch(input, init);
    const api = new Api("http://api.test", refused);
    const store = new MemorySessionStore();
    const session = new Session(api, store);
    session.begin(server.tokens());
    const events: string[] = [];
    session.subscribe((e) => events.push(e.type === "signed_out" ? `out:${e.reason}` : e.type));
    await expect(session.refresh()).rejects.toMatchObject({ status: 401, code: "invalid_refresh_token" });
    expect(events).toEqual(["out:expired"]);
    expect(store.load()).toBeUndefined();
    expect(session.user).toBeUndefined();
  });

  it("refreshes a minute before expiry, or at 80% of a short lifetime, and never in a loop", async () => {
    const server = new FakeServer();
    const api = new Api("http://api.test", server.fetch);
    const session = new Session(api, new MemorySessionStore());
    session.begin({ ...server.tokens(), expires_in: 20 });
    await vi.advanceTimersByTimeAsync(15_900);
    expect(server.refreshes).toBe(0);
    await vi.advanceTimersByTimeAsync(200);
    expect(server.refreshes).toBe(1);
    // The fake hands out 900 s tokens: the next refresh is 840 s later, not sooner.
    await vi.advanceTimersByTimeAsync(839_000);
    expect(server.refreshes).toBe(1);
    await vi.advanceTimersByTimeAsync(2_000);
    expect(server.refreshes).toBe(2);
    session.close();
  });

  it("hands out the current token while it is valid, and refreshes one about to expire", async () => {
    const server = new FakeServer();
    const api = new Api("http://api.test", server.fetch);
    const session = new Session(api, new MemorySessionStore());
    session.begin(server.tokens());
    expect(await session.accessToken()).toBe("access-1");
    vi.setSystemTime(Date.now() + 880_000);
    expect(await session.accessToken()).toBe("access-2");
    session.close();
  });
});

describe("Connection", () => {
  it("stays offline after a policy close instead of repeating the fault", async () => {
    const sockets = new SocketLog();
    const statuses: string[] = [];
    const connection = new Connection({
      socket: sockets.factory,
      gatewayUrl: async () => ({ url: "ws://gw/ws" }),
      token: async () => "t",
      onFrame: () => undefined,
      onHello: () => undefined,
      onStatus: (s) => statuses.push(s.state),
    });
    connection.start();
    await vi.advanceTimersByTimeAsync(0);
    sockets.last.accept();
    sockets.last.drop(1008, "too many invalid frames");
    await vi.advanceTimersByTimeAsync(60_000);
    expect(sockets.sockets).toHaveLength(1);
    expect(connection.current).toEqual({
      state: "offline",
      reason: "disconnected by the server: too many invalid frames",
    });
    expect(statuses).toEqual(["connecting", "online", "offline"]);
    // A person can still ask for a new try.
    connection.reconnectNow();
    await vi.advanceTimersByTimeAsync(0);
    expect(sockets.sockets).toHaveLength(2);
    connection.stop();
  });

  it("gives up on a gateway that never greets and on one that goes silent", async () => {
    const sockets = new SocketLog();
    const connection = new Connection({
      socket: sockets.factory,
      gatewayUrl: async () => ({ url: "ws://gw/ws" }),
      token: async () => "t",
      onFrame: () => undefined,
      onHello: () => undefined,
      onStatus: () => undefined,
      helloTimeoutMs: 5_000,
      pingIntervalMs: 1_000,
      silenceTimeoutMs: 3_000,
    });
    connection.start();
    await vi.advanceTimersByTimeAsync(5_100);
    expect(sockets.sockets[0].closedWith).toBe(4000);
    expect(connection.current.state).toBe("reconnecting");
    await vi.advanceTimersByTimeAsync(1_000);
    const live = sockets.last;
    live.accept();
    // Answers nothing from now on: pings are sent, then the connection is given up.
    live.send = (data: string) => void live.sent.push(JSON.parse(data));
    await vi.advanceTimersByTimeAsync(4_500);
    expect(live.frames("ping").length).toBeGreaterThanOrEqual(2);
    expect(live.closedWith).toBe(4000);
    connection.stop();
  });
});

describe("backoffDelay", () => {
  it("doubles its bound up to the cap and keeps at least half of it", () => {
    expect(backoffDelay(0, { first: 500, max: 15_000 }, () => 0)).toBe(250);
    expect(backoffDelay(0, { first: 500, max: 15_000 }, () => 1)).toBe(500);
    expect(backoffDelay(3, { first: 500, max: 15_000 }, () => 1)).toBe(4_000);
    expect(backoffDelay(40, { first: 500, max: 15_000 }, () => 0.5)).toBe(11_250);
  });

  it("places the delay within the bound as its jitter says", () => {
    const never = () => {
      throw new Error("no jitter draws no random number");
    };
    expect(backoffDelay(1, { first: 1_000, max: 30_000, jitter: NO_JITTER }, never)).toBe(2_000);
    expect(backoffDelay(9, { first: 1_000, max: 30_000, jitter: NO_JITTER }, never)).toBe(30_000);
    expect(backoffDelay(0, { first: 1_000, max: 1_000, jitter: [1, 2] }, () => 0)).toBe(1_000);
    expect(backoffDelay(0, { first: 1_000, max: 1_000, jitter: [1, 2] }, () => 0.999)).toBe(1_999);
    expect(backoffDelay(2, { first: 1_000, max: 8_000, jitter: [0.75, 1.25] }, () => 0)).toBe(3_000);
    expect(backoffDelay(2, { first: 1_000, max: 8_000, jitter: [0.75, 1.25] }, () => 0.5)).toBe(4_000);
    expect(backoffDelay(0, { first: 250, max: 250, jitter: [0, 1] }, () => 0)).toBe(0);
  });
});
