/**
 * Searching messages in real Chromium against the real stack: words said in a room are found (after the
 * persister stored them), a result opens its room at the message, a deleted message is found no more, nothing
 * found is said plainly, and another person's private room stays out of the results.
 */

import { expect, test } from "@playwright/test";

import {
  act,
  createRoom,
  expectAllSent,
  expectOnline,
  message,
  pairInRoom,
  say,
  search,
  searchResults as results,
  searchUntil,
  seedMessages,
} from "./helpers";

test("messages are found by their words, open in their room, and are not found once deleted or in others' private rooms", async ({
  browser,
}) => {
  test.setTimeout(150_000);
  const { first: alice, second: bob, room } = await pairInRoom(browser, "Finds", ["alice", "bob"]);
  const roomId = new URL(alice.page.url()).pathname.split("/").pop() as string;
  await say(alice.page, room, "The quarterly budget spreadsheet is ready");
  await say(bob.page, room, "a fleeting remark about pelicans");
  for (const page of [alice.page, bob.page]) {
    await expect(message(page, room, "a fleeting remark about pelicans")).toBeVisible();
  }
  await expectAllSent(alice.page, room);
  // Enough after it that opening the room at the newest would not show it: the jump must load older history.
  await seedMessages(alice.page, roomId, 80, "filler");

  // Found, on a fresh page (nothing of the room held yet): the result names the room and the author, and marks
  // the word.
  await alice.page.reload();
  await expectOnline(alice.page);
  await searchUntil(alice.page, "BUDGET", async () => {
    await expect(results(alice.page)).toHaveCount(1, { timeout: 3_000 });
  });
  const found = results(alice.page).first();
  await expect(found).toContainText(room);
  await expect(found).toContainText(alice.name);
  await expect(found).toContainText("The quarterly budget spreadsheet is ready");
  await expect(found.locator("mark")).toHaveText("budget");
  await expect(alice.page.getByRole("heading", { level: 2, name: "Search: BUDGET" })).toBeVisible();

  // Opened: the room shows, with the message brought into view, focused and highlighted.
  await found.click();
  await expect(alice.page.getByRole("heading", { level: 2, name: room })).toBeVisible();
  const target = message(alice.page, room, "The quarterly budget spreadsheet is ready");
  await expect(target).toHaveClass(/\bhighlight\b/, { timeout: 20_000 });
  await expect(target).toBeFocused();
  await expect(target).toBeInViewport();
  // The address is the room's own again; Back returns to the results.
  await expect(alice.page).toHaveURL(new RegExp(`/r/${roomId}$`));
  await alice.page.goBack();
  await expect(results(alice.page)).toHaveCount(1);

  // Deleted by its author from the room: found before, not once the persister has applied the deletion.
  await searchUntil(alice.page, "pelicans", async () => {
    await expect(results(alice.page)).toHaveCount(1, { timeout: 3_000 });
  });
  await expect(results(alice.page).first()).toContainText(bob.name);
  await act(bob.page, room, "a fleeting remark about pelicans", "Delete message");
  await bob.page.getByRole("group", { name: "Confirm deleting the message" }).getByRole("button", { name: "Delete" }).click();
  await expect(message(bob.page, room, "pelicans")).toHaveCount(0);
  await searchUntil(alice.page, "pelicans", async () => {
    await expect(alice.page.getByText(/No messages found for pelicans/)).toBeVisible({ timeout: 3_000 });
  });
  await expect(results(alice.page)).toHaveCount(0);

  // Words nobody said: said plainly.
  await search(alice.page, "xylophone");
  await expect(alice.page.getByText(/No messages found for xylophone/)).toBeVisible();

  // Bob's private room, without Alice: Bob finds his words there; Alice does not.
  const hideout = `Hideout ${Date.now().toString(36)}`;
  await createRoom(bob.page, hideout, { private: true });
  await say(bob.page, hideout, "flamingo plans for the weekend");
  await searchUntil(bob.page, "flamingo", async () => {
    await expect(results(bob.page)).toHaveCount(1, { timeout: 3_000 });
  });
  await expect(results(bob.page).first()).toContainText(hideout);
  await search(alice.page, "flamingo");
  await expect(alice.page.getByText(/No messages found for flamingo/)).toBeVisible();
  await expect(results(alice.page)).toHaveCount(0);

  await alice.context.close();
  await bob.context.close();
});
