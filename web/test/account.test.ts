import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import { Account } from "../src/natter/account";
import { Api, type SessionInfo } from "../src/natter/api";
import { MemorySessionStore, Session } from "../src/natter/session";
import { ago, deviceName } from "../src/ui/sessionWords";

/** An auth API that answers from a script, recording what it was asked. */
function scripted(answers: { status: number; body?: unknown }[]) {
  const requests: { method: string; path: string; body?: unknown; authorization?: string }[] = [];
  const fetchImpl: typeof fetch = async (input, init) => {
    const headers = (init?.headers ?? {}) as Record<string, string>;
    requests.push({
      method: init?.method ?? "GET",
      path: String(input),
      body: init?.body ? JSON.parse(String(init.body)) : undefined,
      authorization: headers.authorization,
    });
    const next = answers.shift() ?? { status: 500 };
    return new Response(next.body === undefined ? null : JSON.stringify(next.body), { status: next.status });
  };
  const api = new Api("", fetchImpl);
  const session = new Session(
    api,
    new MemorySessionStore({
      access_token: "access-1",
      expires_at: Date.now() + 900_000,
      user: { id: "u-me", name: "alice", guest: false },
    }),
  );
  return { account: new Account(api, session), requests, session };
}

const unavailable = { status: 503, body: { error: { code: "unavailable", message: "could not be told yet" } } };

function info(id: string, current: boolean): SessionInfo {
  return {
    id,
    created_at: "2026-12-01T00:00:00Z",
    last_used_at: "2026-12-01T00:00:00Z",
    expires_at: "2026-12-31T00:00:00Z",
    user_agent: "Mozilla/5.0",
    address: "127.0.0.1",
    current,
  };
}

describe("account", () => {
  let env: ReturnType<typeof scripted> | undefined;

  beforeEach(() => {
    vi.useFakeTimers();
  });

  afterEach(() => {
    env?.session.close();
    env = undefined;
    vi.useRealTimers();
  });

  it("lists the sessions with the current one first, with the session's access token", async () => {
    env = scripted([{ status: 200, body: [info("a", false), info("b", true), info("c", false)] }]);
    const sessions = await env.account.sessions();
    expect(sessions.map((s) => [s.id, s.current])).toEqual([
      ["b", true],
      ["a", false],
      ["c", false],
    ]);
    expect(env.requests).toEqual([{ method: "GET", path: "/api/sessions", authorization: "Bearer access-1" }]);
  });

  it("ends one session, and every other one with keep_current", async () => {
    env = scripted([{ status: 204 }, { status: 200, body: { ended: 2 } }]);
    await env.account.end("8a3f/x");
    expect(await env.account.endOthers()).toBe(2);
    expect(env.requests.map((r) => `${r.method} ${r.path}`)).toEqual([
      "DELETE /api/sessions/8a3f%2Fx",
      "DELETE /api/sessions?keep_current=true",
    ]);
  });

  it("asks again when the API ended a session but could not tell the gateways yet (503)", async () => {
    env = scripted([unavailable, unavailable, { status: 204 }]);
    const ended = env.account.end("s1");
    await vi.advanceTimersByTimeAsync(10_000);
    await ended;
    expect(env.requests.map((r) => r.path)).toEqual(["/api/sessions/s1", "/api/sessions/s1", "/api/sessions/s1"]);
  });

  it("gives up after a few 503s, and never retries a refusal", async () => {
    env = scripted([unavailable, unavailable, unavailable, unavailable, unavailable]);
    const ended = env.account.end("s1");
    const outcome = expect(ended).rejects.toMatchObject({ status: 503, code: "unavailable" });
    await vi.advanceTimersByTimeAsync(30_000);
    await outcome;
    expect(env.requests).toHaveLength(4);

    env.session.close();
    env = scripted([{ status: 404, body: { error: { code: "session_not_found", message: "no such session" } } }]);
    await expect(env.account.end("gone")).rejects.toMatchObject({ status: 404, code: "session_not_found" });
    expect(env.requests).toHaveLength(1);
  });

  it("changes the password with the API's field names and says how many sessions ended", async () => {
    env = scripted([{ status: 200, body: { ended: 1 } }]);
    expect(await env.account.changePassword("old password", "new password")).toBe(1);
    expect(env.requests).toEqual([
      {
        method: "POST",
        path: "/api/account/password",
        body: { current_password: "old password", new_password: "new password" },
        authorization: "Bearer access-1",
      },
    ]);
  });

  it("keeps the API's codes for a refused password change", async () => {
    env = scripted([
      { status: 403, body: { error: { code: "wrong_password", message: "the current password is not right" } } },
      { status: 422, body: { error: { code: "invalid_password", message: "the password must be at least 8 characters long" } } },
      { status: 403, body: { error: { code: "no_password", message: "a guest account has no password to change" } } },
    ]);
    await expect(env.account.changePassword("nope", "new password")).rejects.toMatchObject({ code: "wrong_password" });
    await expect(env.account.changePassword("old password", "short")).rejects.toMatchObject({
      status: 422,
      code: "invalid_password",
      message: "the password must be at least 8 characters long",
    });
    await expect(env.account.changePassword("x", "new password")).rejects.toMatchObject({ code: "no_password" });
    expect(env.requests).toHaveLength(3);
  });

  it("completes a password change answered 503 by ending the other sessions again", async () => {
    env = scripted([unavailable, { status: 200, body: { ended: 0 } }]);
    expect(await env.account.changePassword("old password", "new password")).toBeUndefined();
    expect(env.requests.map((r) => `${r.method} ${r.path}`)).toEqual([
      "POST /api/account/password",
      "DELETE /api/sessions?keep_current=true",
    ]);
  });
});

describe("session words", () => {
  it("names a browser and its system from the User-Agent", () => {
    const linuxChrome =
      "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
    expect(deviceName(linuxChrome)).toBe("Chrome on Linux");
    expect(deviceName("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0")).toBe(
      "Firefox on Windows",
    );
    expect(
      deviceName(
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
      ),
    ).toBe("Safari on iOS");
    expect(
      deviceName(
        "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Mobile Safari/537.36 EdgA/131.0",
      ),
    ).toBe("Edge on Android");
    expect(deviceName("curl/8.5.0")).toBe("curl");
    expect(deviceName(null)).toBe("Unknown device");
    expect(deviceName("  ")).toBe("Unknown device");
  });

  it("says how long ago, then the date", () => {
    const now = Date.parse("2026-12-06T12:00:00Z");
    expect(ago("2026-12-06T11:59:30Z", now)).toBe("just now");
    expect(ago("2026-12-06T11:55:00Z", now)).toBe("5 min ago");
    expect(ago("2026-12-06T09:00:00Z", now)).toBe("3 h ago");
    expect(ago("2026-12-05T09:00:00Z", now)).toBe("yesterday");
    expect(ago("2026-12-02T12:00:00Z", now)).toBe("4 days ago");
    expect(ago("2026-11-01T12:00:00Z", now)).toBe("2026-11-01");
    expect(ago("not a date", now)).toBe("unknown");
  });
});
