/** What a person does in the app, driven by roles and accessible names, for the end-to-end tests. */

import { expect, type Browser, type BrowserContext, type Locator, type Page } from "@playwright/test";

import { loadState } from "./stack";

export interface Person {
  name: string;
  password?: string;
  context: BrowserContext;
  page: Page;
}

let counter = 0;

/** A user name no earlier run has taken (3 to 32 characters). */
export function uniqueName(prefix: string): string {
  counter += 1;
  return `${prefix}${Date.now().toString(36).slice(-6)}${counter}`;
}

export const PASSWORD = "correct horse battery";

async function newPage(browser: Browser, viewport?: { width: number; height: number }) {
  const context = await browser.newContext({
    baseURL: loadState().api,
    viewport: viewport ?? { width: 1280, height: 800 },
    permissions: ["clipboard-read", "clipboard-write"],
  });
  const page = await context.newPage();
  page.on("pageerror", (err) => {
    throw new Error(`uncaught error in the page: ${err.message}`);
  });
  return { context, page };
}

/** The connection status line. */
export function status(page: Page): Locator {
  return page.getByRole("status").first();
}

export async function expectOnline(page: Page): Promise<void> {
  await expect(status(page)).toHaveAttribute("data-state", "online", { timeout: 20_000 });
}

/** Creates an account through the sign-in page, named `prefix` and a unique suffix (or exactly `name`). */
export async function register(
  browser: Browser,
  prefix: string,
  viewport?: { width: number; height: number },
  exactName?: string,
) {
  const { context, page } = await newPage(browser, viewport);
  const name = exactName ?? uniqueName(prefix);
  await page.goto("/");
  await page.getByRole("tab", { name: "Create account" }).click();
  await page.getByLabel("User name").fill(name);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Create account" }).click();
  await expectOnline(page);
  return { name, password: PASSWORD, context, page } satisfies Person;
}

/** Enters as a guest by name. */
export async function guest(browser: Browser, prefix: string, viewport?: { width: number; height: number }) {
  const { context, page } = await newPage(browser, viewport);
  const name = uniqueName(prefix);
  await page.goto("/");
  await page.getByRole("tab", { name: "Guest" }).click();
  await page.getByLabel("Your name").fill(name);
  await page.getByRole("button", { name: "Continue as guest" }).click();
  await expectOnline(page);
  return { name, context, page } satisfies Person;
}

/** Signs in to an existing account in a new browser context (a second device). */
export async function signIn(browser: Browser, person: Person): Promise<Person> {
  const { context, page } = await newPage(browser);
  await page.goto("/");
  await page.getByLabel("User name").fill(person.name);
  await page.getByLabel("Password").fill(person.password ?? "");
  await page.getByRole("button", { name: "Sign in" }).click();
  await expectOnline(page);
  return { ...person, context, page };
}

/** The id of the gateway a page is connected to. */
export async function gatewayOf(page: Page): Promise<string> {
  await expectOnline(page);
  const id = await status(page).getAttribute("data-gateway");
  if (!id) throw new Error("the status line names no gateway");
  return id;
}

/**
 * Makes `b` use another gateway than `a`: the API assigns the least-loaded one, which after `a` connected is the
 * other; a reload asks again if the load report had not arrived yet.
 */
export async function onDifferentGateways(a: Person, b: Person): Promise<void> {
  const first = await gatewayOf(a.page);
  for (let attempt = 0; attempt < 8; attempt++) {
    if ((await gatewayOf(b.page)) !== first) return;
    await b.page.waitForTimeout(400);
    await b.page.reload();
  }
  throw new Error(`${a.name} and ${b.name} stay on the same gateway ${first}`);
}

/**
 * Opens one of the sidebar's folding forms ("New room", "Join with a code") and returns its field `label`. Once, a
 * click on "New room" just after a page loaded left its field hidden for 90 s (the form probably closed again as the
 * sidebar was drawn anew): the form is opened again until its field shows, never clicked while open (a click would
 * close it).
 */
export async function openSideForm(page: Page, title: string, label: string): Promise<Locator> {
  const field = page.getByLabel(label);
  await expect(async () => {
    if (!(await field.isVisible())) await page.getByText(title, { exact: true }).click();
    await expect(field).toBeVisible({ timeout: 1_000 });
  }).toPass({ timeout: 20_000 });
  return field;
}

/** Creates a room from the sidebar; returns its id (the page then shows it). */
export async function createRoom(page: Page, name: string, options: { private?: boolean } = {}): Promise<string> {
  await (await openSideForm(page, "New room", "Room name")).fill(name);
  if (options.private) await page.getByLabel("Private (invite only)").check();
  await page.getByRole("button", { name: "Create room" }).click();
  await expect(page.getByRole("heading", { level: 2, name })).toBeVisible();
  await page.waitForURL(/\/r\/[a-z0-9]+$/);
  return new URL(page.url()).pathname.split("/").pop() as string;
}

/** The link to a room in the sidebar. */
export function roomLink(page: Page, name: string): Locator {
  return page.getByRole("navigation", { name: "Rooms" }).getByRole("link", { name: new RegExp(`^\\S*\\s*${name}`) });
}

/** Opens a room from the sidebar. */
export async function openRoom(page: Page, name: string): Promise<void> {
  await roomLink(page, name).click();
  await expect(page.getByRole("heading", { level: 2, name })).toBeVisible();
}

/** The message list of the open room. */
export function log(page: Page, room: string): Locator {
  return page.getByRole("log", { name: `Messages in ${room}` });
}

/** Types a message and presses Enter. */
export async function say(page: Page, room: string, text: string): Promise<void> {
  const box = page.getByRole("textbox", { name: `Message ${room}` });
  await box.fill(text);
  await box.press("Enter");
}

/** The bodies of the messages shown (not drafts), in the order shown. */
export function bodies(page: Page, room: string): Promise<string[]> {
  return log(page, room).locator("li.message:not(.draft) .body").allInnerTexts();
}

/** Waits until none of the user's messages in the room is still being sent: each is stored and acknowledged. */
export async function expectAllSent(page: Page, room: string, timeout = 20_000): Promise<void> {
  await expect(log(page, room).getByText("Sending…")).toHaveCount(0, { timeout });
}

/** Waits until exactly these messages are shown, in this order. */
export async function expectMessages(page: Page, room: string, expected: string[], timeout = 20_000): Promise<void> {
  await expect.poll(() => bodies(page, room), { timeout }).toEqual(expected);
}

/**
 * Sends `count` messages into a room from inside the page (the page's own session), over several raw WebSockets
 * paced under the gateway's rate limit. Returns the bodies in stored order.
 */
export async function seedMessages(page: Page, room: string, count: number, prefix: string): Promise<string[]> {
  const access = await pageAccessToken(page);
  const acks = await page.evaluate(
    async ({ room, count, prefix, access }) => {
      const { url } = await (await fetch("/api/gateway")).json();
      const sockets = 4;
      const stored: { body: string; seq: number }[] = [];
      const per = Math.ceil(count / sockets);
      await Promise.all(
        Array.from({ length: sockets }, (_, s) => {
          const mine: number[] = [];
          for (let i = s * per; i < Math.min(count, (s + 1) * per); i++) mine.push(i);
          return new Promise<void>((resolve, reject) => {
            if (!mine.length) return resolve();
            const ws = new WebSocket(url, ["natter.v1", access]);
            const body = (i: number) => `${prefix} ${String(i + 1).padStart(3, "0")}`;
            let next = 0;
            let done = 0;
            const pump = () => {
              for (let k = 0; k < 15 && next < mine.length; k++, next++) {
                const i = mine[next];
                ws.send(JSON.stringify({ type: "send", room, id: `seed-${i}`, body: body(i) }));
              }
              if (next < mine.length) setTimeout(pump, 800);
            };
            ws.onmessage = (event) => {
              const frame = JSON.parse(event.data);
              if (frame.type === "hello") ws.send(JSON.stringify({ type: "join", room }));
              else if (frame.type === "joined") pump();
              else if (frame.type === "ack") {
                stored.push({ body: body(Number(frame.id.slice(5))), seq: frame.seq });
                if (++done === mine.length) {
                  ws.close();
                  resolve();
                }
              } else if (frame.type === "error") {
                // Both refusals say to send it again with the same id after a pause (a loaded gateway sheds sends).
                if (frame.code === "rate_limited" || frame.code === "overloaded") {
                  const i = Number(String(frame.ref).slice(5));
                  setTimeout(() => ws.send(JSON.stringify({ type: "send", room, id: `seed-${i}`, body: body(i) })), 1000);
                } else reject(new Error(`${frame.code}: ${frame.message}`));
              }
            };
            ws.onerror = () => reject(new Error("seed socket failed"));
          });
        }),
      );
      return stored;
    },
    { room, count, prefix, access },
  );
  return acks.sort((a, b) => a.seq - b.seq).map((a) => a.body);
}

/**
 * Two people in one public room, on different gateways: the first creates it, the second finds it in the list,
 * previews it and joins. The second is a guest when `secondAsGuest`.
 */
export async function pairInRoom(
  browser: Browser,
  roomPrefix: string,
  names: [string, string] = ["alice", "bob"],
  options: { secondAsGuest?: boolean } = {},
): Promise<{ first: Person; second: Person; room: string }> {
  const first = await register(browser, names[0]);
  const room = uniqueName(roomPrefix);
  await createRoom(first.page, room);
  const second = options.secondAsGuest ? await guest(browser, names[1]) : await register(browser, names[1]);
  await onDifferentGateways(first, second);
  await openRoom(second.page, room);
  await second.page.getByRole("button", { name: "Join room" }).click();
  await expect(second.page.getByRole("textbox", { name: `Message ${room}` })).toBeVisible();
  return { first, second, room };
}

/** What the page keeps in localStorage about its session: who is signed in, never a token. */
export async function storedSession(page: Page): Promise<{ user: { id: string; name: string } } | null> {
  return page.evaluate(() => JSON.parse(localStorage.getItem("natter.session") ?? "null"));
}

/**
 * An access token of the page's own session, for acting as the page's user from outside it: asked for from inside
 * the page, as its app does, through the refresh cookie (which rotates; the app goes on with the new one). The
 * page's script gets an access token this way, never the refresh token.
 */
export async function pageAccessToken(page: Page): Promise<string> {
  return page.evaluate(async () => {
    const locks = (navigator as Navigator & { locks: LockManager }).locks;
    return locks.request("natter.session.refresh", async () => {
      const response = await fetch("/api/refresh", { method: "POST", headers: { "natter-refresh-token": "cookie" } });
      if (!response.ok) throw new Error(`refresh through the cookie: ${response.status}`);
      return ((await response.json()) as { access_token: string }).access_token;
    });
  });
}

/** The id of the room the page shows (from its address). */
export function roomIdOf(page: Page): string {
  return new URL(page.url()).pathname.split("/").pop() as string;
}

/** The sum over the stack's gateways of their connections closed with `code`. */
export async function closedWith(code: number): Promise<number> {
  let total = 0;
  for (const gateway of loadState().gateways) {
    const text = await (await fetch(`http://127.0.0.1:${gateway.port}/metrics`)).text();
    for (const line of text.split("\n")) {
      if (line.startsWith(`natter_gateway_connections_closed_total{code="${code}"}`)) total += Number(line.split(" ").pop());
    }
  }
  return total;
}

/** The message of `room` whose text holds `text` (not one quoting it). */
export function message(page: Page, room: string, text: string) {
  return log(page, room)
    .locator("li.message:not(.draft)")
    .filter({ has: page.locator(".body", { hasText: text }) });
}

/** Opens a message's actions (they show on hover or focus) and clicks one. */
export async function act(page: Page, room: string, text: string, action: string): Promise<void> {
  const li = message(page, room, text);
  await li.hover();
  await li.getByRole("button", { name: action, exact: true }).click();
}

/** Types words into the sidebar's search box and asks (again, for the same words). */
export async function search(page: Page, words: string): Promise<void> {
  const box = page.getByRole("searchbox", { name: "Search messages" });
  await box.fill(words);
  await box.press("Enter");
}

/** The search results shown, each a link to its message. */
export function searchResults(page: Page): Locator {
  return page.getByRole("list", { name: "Messages found" }).getByRole("link");
}

/**
 * Searches until the page shows what `check` waits for: a message said a moment ago reaches PostgreSQL (and so the
 * search) through the persister, within about a second.
 */
export async function searchUntil(page: Page, words: string, check: () => Promise<void>): Promise<void> {
  await expect(async () => {
    await search(page, words);
    await check();
  }).toPass({ timeout: 20_000, intervals: [500, 1_000, 2_000] });
}

/** The link to a direct or group conversation in the sidebar's Direct messages. */
export function directLink(page: Page, name: string): Locator {
  return page
    .getByRole("navigation", { name: "Direct messages" })
    .getByRole("link", { name: new RegExp(`^\\s*${name}(\\s|$)`) });
}

/** Starts (or opens) a direct conversation by the other person's name, with the sidebar's New message form. */
export async function messageByName(page: Page, name: string): Promise<void> {
  const form = page.getByRole("form", { name: "New message" });
  if (!(await form.isVisible())) await page.getByText("New message", { exact: true }).click();
  await form.getByLabel("To (user name)").fill(name);
  await form.getByRole("button", { name: "Start conversation" }).click();
}
