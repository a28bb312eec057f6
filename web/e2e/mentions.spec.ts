/**
 * Mentions in real Chromium: alice mentions bob with the composer's @ picker while bob is in another room; bob sees
 * the mention badge, a notification while his page is hidden, the message marked when he opens the room, the
 * badge cleared there and at once on his other tab, and the mentions page opening the message in its room. Then
 * bob mutes the room: no unread badge for it any more, but a mention still shows.
 */

import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import { expect, test, type Page } from "@playwright/test";

import { createRoom, expectOnline, log, message, pairInRoom, roomLink, say } from "./helpers";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const SCREENSHOTS = join(ROOT, "docs", "screenshots");

declare global {
  interface Window {
    __shown: { t: string; o?: NotificationOptions }[];
    __hidden: boolean;
  }
}

/** Records the notifications the page shows, and lets the test hide the page. */
function watchNotifications(): void {
  window.__shown = [];
  window.__hidden = false;
  const Native = window.Notification;
  class Recorded extends Native {
    constructor(title: string, options?: NotificationOptions) {
      window.__shown.push({ t: title, o: options });
      super(title, options);
    }
  }
  window.Notification = Recorded as typeof Notification;
  Object.defineProperty(Document.prototype, "visibilityState", {
    configurable: true,
    get: () => (window.__hidden ? "hidden" : "visible"),
  });
  Object.defineProperty(Document.prototype, "hidden", { configurable: true, get: () => window.__hidden });
}

async function setHidden(page: Page, hidden: boolean): Promise<void> {
  await page.evaluate((value) => {
    window.__hidden = value;
    document.dispatchEvent(new Event("visibilitychange"));
  }, hidden);
}

/** The mention badge of a room in the sidebar. */
function mentionBadge(page: Page, room: string) {
  return roomLink(page, room).locator(".mention-badge");
}

test("a mention picked with @ shows as a badge, a notification, a marked message and on the mentions page", async ({
  browser,
}) => {
  test.setTimeout(150_000);
  const { first: alice, second: bob, room } = await pairInRoom(browser, "Mentions", ["alice", "bob"]);
  const api = new URL(alice.page.url()).origin;
  await bob.context.grantPermissions(["notifications"], { origin: api });
  await bob.context.addInitScript(watchNotifications);
  await bob.page.reload();
  await expectOnline(bob.page);
  // Bob is elsewhere: the room alice writes in is not open for him.
  await createRoom(bob.page, `${bob.name}s`);
  await setHidden(bob.page, true);

  // Alice picks bob from the @ picker: arrows and Enter.
  const box = alice.page.getByRole("textbox", { name: `Message ${room}` });
  await box.click();
  await box.pressSequentially(`hey @${bob.name.slice(0, 4)}`);
  const picker = alice.page.getByRole("listbox", { name: "Mention someone" });
  await expect(picker.getByRole("option", { name: `@${bob.name}` })).toBeVisible();
  await box.press("ArrowDown");
  await box.press("ArrowUp");
  await box.press("Enter");
  await expect(picker).toHaveCount(0);
  await expect(box).toHaveValue(`hey @${bob.name} `);
  await box.pressSequentially("lunch at noon?");
  await box.press("Enter");
  const said = `hey @${bob.name} lunch at noon?`;
  await expect(message(alice.page, room, said)).toBeVisible();
  // The @ picker closes with Escape.
  await box.pressSequentially("@");
  await expect(picker).toBeVisible();
  await box.press("Escape");
  await expect(picker).toHaveCount(0);
  await box.fill("");

  // Bob: a mention badge on the room, and a notification while his page is hidden.
  await expect(mentionBadge(bob.page, room)).toHaveText("@1");
  await expect.poll(() => bob.page.evaluate(() => window.__shown.map((n) => n.t))).toEqual([
    `${alice.name} mentioned you in ${room}`,
  ]);
  const shown = await bob.page.evaluate(() => window.__shown[0].o);
  expect(shown?.body).toBe(said);
  await setHidden(bob.page, false);

  // A second tab of bob's (the same session) shows the badge too.
  const other = await bob.context.newPage();
  await other.goto("/");
  await expectOnline(other);
  await expect(mentionBadge(other, room)).toHaveText("@1");
  await expect(other.getByRole("navigation", { name: "Mentions" }).locator(".mention-badge")).toHaveText("@1");

  // The mentions page on the second tab: the message, its room and author.
  await other.getByRole("navigation", { name: "Mentions" }).getByRole("link", { name: /Mentions/ }).click();
  await expect(other).toHaveURL(/\/mentions$/);
  const hits = other.getByRole("list", { name: "Messages that mention you" }).getByRole("link");
  await expect(hits).toHaveCount(1);
  await expect(hits.first()).toContainText(room);
  await expect(hits.first()).toContainText(alice.name);
  await expect(hits.first()).toContainText(said);
  await other.screenshot({ path: join(SCREENSHOTS, "mentions.png") });

  // Bob opens the room on the first tab: the message is marked as mentioning him, the badge goes, on both tabs.
  await roomLink(bob.page, room).click();
  const marked = message(bob.page, room, said);
  await expect(marked).toHaveClass(/mentions-me/);
  await expect(marked).toContainText("(mentions you)");
  await expect(marked.locator(".mention.me")).toHaveText(`@${bob.name}`);
  await expect(mentionBadge(bob.page, room)).toHaveCount(0);
  // Pushed to the other tab at once (its own listing is re-read every 10 s only).
  await expect(mentionBadge(other, room)).toHaveCount(0, { timeout: 2_500 });
  await expect(other.getByRole("navigation", { name: "Mentions" }).locator(".mention-badge")).toHaveCount(0);

  // A mention opens its room with the message in view.
  await other.goto("/");
  await expectOnline(other);
  await other.getByRole("navigation", { name: "Mentions" }).getByRole("link", { name: /Mentions/ }).click();
  await hits.first().click();
  await expect(other).toHaveURL(new RegExp(`/r/[a-z0-9]+$`));
  await expect(other.getByRole("heading", { level: 2, name: room })).toBeVisible();
  await expect(message(other, room, said)).toBeInViewport();
  await other.close();

  // Bob mutes the room: alice's plain messages leave no unread badge, a mention still counts.
  await bob.page.getByRole("button", { name: "Mute", exact: true }).click();
  await expect(bob.page.getByRole("button", { name: "Unmute" })).toHaveAttribute("aria-pressed", "true");
  await createRoom(bob.page, `${bob.name}t`);
  await say(alice.page, room, "anyone there?");
  await expect(message(alice.page, room, "anyone there?")).toBeVisible();
  await expect(roomLink(bob.page, room).getByRole("img", { name: "muted" })).toBeVisible();
  await bob.page.waitForTimeout(1_000);
  await expect(roomLink(bob.page, room).locator(".badge")).toHaveCount(0);
  await say(alice.page, room, `@${bob.name} you still there?`);
  await expect(mentionBadge(bob.page, room)).toHaveText("@1");
  await expect(roomLink(bob.page, room).locator(".badge:not(.mention-badge)")).toHaveCount(0);
  await expect(bob.page).toHaveTitle(/^\(1\) /);

  // On a phone: the room with the mention marked, and its header's Unmute.
  await bob.page.setViewportSize({ width: 390, height: 844 });
  await bob.page.getByRole("button", { name: "Back to rooms" }).click();
  await roomLink(bob.page, room).click();
  await expect(message(bob.page, room, "you still there?")).toHaveClass(/mentions-me/);
  await expect(log(bob.page, room)).toBeVisible();
  await bob.page.screenshot({ path: join(SCREENSHOTS, "phone-mentions.png") });
  await bob.page.getByRole("button", { name: "Unmute" }).click();
  await expect(bob.page.getByRole("button", { name: "Mute", exact: true })).toBeVisible();

  await alice.context.close();
  await bob.context.close();
});
