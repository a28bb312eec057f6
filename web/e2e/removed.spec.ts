/**
 * Taken out of a room from elsewhere while it is open: the room is deleted by its owner, or the owner removes the
 * member. The page says so in place of the composer, takes nothing more for that room, and the room leaves the
 * member's list.
 */

import { expect, test } from "@playwright/test";

import {
  createRoom,
  expectMessages,
  pageAccessToken,
  pairInRoom,
  register,
  roomIdOf,
  roomLink,
  say,
  uniqueName,
} from "./helpers";

test("the owner deletes a room through the API while another has it open: the room says it was deleted", async ({
  browser,
}) => {
  const { first: owner, second: member, room } = await pairInRoom(browser, "Deleted", ["owner", "member"]);
  await say(member.page, room, "anyone still here?");
  await expectMessages(owner.page, room, ["anyone still here?"]);
  const id = roomIdOf(owner.page);

  // Deleted from outside both pages (another device of the owner, a script).
  const token = await pageAccessToken(owner.page);
  const deleted = await owner.context.request.delete(`/api/rooms/${id}`, { headers: { authorization: `Bearer ${token}` } });
  expect(deleted.status()).toBe(204);

  for (const page of [member.page, owner.page]) {
    await expect(page.getByText("This room was deleted.")).toBeVisible({ timeout: 10_000 });
    // Nothing more can be written to it, and it is out of the room list.
    await expect(page.getByRole("textbox", { name: `Message ${room}` })).toHaveCount(0);
    await expect(roomLink(page, room)).toHaveCount(0);
  }
  // What was said stays readable until the person moves on.
  await expectMessages(member.page, room, ["anyone still here?"]);
  await member.page.getByRole("button", { name: "Back to rooms" }).click();
  await expect(member.page.getByRole("heading", { name: /^Welcome/ })).toBeVisible();
  await member.page.goto(`/r/${id}`);
  await expect(member.page.getByRole("heading", { name: "This room is not available" })).toBeVisible();
  await owner.context.close();
  await member.context.close();
});

test("the owner removes a member through the member list: the member's page says so and the room leaves their list", async ({
  browser,
}) => {
  const owner = await register(browser, "owner");
  const room = uniqueName("Crew");
  const id = await createRoom(owner.page, room, { private: true });
  await owner.page.getByRole("button", { name: "Invite" }).click();
  const invite = await owner.page.getByLabel("Invite code", { exact: true }).inputValue();
  const member = await register(browser, "member");
  await member.page.goto(`/r/${id}?code=${invite.split(".")[1]}`);
  await expect(member.page.getByRole("heading", { level: 2, name: room })).toBeVisible();
  await say(member.page, room, "hi all");
  await expectMessages(owner.page, room, ["hi all"]);

  // A member sees the list without any Remove.
  await member.page.getByRole("button", { name: "2 members" }).click();
  const theirList = member.page.getByRole("region", { name: `Members of ${room}` });
  await expect(theirList).toContainText(`${owner.name} owner`);
  await expect(theirList.getByRole("button", { name: /^Remove/ })).toHaveCount(0);

  await expect(owner.page.getByRole("button", { name: "2 members" })).toBeVisible({ timeout: 15_000 });
  await owner.page.getByRole("button", { name: "2 members" }).click();
  const list = owner.page.getByRole("region", { name: `Members of ${room}` });
  await expect(list).toContainText(member.name);
  await expect(list.getByRole("button", { name: `Remove ${owner.name}` })).toHaveCount(0);
  // Asked first: Cancel keeps the member.
  await list.getByRole("button", { name: `Remove ${member.name}` }).click();
  await list.getByRole("button", { name: "Cancel" }).click();
  await expect(list).toContainText(member.name);
  await list.getByRole("button", { name: `Remove ${member.name}` }).click();
  await list.getByRole("group", { name: `Confirm removing ${member.name}` }).getByRole("button", { name: "Remove from room" }).click();
  await expect(list).not.toContainText(member.name);
  await expect(owner.page.getByRole("button", { name: "1 member" })).toBeVisible({ timeout: 10_000 });

  await expect(member.page.getByText("You were removed from this room.")).toBeVisible({ timeout: 10_000 });
  await expect(member.page.getByRole("textbox", { name: `Message ${room}` })).toHaveCount(0);
  await expect(roomLink(member.page, room)).toHaveCount(0);
  await owner.context.close();
  await member.context.close();
});

test("removing someone who has just left says so in the member list", async ({ browser }) => {
  const { first: owner, second: member, room } = await pairInRoom(browser, "Leavers", ["owner", "member"]);
  const id = roomIdOf(owner.page);
  await expect(owner.page.getByRole("button", { name: "2 members" })).toBeVisible({ timeout: 15_000 });
  await owner.page.getByRole("button", { name: "2 members" }).click();
  const list = owner.page.getByRole("region", { name: `Members of ${room}` });
  await list.getByRole("button", { name: `Remove ${member.name}` }).click();
  // The member leaves (from another device) just before the owner confirms.
  const token = await pageAccessToken(member.page);
  const left = await member.context.request.post(`/api/rooms/${id}/leave`, { headers: { authorization: `Bearer ${token}` } });
  expect(left.status()).toBe(204);
  await list.getByRole("button", { name: "Remove from room" }).click();
  await expect(list.getByRole("alert")).toHaveText(`Could not remove ${member.name}: They are not a member of this room any more.`);
  await owner.context.close();
  await member.context.close();
});
