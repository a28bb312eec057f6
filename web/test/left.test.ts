import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import { NatterClient, type ClientEvent } from "../src/natter/client";
import { ME, setup } from "./fakes";

const tick = (ms = 0) => vi.advanceTimersByTimeAsync(ms);

/** A client online with rooms `lobby` (public) and `secret` (private) joined, and `lobby` open. */
async function inRooms() {
  const env = setup();
  env.server.room("lobby");
  env.server.room("secret", { private: true });
  const events: ClientEvent[] = [];
  const client = new NatterClient({ api: env.api, session: env.session, socket: env.sockets.factory, roomsPollMs: 0 });
  client.subscribe((event) => event.type !== "change" && events.push(event));
  await client.start();
  await tick();
  const socket = env.sockets.last;
  socket.accept();
  await tick();
  for (const join of socket.frames("join")) {
    socket.deliver({ type: "joined", room: join.room, seq: 0, recovered: true, members: [ME] });
  }
  await client.openRoom("lobby");
  return { ...env, client, socket, events };
}

beforeEach(() => {
  vi.useFakeTimers();
});

afterEach(() => {
  vi.useRealTimers();
});

describe("left with a reason", () => {
  it.each([
    ["room_deleted", "This room was deleted."],
    ["member_left", "You left this room in another window."],
    ["member_removed", "You were removed from this room."],
    ["banned", "You were banned from this room."],
    ["access_revoked", "You no longer have access to this room."],
  ])("%s: the open room says so, is no longer joined and is never rejoined", async (reason, notice) => {
    const env = await inRooms();
    env.server.rooms.delete("lobby");
    env.socket.deliver({ type: "left", room: "lobby", reason });
    const lobby = env.client.room("lobby");
    expect(lobby).toMatchObject({ ended: reason, notice, live: false });
    expect(lobby?.info.joined).toBe(false);
    // Not through the next listing, not through a reconnect, not through a refused send.
    await tick(2_000);
    env.socket.drop(1006);
    await tick(1_000);
    const again = env.sockets.last;
    again.accept("gw-2");
    await tick();
    expect(again.frames("join").map((j) => j.room)).toEqual(["secret"]);
    expect(env.socket.frames("join").filter((j) => j.room === "lobby")).toHaveLength(1);
    expect(env.client.room("lobby")?.notice).toBe(notice);
    env.client.stop();
  });

  it("fails what was still to be sent there with the reason, and anything written after", async () => {
    const env = await inRooms();
    const inFlight = env.client.send("lobby", "on its way") as string;
    const queued = env.client.send("lobby", "waiting its turn") as string;
    expect(env.socket.frames("send").map((f) => f.id)).toEqual([inFlight]);
    env.server.rooms.delete("lobby");
    env.socket.deliver({ type: "left", room: "lobby", reason: "room_deleted" });
    // The gateway refuses the send that was on the wire; nothing is sent again.
    env.socket.deliver({ type: "error", code: "not_joined", message: "join the room first", ref: inFlight });
    await tick(60_000);
    const timeline = env.client.room("lobby")?.timeline;
    for (const id of [inFlight, queued]) {
      expect(timeline?.findPending(id)).toMatchObject({ state: "failed", error: "This room was deleted." });
    }
    expect(env.socket.frames("send").map((f) => f.id)).toEqual([inFlight]);
    // Retry and new messages cannot go to a room the user is out of.
    env.client.retry("lobby", inFlight);
    const later = env.client.send("lobby", "anyone?") as string;
    expect(timeline?.findPending(inFlight)?.state).toBe("failed");
    expect(env.client.room("lobby")?.timeline.findPending(later)?.state).toBe("failed");
    expect(env.socket.frames("send")).toHaveLength(1);
    env.client.stop();
  });

  it("takes a deleted or private room out of the room list; a public one stays among the public rooms", async () => {
    const env = await inRooms();
    env.server.room("lobby", { joined: false });
    env.socket.deliver({ type: "left", room: "lobby", reason: "member_left" });
    await tick(1_000);
    expect(env.client.roomList().map((r) => [r.info.id, r.info.joined])).toEqual([
      ["lobby", false],
      ["secret", true],
    ]);
    await env.client.openRoom("secret");
    env.server.rooms.delete("secret");
    env.socket.deliver({ type: "left", room: "secret", reason: "member_removed" });
    expect(env.client.roomList().map((r) => r.info.id)).toEqual(["lobby"]);
    // Still on screen, with its notice, until the person moves on.
    expect(env.client.room("secret")?.notice).toBe("You were removed from this room.");
    await env.client.openRoom(undefined);
    expect(env.client.room("secret")).toBeUndefined();
    env.client.stop();
  });

  it("a room not on screen is dropped with an alert naming it", async () => {
    const env = await inRooms();
    env.server.rooms.delete("secret");
    env.socket.deliver({ type: "left", room: "secret", reason: "room_deleted" });
    expect(env.client.room("secret")).toBeUndefined();
    expect(env.events).toEqual([{ type: "notice", room: "secret", message: "The room “secret” was deleted." }]);
    await tick(1_000);
    expect(env.socket.frames("join").filter((j) => j.room === "secret")).toHaveLength(1);
    env.client.stop();
  });

  it("a join in flight when the room ended is left again once answered", async () => {
    const env = await inRooms();
    env.socket.drop(1006);
    await tick(1_000);
    const socket = env.sockets.last;
    socket.accept("gw-2");
    await tick();
    expect(socket.frames("join").map((j) => j.room)).toEqual(["lobby", "secret"]);
    socket.deliver({ type: "left", room: "lobby", reason: "member_left" });
    socket.deliver({ type: "joined", room: "lobby", seq: 0, recovered: true, members: [ME] });
    socket.deliver({ type: "joined", room: "secret", seq: 0, recovered: true, members: [ME] });
    expect(socket.frames("leave").map((l) => l.room)).toEqual(["lobby"]);
    expect(env.client.room("lobby")?.live).toBe(false);
    expect(env.client.room("secret")?.live).toBe(true);
    env.client.stop();
  });

  it.each([
    ["deletes", "room_deleted"],
    ["leaves", "member_left"],
  ])("is no news while this client %s the room itself", async (action, reason) => {
    const env = await inRooms();
    env.server.rooms.get("lobby")!.owner_id = ME.id;
    const method = action === "deletes" ? "DELETE" : "POST";
    const release = env.server.hold("/api/rooms/lobby", method);
    const done = action === "deletes" ? env.client.remove("lobby") : env.client.leave("lobby");
    await tick();
    // The gateway hears of it before the API's answer arrives here.
    env.socket.deliver({ type: "left", room: "lobby", reason });
    expect(env.client.room("lobby")?.ended).toBeUndefined();
    expect(env.client.room("lobby")?.notice).toBeUndefined();
    release();
    await done;
    // Gone (deleted), or back as a public room the user is not in (left): either way, no notice of it.
    const lobby = env.client.room("lobby");
    if (action === "deletes") expect(lobby).toBeUndefined();
    else expect(lobby).toMatchObject({ ended: undefined, notice: undefined, info: { joined: false } });
    expect(env.events).toEqual([]);
    env.client.stop();
  });

  it("without a reason is the answer to a leave: a room still wanted is joined again", async () => {
    const env = await inRooms();
    env.socket.deliver({ type: "left", room: "secret" });
    expect(env.client.room("secret")?.ended).toBeUndefined();
    expect(env.client.room("secret")?.live).toBe(false);
    expect(env.client.room("secret")?.info.joined).toBe(true);
    env.client.stop();
  });

  it("a room joined again (here or elsewhere) is live again", async () => {
    const env = await inRooms();
    env.server.room("lobby", { joined: false });
    env.socket.deliver({ type: "left", room: "lobby", reason: "member_left" });
    await tick(1_000);
    env.server.room("lobby", { joined: true });
    await env.client.refreshRooms();
    expect(env.client.room("lobby")?.ended).toBeUndefined();
    expect(env.client.room("lobby")?.notice).toBeUndefined();
    expect(env.socket.frames("join").filter((j) => j.room === "lobby")).toHaveLength(2);
    env.client.stop();
  });
});
