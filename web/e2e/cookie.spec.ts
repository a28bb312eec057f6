/**
 * The refresh token out of the page's reach: it lives in an HttpOnly cookie that neither the page's script nor its
 * storage can read, the access token lives in memory, and a reload stays signed in through the cookie.
 */

import { expect, test, type Page } from "@playwright/test";

import { expectOnline, register, storedSession } from "./helpers";

/** Everything the page's own script can read of cookies and storage, as one string. */
async function readableByThePage(page: Page): Promise<string> {
  return page.evaluate(() => {
    const dump = (storage: Storage) => {
      const items: Record<string, string> = {};
      for (let i = 0; i < storage.length; i++) {
        const key = storage.key(i) as string;
        items[key] = storage.getItem(key) ?? "";
      }
      return items;
    };
    return JSON.stringify({ cookie: document.cookie, local: dump(localStorage), session: dump(sessionStorage) });
  });
}

async function refreshCookie(page: Page) {
  const cookies = await page.context().cookies();
  return cookies.filter((c) => c.name === "natter_refresh");
}

test("the refresh token is an HttpOnly cookie the page cannot read, and a reload stays signed in through it", async ({
  browser,
}) => {
  const alice = await register(browser, "cookie");
  const page = alice.page;

  // The browser holds the refresh token, for the two API routes that read it, HttpOnly, Secure and Strict.
  const cookies = await refreshCookie(page);
  expect(cookies.map((c) => c.path).sort()).toEqual(["/api/logout", "/api/refresh"]);
  for (const cookie of cookies) {
    expect(cookie).toMatchObject({ httpOnly: true, secure: true, sameSite: "Strict" });
    expect(cookie.value.length).toBeGreaterThanOrEqual(40);
    expect(cookie.expires * 1000 - Date.now()).toBeGreaterThan(29 * 86_400_000);
  }
  const token = cookies[0].value;
  expect(cookies[1].value).toBe(token);

  // Nothing the page's script can read holds it: not document.cookie, not localStorage, not sessionStorage.
  const readable = await readableByThePage(page);
  expect(readable).not.toContain(token);
  expect(readable).not.toContain("natter_refresh");
  expect(readable).not.toMatch(/refresh_token|access_token/);
  expect((await storedSession(page))?.user.name).toBe(alice.name);
  // Nor does an API answer the page's script can get: a refresh through the cookie answers an access token only.
  const answered = await page.evaluate(async () => {
    const response = await fetch("/api/refresh", { method: "POST", headers: { "natter-refresh-token": "cookie" } });
    return { status: response.status, body: await response.json() };
  });
  expect(answered.status).toBe(200);
  expect(answered.body.access_token).toBeTruthy();
  expect(answered.body).not.toHaveProperty("refresh_token");

  // A reload stays signed in: the page gets its tokens through the cookie, which rotates.
  const before = (await refreshCookie(page))[0].value;
  const refreshes: number[] = [];
  page.on("response", (response) => {
    if (response.url().endsWith("/api/refresh")) refreshes.push(response.status());
  });
  await page.reload();
  await expectOnline(page);
  await expect(page.getByRole("tab", { name: "Sign in" })).toHaveCount(0);
  await expect(page.getByText(alice.name).first()).toBeVisible();
  expect(refreshes).toContain(200);
  const after = await refreshCookie(page);
  expect(after[0].value).not.toBe(before);
  expect(await readableByThePage(page)).not.toContain(after[0].value);

  // Signing out removes the cookie; a reload then shows the sign-in page.
  await page.getByRole("button", { name: "Log out" }).click();
  await expect(page.getByRole("tab", { name: "Sign in" })).toBeVisible();
  await expect.poll(async () => (await refreshCookie(page)).length).toBe(0);
  await page.reload();
  await expect(page.getByRole("tab", { name: "Sign in" })).toBeVisible();
  await alice.context.close();
});
