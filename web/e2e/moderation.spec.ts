/**
 * Moderation in the member list: the owner appoints a moderator; the moderator deletes a member's message and bans
 * the member (never acting on the owner); the banned person is taken out of the room and kept out, told why; the
 * owner lifts the ban from the Banned list and the person joins the public room again.
 */

import { join } from "node:path";

import { expect, test } from "@playwright/test";

import {
  act,
  createRoom,
  expectMessages,
  log,
  message,
  onDifferentGateways,
  openRoom,
  openSideForm,
  register,
  roomLink,
  say,
} from "./helpers";
import { ROOT } from "./stack";

test("the owner appoints a moderator, who bans a member; the owner lifts the ban and the member comes back", async ({
  browser,
}) => {
  // Names of their own, for the picture of the member list in docs/web.md.
  const owner = await register(browser, "olga", undefined, "olga");
  const room = "Book club";
  const id = await createRoom(owner.page, room);
  const moderator = await register(browser, "mika", undefined, "mika");
  const member = await register(browser, "pat", undefined, "pat");
  await onDifferentGateways(owner, moderator);
  for (const person of [moderator, member]) {
    await openRoom(person.page, room);
    await person.page.getByRole("button", { name: "Join room" }).click();
    await expect(person.page.getByRole("textbox", { name: `Message ${room}` })).toBeVisible();
  }
  await say(owner.page, room, "welcome, both");
  await say(member.page, room, "buy cheap watches here");
  await expectMessages(moderator.page, room, ["welcome, both", "buy cheap watches here"]);

  // The owner sees every other member's actions, and makes one a moderator.
  await expect(owner.page.getByRole("button", { name: "3 members" })).toBeVisible({ timeout: 15_000 });
  await owner.page.getByRole("button", { name: "3 members" }).click();
  const ownersList = owner.page.getByRole("region", { name: `Members of ${room}` });
  await expect(ownersList).toContainText(`${owner.name} owner (you)`);
  await expect(ownersList.getByRole("button", { name: `Ban ${member.name}`, exact: true })).toBeVisible();
  await expect(ownersList.getByRole("button", { name: `Ban ${owner.name}`, exact: true })).toHaveCount(0);
  await ownersList.getByRole("button", { name: `Make ${moderator.name} a moderator`, exact: true }).click();
  await expect(ownersList).toContainText(`${moderator.name} moderator`);
  await expect(ownersList.getByRole("button", { name: `Remove moderator role from ${moderator.name}` })).toBeVisible();

  // The moderator: Remove and Ban beside the plain member only; no role changes.
  await moderator.page.getByRole("button", { name: /^\d+ members?$/ }).click();
  const modsList = moderator.page.getByRole("region", { name: `Members of ${room}` });
  await expect(modsList).toContainText(`${moderator.name} moderator (you)`);
  await expect(modsList.getByRole("button", { name: `Ban ${member.name}`, exact: true })).toBeVisible();
  await expect(modsList.getByRole("button", { name: `Remove ${member.name}`, exact: true })).toBeVisible();
  for (const name of [`Ban ${owner.name}`, `Remove ${owner.name}`, `Make ${member.name} a moderator`]) {
    await expect(modsList.getByRole("button", { name, exact: true })).toHaveCount(0);
  }

  // The moderator deletes the member's message, for everyone.
  await act(moderator.page, room, "buy cheap watches here", "Delete message");
  await moderator.page.getByRole("group", { name: "Confirm deleting the message" }).getByRole("button", { name: "Delete" }).click();
  for (const page of [moderator.page, owner.page, member.page]) {
    await expect(log(page, room).getByText("Message deleted")).toBeVisible();
    await expect(log(page, room).getByText("buy cheap watches here")).toHaveCount(0);
  }

  // Then bans the member, asked first: Cancel keeps them.
  await modsList.getByRole("button", { name: `Ban ${member.name}`, exact: true }).click();
  const confirm = modsList.getByRole("group", { name: `Confirm banning ${member.name}` });
  await expect(confirm).toContainText("until the ban is lifted");
  await confirm.getByRole("button", { name: "Cancel" }).click();
  await modsList.getByRole("button", { name: `Ban ${member.name}`, exact: true }).click();
  await confirm.getByRole("button", { name: "Ban from room" }).click();
  await expect(modsList.getByRole("listitem").filter({ hasText: member.name })).toHaveCount(0);

  // The member's page says so; the room is taken away from them.
  await expect(member.page.getByText("You were banned from this room.")).toBeVisible({ timeout: 10_000 });
  await expect(member.page.getByRole("textbox", { name: `Message ${room}` })).toHaveCount(0);
  await expect(member.page.getByRole("button", { name: "Join again" })).toHaveCount(0);
  await expect(roomLink(member.page, room)).toHaveCount(0);
  await member.page.getByRole("button", { name: "Back to rooms" }).click();
  await expect(member.page.getByRole("heading", { name: /^Welcome/ })).toBeVisible();

  // Joining again is refused, by the join form and by the room's address alike.
  await (await openSideForm(member.page, "Join with a code", "Invite code or link")).fill(id);
  await member.page.getByRole("button", { name: "Join", exact: true }).click();
  await expect(member.page.getByRole("alert").filter({ hasText: "You are banned from this room." })).toBeVisible();
  await member.page.goto(`/r/${id}`);
  await expect(member.page.getByRole("heading", { name: "You are banned from this room" })).toBeVisible();
  await expect(member.page.getByRole("heading", { level: 2, name: room })).toHaveCount(0);

  // The owner finds the ban in the Banned list, with who made it, and lifts it.
  await expect(owner.page.getByRole("button", { name: "2 members" })).toBeVisible({ timeout: 15_000 });
  await ownersList.getByRole("button", { name: "Banned users" }).click();
  const banned = owner.page.getByRole("region", { name: `Banned from ${room}` });
  await expect(banned).toContainText(`${member.name} banned by ${moderator.name}`);
  await owner.page.mouse.move(0, 0);
  await ownersList.screenshot({ path: join(ROOT, "docs", "screenshots", "moderation.png") });
  await banned.getByRole("button", { name: `Unban ${member.name}`, exact: true }).click();
  await expect(banned).toContainText("Nobody is banned from this room.");

  // The member opens the public room again, joins, and is heard.
  await member.page.goto(`/r/${id}`);
  await expect(member.page.getByRole("heading", { level: 2, name: room })).toBeVisible();
  await member.page.getByRole("button", { name: "Join room" }).click();
  await expect(member.page.getByRole("textbox", { name: `Message ${room}` })).toBeVisible();
  await say(member.page, room, "sorry about that");
  await expect(message(owner.page, room, "sorry about that")).toBeVisible({ timeout: 20_000 });
  await expect(log(member.page, room).getByText("Sending…")).toHaveCount(0, { timeout: 20_000 });

  for (const person of [owner, moderator, member]) await person.context.close();
});
