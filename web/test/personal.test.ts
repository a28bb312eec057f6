import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import { NatterClient } from "../src/natter/client";
import type { RoomInfo } from "../src/natter/api";
import type { Arrival } from "../src/natter/mentions";
import { BOB, ME, message, setup } from "./fakes";

const tick = (ms = 0) => vi.advanceTimersByTimeAsync(ms);

/** A client online with the rooms `configure` listed, every one joined on the gateway. */
async function online(rooms: [string, Partial<RoomInfo>][]) {
  const env = setup();
  for (const [id, extra] of rooms) env.server.room(id, extra);
  const client = new NatterClient({ api: env.api, session: env.session, socket: env.sockets.factory, roomsPollMs: 0 });
  await client.start();
  await tick();
  const socket = env.sockets.last;
  socket.accept();
  await tick();
  for (const join of socket.frames("join")) {
    socket.deliver({ type: "joined", room: join.room, seq: join.since ?? 0, recovered: true, members: [ME] });
  }
  return { ...env, client, socket };
}

const listings = (env: Awaited<ReturnType<typeof online>>) =>
  env.server.requests.filter((r) => r.path === "/api/rooms" && r.method === "GET").length;

beforeEach(() => {
  vi.useFakeTimers();
});

afterEach(() => {
  vi.useRealTimers();
});

describe("mentions and personal events", () => {
  it("counts mentions from the listing and live, and a muted room only by its mentions", async () => {
    const env = await online([
      ["lobby", { last_seq: 5, read_seq: 2, unread: 3, mentions: 1 }],
      ["quiet", { last_seq: 4, read_seq: 0, unread: 4, mentions: 0, muted: true }],
    ]);
    expect(env.client.room("lobby")).toMatchObject({ unread: 3, mentions: 1, muted: false });
    expect(env.client.room("quiet")).toMatchObject({ unread: 0, mentions: 0, muted: true });
    expect(env.client.totalUnread()).toBe(3);

    const arrivals: Arrival[] = [];
    env.client.onArrival((a) => arrivals.push(a));
    env.socket.deliver({ ...message("quiet", 5, 4), body: "@alice look", mentions: [ME] });
    env.socket.deliver({ ...message("lobby", 6, 5), body: "no one" });
    expect(env.client.room("quiet")).toMatchObject({ unread: 0, mentions: 1 });
    expect(env.client.room("lobby")).toMatchObject({ unread: 4, mentions: 1 });
    expect(env.client.totalUnread()).toBe(5);
    expect(arrivals.map((a) => [a.room, a.mentionsMe, a.muted])).toEqual([
      ["quiet", true, true],
      ["lobby", false, false],
    ]);
    // The user's own messages are no arrival.
    env.socket.deliver({ ...message("lobby", 7, 6, ME), body: "mine" });
    expect(arrivals).toHaveLength(2);
    // A message held already is not counted twice.
    env.socket.deliver({ ...message("quiet", 5, 4), body: "@alice look", mentions: [ME] });
    expect(env.client.room("quiet")?.mentions).toBe(1);
    env.client.stop();
  });

  it("applies a read cursor moved on another device at once", async () => {
    const env = await online([["lobby", { last_seq: 5, read_seq: 2, unread: 3, mentions: 2 }]]);
    env.socket.deliver({ ...message("lobby", 6, 5), body: "@alice hi", mentions: [ME] });
    expect(env.client.room("lobby")).toMatchObject({ unread: 4, mentions: 3 });
    env.socket.deliver({ type: "personal", event: { kind: "read", room: "lobby", read_seq: 6, unread: 0, mentions: 0 } });
    expect(env.client.room("lobby")).toMatchObject({ unread: 0, mentions: 0 });
    expect(env.client.totalUnread()).toBe(0);
    // Read part of the way: the counts are the API's.
    env.socket.deliver({ ...message("lobby", 7, 6), body: "@alice one", mentions: [ME] });
    env.socket.deliver({ ...message("lobby", 8, 7), body: "@alice two", mentions: [ME] });
    env.socket.deliver({ type: "personal", event: { kind: "read", room: "lobby", read_seq: 7, unread: 1, mentions: 1 } });
    expect(env.client.room("lobby")).toMatchObject({ unread: 1, mentions: 1 });
    env.client.stop();
  });

  it("counts a mention told on the personal channel once, whether it or the message comes first", async () => {
    const env = await online([["lobby", { last_seq: 5, read_seq: 5, unread: 0, mentions: 0 }]]);
    env.socket.deliver({ type: "personal", event: { kind: "mentioned", room: "lobby", seq: 6, by: BOB } });
    expect(env.client.room("lobby")?.mentions).toBe(1);
    env.socket.deliver({ ...message("lobby", 6, 5), body: "@alice hi", mentions: [ME] });
    expect(env.client.room("lobby")?.mentions).toBe(1);
    env.socket.deliver({ ...message("lobby", 7, 6), body: "@alice again", mentions: [ME] });
    env.socket.deliver({ type: "personal", event: { kind: "mentioned", room: "lobby", seq: 7, by: BOB } });
    expect(env.client.room("lobby")?.mentions).toBe(2);
    // One already read is not counted.
    env.socket.deliver({ type: "personal", event: { kind: "mentioned", room: "lobby", seq: 3, by: BOB } });
    expect(env.client.room("lobby")?.mentions).toBe(2);
    // A room not known here yet is read from the API.
    const before = listings(env);
    env.socket.deliver({ type: "personal", event: { kind: "mentioned", room: "elsewhere", seq: 1, by: BOB } });
    await tick();
    expect(listings(env)).toBe(before + 1);
    env.client.stop();
  });

  it("re-reads the rooms when they changed, and after every reconnect", async () => {
    const env = await online([["lobby", {}]]);
    const before = listings(env);
    env.server.room("dm-u-bob", { name: BOB.name, kind: "direct", peer: BOB, private: true, role: "member" });
    env.socket.deliver({ type: "personal", event: { kind: "rooms", room: "dm-u-bob" } });
    await tick();
    expect(listings(env)).toBe(before + 1);
    expect(env.client.roomList().map((r) => r.info.id)).toContain("dm-u-bob");

    env.socket.drop(1006);
    await tick(1_000);
    env.sockets.last.accept("gw-2");
    await tick();
    expect(listings(env)).toBe(before + 2);
    env.client.stop();
  });
});
