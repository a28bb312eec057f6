/**
 * Edits, deletions, reactions and replies in real Chromium: two people on two gateways, each change seen by both
 * at once, kept through a reload and a gateway killed under one of them.
 */

import { expect, test } from "@playwright/test";

import { act, expectOnline, gatewayOf, log, message, pairInRoom, say, seedMessages } from "./helpers";
import { gatewayIndex, loadState, startGateway, stopGateway } from "./stack";

test("two people edit, delete, react and reply; every change survives a reload and a gateway kill", async ({
  browser,
}) => {
  test.setTimeout(150_000);
  const state = loadState();
  const { first: alice, second: bob, room } = await pairInRoom(browser, "Changes", ["alice", "bob"]);
  await say(alice.page, room, "helo everyone");
  await say(bob.page, room, "a secret said too soon");
  for (const page of [alice.page, bob.page]) await expect(message(page, room, "a secret said too soon")).toBeVisible();

  // Edit: the author's own words, by keyboard; the other side sees the new text, marked edited.
  await act(alice.page, room, "helo everyone", "Edit message");
  const box = alice.page.getByRole("textbox", { name: "New text" });
  await box.fill("hello everyone");
  await box.press("Enter");
  for (const page of [alice.page, bob.page]) {
    await expect(message(page, room, "hello everyone")).toContainText("(edited)");
  }
  // Nobody edits another's words: no such action on them.
  await message(bob.page, room, "hello everyone").hover();
  await expect(message(bob.page, room, "hello everyone").getByRole("button", { name: "Edit message" })).toHaveCount(0);

  // React: counts on both sides, pressed for who reacted; a click toggles.
  await act(bob.page, room, "hello everyone", "React");
  await bob.page.getByRole("button", { name: "React with 👍" }).click();
  for (const page of [alice.page, bob.page]) {
    await expect(message(page, room, "hello everyone").getByRole("button", { name: "👍 1" })).toBeVisible();
  }
  await expect(message(bob.page, room, "hello everyone").getByRole("button", { name: "👍 1" })).toHaveAttribute(
    "aria-pressed",
    "true",
  );
  await message(alice.page, room, "hello everyone").getByRole("button", { name: "👍 1" }).click();
  for (const page of [alice.page, bob.page]) {
    await expect(message(page, room, "hello everyone").getByRole("button", { name: "👍 2" })).toBeVisible();
  }

  // Reply: the answer quotes what it answers.
  await act(bob.page, room, "hello everyone", "Reply");
  await expect(bob.page.getByText(`Replying to ${alice.name}`)).toBeVisible();
  await say(bob.page, room, "welcome to you too");
  for (const page of [alice.page, bob.page]) {
    await expect(
      message(page, room, "welcome to you too").getByRole("button", { name: new RegExp(`^Replying to ${alice.name}: hello everyone`) }),
    ).toBeVisible();
  }

  // Delete: the room's owner takes back another's words, after confirming; both see the tombstone.
  await act(alice.page, room, "a secret said too soon", "Delete message");
  await alice.page.getByRole("group", { name: "Confirm deleting the message" }).getByRole("button", { name: "Delete" }).click();
  for (const page of [alice.page, bob.page]) {
    await expect(log(page, room).getByText("Message deleted")).toBeVisible();
    await expect(log(page, room)).not.toContainText("a secret said too soon");
  }

  // Everything as it was after a reload (from history) …
  for (const page of [alice.page, bob.page]) {
    await page.reload();
    await expectOnline(page);
    await expect(message(page, room, "hello everyone")).toContainText("(edited)");
    await expect(message(page, room, "hello everyone").getByRole("button", { name: "👍 2" })).toBeVisible();
    await expect(log(page, room).getByText("Message deleted")).toBeVisible();
    await expect(log(page, room)).not.toContainText("a secret said too soon");
    await expect(message(page, room, "welcome to you too").getByRole("button", { name: /^Replying to / })).toBeVisible();
  }

  // … and after the gateway under one of them dies: changes made meanwhile arrive on the reconnect.
  const killed = gatewayIndex(state, await gatewayOf(alice.page));
  await stopGateway(state, killed, "SIGKILL");
  await act(bob.page, room, "welcome to you too", "Edit message");
  await bob.page.getByRole("textbox", { name: "New text" }).fill("welcome, truly");
  await bob.page.getByRole("textbox", { name: "New text" }).press("Enter");
  await message(bob.page, room, "hello everyone").getByRole("button", { name: "👍 2" }).click();
  await expectOnline(alice.page);
  await expect(message(alice.page, room, "welcome, truly")).toContainText("(edited)");
  await expect(message(alice.page, room, "hello everyone").getByRole("button", { name: "👍 1" })).toBeVisible();
  await startGateway(state, killed);

  // A reply to a message far back: its quote loads older history until the original is in view, and focuses it.
  await say(alice.page, room, "the original question");
  await act(bob.page, room, "the original question", "Reply");
  const roomId = new URL(alice.page.url()).pathname.split("/").pop() as string;
  await seedMessages(alice.page, roomId, 120, "filler");
  await say(bob.page, room, "the late answer");
  await alice.page.reload();
  await expectOnline(alice.page);
  await expect(message(alice.page, room, "the original question")).toHaveCount(0);
  await message(alice.page, room, "the late answer").getByRole("button", { name: /message this answers|Replying to/ }).click();
  await expect(message(alice.page, room, "the original question")).toBeFocused({ timeout: 20_000 });

  await alice.context.close();
  await bob.context.close();
});
