/**
 * Accessibility checked by a tool, not only by hand: axe-core on the sign-in page, on a room with an edited
 * message, a deleted one, reactions and a reply, and on search results, on a desktop and on a phone. No serious or
 * critical violation.
 */

import AxeBuilder from "@axe-core/playwright";
import { expect, test, type Page } from "@playwright/test";

import { act, createRoom, log, message, register, say, searchResults, searchUntil, uniqueName } from "./helpers";
import { loadState } from "./stack";

const PHONE = { width: 360, height: 740 };

/** The serious and critical violations axe finds on the page as it is, described. */
async function violations(page: Page): Promise<string[]> {
  const results = await new AxeBuilder({ page }).analyze();
  return results.violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => `${v.id} (${v.impact}): ${v.help} at ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`);
}

test("axe finds no serious or critical violation on the sign-in page, in a room or in search results, on a desktop and a phone", async ({
  browser,
}) => {
  const visitor = await browser.newContext({ baseURL: loadState().api });
  const login = await visitor.newPage();
  for (const viewport of [{ width: 1280, height: 800 }, PHONE]) {
    await login.setViewportSize(viewport);
    await login.goto("/");
    await expect(login.getByRole("button", { name: "Sign in" })).toBeVisible();
    expect(await violations(login), `sign-in page at ${viewport.width} px`).toEqual([]);
  }
  await visitor.close();

  const person = await register(browser, "ally");
  const room = uniqueName("Checked");
  await createRoom(person.page, room);
  await say(person.page, room, "first words");
  await say(person.page, room, "to be taken back");
  await act(person.page, room, "first words", "Edit message");
  await person.page.getByRole("textbox", { name: "New text" }).fill("first words, edited");
  await person.page.getByRole("textbox", { name: "New text" }).press("Enter");
  await act(person.page, room, "first words, edited", "React");
  await person.page.getByRole("button", { name: "React with 🎉" }).click();
  await act(person.page, room, "first words, edited", "Reply");
  await say(person.page, room, "an answer");
  await act(person.page, room, "to be taken back", "Delete message");
  await person.page.getByRole("group", { name: "Confirm deleting the message" }).getByRole("button", { name: "Delete" }).click();
  await expect(log(person.page, room).getByText("Message deleted")).toBeVisible();
  await expect(message(person.page, room, "an answer").getByRole("button", { name: /^Replying to / })).toBeVisible();
  for (const viewport of [{ width: 1280, height: 800 }, PHONE]) {
    await person.page.setViewportSize(viewport);
    await message(person.page, room, "first words, edited").hover();
    expect(await violations(person.page), `room at ${viewport.width} px`).toEqual([]);
  }
  // Search results, the words marked.
  await person.page.setViewportSize({ width: 1280, height: 800 });
  await searchUntil(person.page, "words", async () => {
    await expect(searchResults(person.page)).toHaveCount(1, { timeout: 3_000 });
  });
  for (const viewport of [{ width: 1280, height: 800 }, PHONE]) {
    await person.page.setViewportSize(viewport);
    expect(await violations(person.page), `search results at ${viewport.width} px`).toEqual([]);
  }
  await person.context.close();
});
