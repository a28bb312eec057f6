/**
 * Direct messages and groups: a person writes to another from a room's member list, both chat both ways and the
 * conversation appears in the other's Direct messages; blocking closes it for both (the blocked person is told so,
 * and cannot start it again) until the block is lifted; a third person never sees it. A group of three: a message
 * reaches both others, and anyone may leave it.
 */

import { expect, test, type Page } from "@playwright/test";

import {
  createRoom,
  directLink,
  expectAllSent,
  expectMessages,
  log,
  messageByName,
  onDifferentGateways,
  register,
  roomIdOf,
  roomLink,
  say,
} from "./helpers";

/** The field of a conversation's composer (named after the other person, or the group). */
function composer(page: Page, name: string) {
  return page.getByRole("form", { name: "Write a message" }).getByLabel(`Message ${name}`, { exact: true });
}

/** Joins a public room from its address. */
async function joinRoom(page: Page, id: string, name: string): Promise<void> {
  await page.goto(`/r/${id}`);
  await page.getByRole("button", { name: "Join room" }).click();
  await expect(composer(page, name)).toBeVisible();
}

test("two people write to each other from a room's member list; a block closes it for both until lifted", async ({
  browser,
}) => {
  const alice = await register(browser, "alice");
  const room = "Hallway";
  const roomId = await createRoom(alice.page, room);
  const bob = await register(browser, "bob");
  await onDifferentGateways(alice, bob);
  await joinRoom(bob.page, roomId, room);

  // Alice opens the member list and writes to Bob: the conversation opens, named after him, apart from the rooms.
  await expect(alice.page.getByRole("button", { name: "2 members" })).toBeVisible({ timeout: 15_000 });
  await alice.page.getByRole("button", { name: "2 members" }).click();
  const members = alice.page.getByRole("region", { name: `Members of ${room}` });
  await expect(members.getByRole("button", { name: `Message ${alice.name}` })).toHaveCount(0);
  await members.getByRole("button", { name: `Message ${bob.name}`, exact: true }).click();
  await expect(alice.page.getByRole("heading", { level: 2, name: bob.name })).toBeVisible();
  await expect(alice.page.getByText("Direct message", { exact: true })).toBeVisible();
  const dm = roomIdOf(alice.page);
  expect(dm).not.toBe(roomId);
  await expect(directLink(alice.page, bob.name)).toHaveAttribute("aria-current", "page");
  await expect(roomLink(alice.page, bob.name)).toHaveCount(0);
  // No room's powers in a conversation.
  for (const name of ["Invite", "Delete room", "Leave room"]) {
    await expect(alice.page.getByRole("button", { name, exact: true })).toHaveCount(0);
  }
  await say(alice.page, bob.name, "hi Bob, a word in private?");
  await expectAllSent(alice.page, bob.name);

  // Bob's Direct messages bring it with its unread count (the room list is read every 10 s).
  await expect(directLink(bob.page, alice.name).getByLabel("1 unread")).toBeVisible({ timeout: 20_000 });
  await directLink(bob.page, alice.name).click();
  await expectMessages(bob.page, alice.name, ["hi Bob, a word in private?"]);
  await say(bob.page, alice.name, "sure, go ahead");
  await expectMessages(alice.page, bob.name, ["hi Bob, a word in private?", "sure, go ahead"]);
  await say(alice.page, bob.name, "thanks!");
  await expectMessages(bob.page, alice.name, ["hi Bob, a word in private?", "sure, go ahead", "thanks!"]);
  // Each sees the other online, in the list and in the conversation.
  await expect(directLink(alice.page, bob.name)).toHaveAccessibleName(/\(online\)/);
  await expect(alice.page.locator(".room-meta")).toContainText("Online");
  await expect(directLink(bob.page, alice.name)).toHaveAccessibleName(/\(online\)/);

  // Someone else sees nothing of it, and cannot open it.
  const carol = await register(browser, "carol");
  await expect(carol.page.getByRole("navigation", { name: "Direct messages" }).getByRole("link")).toHaveCount(0);
  await carol.page.goto(`/r/${dm}`);
  await expect(carol.page.getByRole("heading", { name: "This room is not available" })).toBeVisible();
  await expect(log(carol.page, alice.name)).toHaveCount(0);

  // Alice blocks Bob, asked first: both sides close.
  await alice.page.getByRole("button", { name: "Block", exact: true }).click();
  const confirm = alice.page.getByRole("group", { name: "Confirm blocking" });
  await expect(confirm).toContainText(`Block ${bob.name}?`);
  await confirm.getByRole("button", { name: "Cancel" }).click();
  await alice.page.getByRole("button", { name: "Block", exact: true }).click();
  await confirm.getByRole("button", { name: "Block", exact: true }).click();
  await expect(alice.page.getByText(`You blocked ${bob.name}.`)).toBeVisible();
  await expect(composer(alice.page, bob.name)).toHaveCount(0);
  await expect(bob.page.getByText("This conversation is closed.")).toBeVisible({ timeout: 10_000 });
  await expect(composer(bob.page, alice.name)).toHaveCount(0);
  // Its history stays, and so does its place in the list.
  await expectMessages(bob.page, alice.name, ["hi Bob, a word in private?", "sure, go ahead", "thanks!"]);
  await expect(directLink(bob.page, alice.name)).toBeVisible();
  // Bob cannot start it again; the page says why.
  await messageByName(bob.page, alice.name);
  await expect(
    bob.page.getByRole("alert").filter({ hasText: `${alice.name} does not take messages from you.` }),
  ).toBeVisible();
  await expect(bob.page.getByText("This conversation is closed.")).toBeVisible();

  // Alice finds Bob among the people she blocks, in her Account, and lifts the block there (the closed
  // conversation offers Unblock too): it opens again for both, and they are heard.
  await expect(alice.page.getByRole("button", { name: "Unblock", exact: true })).toBeVisible();
  await alice.page.getByRole("button", { name: "Account", exact: true }).click();
  const account = alice.page.getByRole("dialog", { name: "Account" });
  const blocked = account.getByRole("region", { name: "People you block" });
  await expect(blocked.getByRole("listitem")).toHaveCount(1);
  await expect(blocked.getByRole("listitem")).toContainText(bob.name);
  await blocked.getByRole("button", { name: `Unblock ${bob.name}` }).click();
  await expect(blocked.getByText("You block no one.")).toBeVisible();
  await account.getByRole("button", { name: "Close account" }).click();
  await expect(composer(alice.page, bob.name)).toBeVisible();
  await expect(alice.page.getByRole("button", { name: "Block", exact: true })).toBeVisible();
  await expect(composer(bob.page, alice.name)).toBeVisible({ timeout: 20_000 });
  await say(bob.page, alice.name, "all good?");
  await expect(log(alice.page, bob.name).getByText("all good?")).toBeVisible({ timeout: 20_000 });
  await say(alice.page, bob.name, "all good");
  await expect(log(bob.page, alice.name).getByText("all good", { exact: true })).toBeVisible({ timeout: 20_000 });
  await expectAllSent(bob.page, alice.name);
  await expectAllSent(alice.page, bob.name);

  for (const person of [alice, bob, carol]) await person.context.close();
});

test("a group of three: a message reaches both others, and anyone may leave", async ({ browser }) => {
  const ann = await register(browser, "ann");
  const ben = await register(browser, "ben");
  const cat = await register(browser, "cat");
  await onDifferentGateways(ann, ben);
  const group = `Trip ${Date.now().toString(36).slice(-4)}`;
  await ann.page.getByText("New group", { exact: true }).click();
  const form = ann.page.getByRole("form", { name: "New group" });
  await form.getByLabel("People (2 to 7 user names)").fill(`${ben.name}, ${cat.name}`);
  await form.getByLabel("Group name (optional)").fill(group);
  await form.getByRole("button", { name: "Create group" }).click();
  await expect(ann.page.getByRole("heading", { level: 2, name: group })).toBeVisible();
  // Its members, each but the user with a Message button, and nobody's moderation.
  await ann.page.getByRole("button", { name: "3 members" }).click();
  const members = ann.page.getByRole("region", { name: `Members of ${group}` });
  await expect(members.getByRole("button", { name: `Message ${ben.name}`, exact: true })).toBeVisible();
  await expect(members.getByRole("button", { name: `Message ${cat.name}`, exact: true })).toBeVisible();
  await expect(members.getByRole("button", { name: `Ban ${ben.name}` })).toHaveCount(0);
  await ann.page.getByRole("button", { name: "3 members" }).click();
  await expect(ann.page.getByRole("button", { name: "3 members" })).toBeVisible();
  await say(ann.page, group, "who is in for Saturday?");
  await expectAllSent(ann.page, group);

  for (const person of [ben, cat]) {
    await expect(directLink(person.page, group)).toBeVisible({ timeout: 20_000 });
    await directLink(person.page, group).click();
    await expectMessages(person.page, group, ["who is in for Saturday?"]);
  }
  await say(ben.page, group, "me!");
  for (const person of [ann, cat]) await expectMessages(person.page, group, ["who is in for Saturday?", "me!"]);

  // Cat leaves, asked first; the group goes from her list and carries on without her.
  await cat.page.getByRole("button", { name: "Leave group" }).click();
  await cat.page.getByRole("group", { name: "Confirm leaving the group" }).getByRole("button", { name: "Leave for good" }).click();
  await expect(directLink(cat.page, group)).toHaveCount(0);
  await expect(cat.page.getByRole("heading", { name: /^Welcome/ })).toBeVisible();
  await say(ann.page, group, "see you there");
  await expectMessages(ben.page, group, ["who is in for Saturday?", "me!", "see you there"]);

  for (const person of [ann, ben, cat]) await person.context.close();
});
