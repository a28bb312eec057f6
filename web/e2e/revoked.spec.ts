/**
 * A session ended from outside the page: the page hears of it (the gateway closes with 4003), signs out, drops
 * its tokens and says why, and does not come back with that session. The other device ends it from the user's
 * list of sessions (the page's refresh token is out of anyone's reach but the API's).
 */

import { expect, test } from "@playwright/test";

import { closedWith, createRoom, expectOnline, register, storedSession, uniqueName } from "./helpers";

const SIGNED_OUT = "You were signed out: this session was ended (logged out elsewhere). Sign in again.";

test("a session logged out from outside the page: the page signs out, forgets its tokens and says why", async ({
  browser,
}) => {
  const alice = await register(browser, "alice");
  await createRoom(alice.page, uniqueName("Revoked"));
  const before = await closedWith(4003);
  expect((await storedSession(alice.page))?.user.name).toBe(alice.name);

  // Another device signs in, finds the page's session in the list of sessions and ends it.
  const device = await alice.context.request.post("/api/login", {
    data: { username: alice.name, password: alice.password },
  });
  expect(device.status()).toBe(200);
  const authorization = `Bearer ${(await device.json()).access_token}`;
  const listed = await alice.context.request.get("/api/sessions", { headers: { authorization } });
  const sessions = (await listed.json()) as { id: string; current: boolean; user_agent?: string }[];
  expect(sessions).toHaveLength(2);
  const pageSession = sessions.find((s) => !s.current);
  expect(pageSession?.user_agent).toContain("Chrome");
  const ended = await alice.context.request.delete(`/api/sessions/${pageSession?.id}`, { headers: { authorization } });
  expect(ended.status()).toBe(204);

  // Within seconds, well before the page's next room listing (10 s) or token refresh (16 s) would find out.
  await expect(alice.page.getByText(SIGNED_OUT)).toBeVisible({ timeout: 8_000 });
  await expect(alice.page.getByRole("tab", { name: "Sign in" })).toBeVisible();
  expect(await storedSession(alice.page)).toBeNull();
  // The gateway ended the connection with 4003, and the page did not connect again with that session.
  await expect.poll(() => closedWith(4003), { timeout: 5_000 }).toBeGreaterThan(before);
  const sockets: string[] = [];
  alice.page.on("websocket", (ws) => sockets.push(ws.url()));
  await alice.page.waitForTimeout(3_000);
  expect(sockets).toEqual([]);

  // A reload stays signed out; signing in again starts a new session that works.
  await alice.page.reload();
  await expect(alice.page.getByRole("tab", { name: "Sign in" })).toBeVisible();
  await alice.page.getByLabel("User name").fill(alice.name);
  await alice.page.getByLabel("Password").fill(alice.password);
  await alice.page.getByRole("button", { name: "Sign in" }).click();
  await expectOnline(alice.page);
  await alice.context.close();
});
