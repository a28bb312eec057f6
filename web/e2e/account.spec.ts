/**
 * The Account dialog: a user signed in on two devices ends the other one's session from the first (which is
 * signed out within seconds), then changes the password there (the first stays signed in; the new password signs
 * in, the old one no longer does). The first device is a phone, so the dialog is used at a phone's width.
 */

import { expect, test } from "@playwright/test";

import { closedWith, expectOnline, register, signIn, storedSession } from "./helpers";

const SIGNED_OUT = "You were signed out: this session was ended (logged out elsewhere). Sign in again.";
const NEW_PASSWORD = "a much better horse";

test("the Account dialog ends another device's session and changes the password", async ({ browser }) => {
  const phone = await register(browser, "acct", { width: 390, height: 844 });
  const laptop = await signIn(browser, phone);
  const before = await closedWith(4003);

  // The phone opens Account from the sidebar, by keyboard: two sessions, this one marked.
  const opener = phone.page.getByRole("button", { name: "Account", exact: true });
  await opener.focus();
  await phone.page.keyboard.press("Enter");
  const dialog = phone.page.getByRole("dialog", { name: "Account" });
  await expect(dialog).toBeVisible();
  const sessions = dialog.locator("ul.sessions > li");
  await expect(sessions).toHaveCount(2);
  await expect(sessions.filter({ hasText: "This device" })).toHaveCount(1);
  await expect(sessions.first()).toContainText("This device");
  await expect(sessions.first()).toContainText("Chrome on Linux");
  const box = await dialog.boundingBox();
  expect(box && box.x >= 0 && box.x + box.width <= 390).toBe(true);

  // Ending the laptop's session signs it out within seconds (its gateway closes with 4003).
  const end = dialog.getByRole("button", { name: /^End session on / });
  await expect(end).toHaveCount(1);
  await end.click();
  await expect(sessions).toHaveCount(1);
  await expect(dialog.getByText("You are not signed in anywhere else.")).toBeVisible();
  await expect(laptop.page.getByText(SIGNED_OUT)).toBeVisible({ timeout: 8_000 });
  await expect.poll(() => closedWith(4003), { timeout: 5_000 }).toBeGreaterThan(before);

  // The password form: a mismatch is caught here, a too-short or wrong password by the API.
  const current = dialog.getByLabel("Current password", { exact: true });
  const fresh = dialog.getByLabel("New password", { exact: true });
  const confirm = dialog.getByLabel("Confirm new password", { exact: true });
  const change = dialog.getByRole("button", { name: "Change password" });
  await current.fill(phone.password);
  await fresh.fill(NEW_PASSWORD);
  await confirm.fill("something else");
  await change.click();
  await expect(dialog.getByRole("alert")).toHaveText("The new passwords do not match.");
  await fresh.fill("short");
  await confirm.fill("short");
  await change.click();
  await expect(dialog.getByRole("alert")).toHaveText("The password must be at least 8 characters long.");
  await current.fill("not my password");
  await fresh.fill(NEW_PASSWORD);
  await confirm.fill(NEW_PASSWORD);
  await change.click();
  await expect(dialog.getByRole("alert")).toHaveText("The current password is not right.");
  await current.fill(phone.password);
  await change.click();
  await expect(dialog.getByText("Password changed. You were not signed in anywhere else.")).toBeVisible();
  await expect(current).toHaveValue("");

  // Escape closes the dialog; the phone is still signed in and online.
  await phone.page.keyboard.press("Escape");
  await expect(dialog).toBeHidden();
  await expectOnline(phone.page);
  expect((await storedSession(phone.page))?.user.name).toBe(phone.name);

  // The new password signs in; the old one does not.
  const login = (password: string) =>
    laptop.context.request.post("/api/login", { data: { username: phone.name, password } });
  expect((await login(phone.password)).status()).toBe(401);
  expect((await login(NEW_PASSWORD)).status()).toBe(200);
  await expectOnline(phone.page);

  await laptop.context.close();
  await phone.context.close();
});
