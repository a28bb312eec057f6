import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import type { RoomInfo } from "../src/natter/api";
import { memberActions, moderates, NatterClient, roleIn, type ClientEvent } from "../src/natter/client";
import { BOB, CAROL, ME, setup } from "./fakes";

const tick = (ms = 0) => vi.advanceTimersByTimeAsync(ms);

/** A client of the fake server, started (rooms read), not connected. */
async function started(configure: (env: ReturnType<typeof setup>) => void) {
  const env = setup();
  configure(env);
  const client = new NatterClient({ api: env.api, session: env.session, socket: env.sockets.factory, roomsPollMs: 0 });
  const events: ClientEvent[] = [];
  client.subscribe((event) => events.push(event));
  await client.start();
  return { ...env, client, events };
}

/** A client online, with every room it is a member of joined on the gateway. */
async function online(configure: (env: ReturnType<typeof setup>) => void) {
  const env = await started(configure);
  await tick();
  const socket = env.sockets.last;
  socket.accept();
  await tick();
  for (const join of socket.frames("join")) {
    socket.deliver({ type: "joined", room: join.room, seq: 0, recovered: true, members: [ME] });
  }
  return { ...env, socket };
}

beforeEach(() => {
  vi.useFakeTimers();
});

afterEach(() => {
  vi.useRealTimers();
});

describe("roles", () => {
  const info = (extra: Partial<RoomInfo>): RoomInfo => ({
    id: "r",
    name: "r",
    private: false,
    owner_id: BOB.id,
    member_count: 2,
    joined: true,
    created_at: "2026-12-01T00:00:00Z",
    last_seq: 0,
    read_seq: 0,
    unread: 0,
    ...extra,
  });

  it("the user's role is the API's; without it, the owner by the owner id, else a member or nothing", () => {
    expect(roleIn(info({ role: "moderator" }), ME.id)).toBe("moderator");
    expect(roleIn(info({ owner_id: ME.id }), ME.id)).toBe("owner");
    expect(roleIn(info({}), ME.id)).toBe("member");
    expect(roleIn(info({ joined: false }), ME.id)).toBeUndefined();
    expect([moderates("owner"), moderates("moderator"), moderates("member"), moderates(undefined)]).toEqual([
      true,
      true,
      false,
      false,
    ]);
  });

  it("the owner acts on everyone else; a moderator on plain members only; a member and anyone on themself, never", () => {
    const owner = { id: "o", role: "owner" as const };
    const moderator = { id: "m", role: "moderator" as const };
    const member = { id: "p", role: "member" as const };
    const all = { role: true, remove: true, ban: true };
    const none = { role: false, remove: false, ban: false };
    // The owner.
    expect(memberActions("owner", moderator, "o")).toEqual(all);
    expect(memberActions("owner", member, "o")).toEqual(all);
    expect(memberActions("owner", owner, "o")).toEqual(none);
    // A moderator: remove and ban plain members; no role changes.
    expect(memberActions("moderator", member, "m")).toEqual({ role: false, remove: true, ban: true });
    expect(memberActions("moderator", owner, "m")).toEqual(none);
    expect(memberActions("moderator", { id: "m2", role: "moderator" }, "m")).toEqual(none);
    expect(memberActions("moderator", moderator, "m")).toEqual(none);
    // A member, or someone out of the room.
    expect(memberActions("member", member, "x")).toEqual(none);
    expect(memberActions(undefined, member, "x")).toEqual(none);
  });
});

describe("moderation", () => {
  it("the owner makes a member a moderator and a member again; the list follows", async () => {
    const env = await started((s) => {
      s.server.room("team", { owner_id: ME.id, role: "owner", member_count: 3 });
      s.server.members.set("team", [BOB, CAROL]);
    });
    const changed = await env.client.setRole("team", BOB.id, "moderator");
    expect(changed).toMatchObject({ id: BOB.id, name: "bob", role: "moderator" });
    expect(env.server.calls(`/api/rooms/team/members/${BOB.id}/role`, "PUT")[0].body).toEqual({ role: "moderator" });
    expect((await env.client.members("team")).map((m) => [m.name, m.role])).toEqual([
      ["alice", "owner"],
      ["bob", "moderator"],
      ["carol", "member"],
    ]);
    await env.client.setRole("team", BOB.id, "member");
    expect((await env.client.members("team")).find((m) => m.id === BOB.id)?.role).toBe("member");
    // The owner's own role is fixed.
    await expect(env.client.setRole("team", ME.id, "member")).rejects.toMatchObject({ status: 409, code: "owner_role_fixed" });
    env.client.stop();
  });

  it("a moderator bans a member, who leaves the members for the ban list; an unban lifts it once", async () => {
    const env = await started((s) => {
      s.server.room("hall", { owner_id: BOB.id, role: "moderator", member_count: 3 });
      s.server.members.set("hall", [ME, CAROL]);
    });
    expect(env.client.room("hall")?.role).toBe("moderator");
    await env.client.ban("hall", CAROL.id);
    expect(env.server.calls(`/api/rooms/hall/members/${CAROL.id}/ban`, "POST")).toHaveLength(1);
    // The member count is read again.
    await tick(500);
    expect(env.client.room("hall")?.info.member_count).toBe(2);
    expect((await env.client.members("hall")).map((m) => m.name)).toEqual(["owner", "alice"]);
    expect(await env.client.bans("hall")).toEqual([
      { id: CAROL.id, name: "carol", banned_by: "alice", banned_at: "2026-12-01T12:00:00Z" },
    ]);
    await env.client.unban("hall", CAROL.id);
    expect(env.server.calls(`/api/rooms/hall/bans/${CAROL.id}`, "DELETE")).toHaveLength(1);
    expect(await env.client.bans("hall")).toEqual([]);
    await expect(env.client.unban("hall", CAROL.id)).rejects.toMatchObject({ status: 404, code: "ban_not_found" });
    env.client.stop();
  });

  it("a moderator is refused on the owner and on another moderator, with the API's codes", async () => {
    const env = await started((s) => {
      s.server.room("hall", { owner_id: BOB.id, role: "moderator", member_count: 3 });
      s.server.members.set("hall", [ME, CAROL]);
      s.server.roles.set(`hall/${CAROL.id}`, "moderator");
    });
    await expect(env.client.ban("hall", BOB.id)).rejects.toMatchObject({ status: 409, code: "owner_cannot_be_banned" });
    await expect(env.client.removeMember("hall", BOB.id)).rejects.toMatchObject({ code: "owner_cannot_be_removed" });
    await expect(env.client.ban("hall", CAROL.id)).rejects.toMatchObject({ status: 403, code: "not_room_owner" });
    await expect(env.client.ban("hall", ME.id)).rejects.toMatchObject({ status: 409, code: "cannot_moderate_yourself" });
    await expect(env.client.setRole("hall", CAROL.id, "member")).rejects.toMatchObject({ status: 403, code: "not_room_owner" });
    env.client.stop();
  });

  it("a plain member may not read the ban list", async () => {
    const env = await started((s) => {
      s.server.room("hall", { owner_id: BOB.id, role: "member" });
      s.server.members.set("hall", [ME]);
    });
    await expect(env.client.bans("hall")).rejects.toMatchObject({ status: 403, code: "not_room_moderator" });
    env.client.stop();
  });

  it("the member list brings the user's own role when it changed elsewhere; a refusal re-reads the room", async () => {
    const env = await started((s) => {
      s.server.room("hall", { owner_id: BOB.id, role: "member", member_count: 3 });
      s.server.members.set("hall", [ME, CAROL]);
    });
    expect(env.client.room("hall")?.role).toBe("member");
    // The owner appoints the user (on another device, the room read before that).
    env.server.rooms.get("hall")!.role = "moderator";
    const changes = env.events.length;
    await env.client.members("hall");
    expect(env.client.room("hall")?.role).toBe("moderator");
    expect(env.events.length).toBeGreaterThan(changes);
    // Dismissed again: the next action is refused, and the room is read again so the actions offered follow.
    env.server.rooms.get("hall")!.role = "member";
    await expect(env.client.ban("hall", CAROL.id)).rejects.toMatchObject({ code: "not_room_moderator" });
    await tick(500);
    expect(env.client.room("hall")?.role).toBe("member");
    env.client.stop();
  });
});

describe("banned", () => {
  it("takes a public room out of the list at once: a banned user may not see it", async () => {
    const env = await online((s) => {
      s.server.room("lobby");
      s.server.room("other");
    });
    await env.client.openRoom("lobby");
    env.server.bans.set("lobby", [{ id: ME.id, name: ME.name, banned_at: "2026-12-01T12:00:00Z" }]);
    env.socket.deliver({ type: "left", room: "lobby", reason: "banned" });
    expect(env.client.room("lobby")).toMatchObject({ ended: "banned", notice: "You were banned from this room." });
    expect(env.client.room("lobby")?.role).toBeUndefined();
    expect(env.client.roomList().map((r) => r.info.id)).toEqual(["other"]);
    await tick(1_000);
    expect(env.client.roomList().map((r) => r.info.id)).toEqual(["other"]);
    // Moving on forgets it; opening it again is refused, and why is kept for the page.
    await env.client.openRoom(undefined);
    expect(env.client.room("lobby")).toBeUndefined();
    await env.client.openRoom("lobby");
    expect(env.client.room("lobby")).toBeUndefined();
    expect(env.client.refusal("lobby")).toBe("banned");
    expect(env.client.refusal("other")).toBeUndefined();
    // Joining is refused too.
    await expect(env.client.join("lobby")).rejects.toMatchObject({ status: 403, code: "banned" });
    // Once the ban is lifted the room opens (a preview) and may be joined.
    env.server.bans.set("lobby", []);
    env.server.rooms.get("lobby")!.joined = false;
    await env.client.openRoom(undefined);
    await env.client.openRoom("lobby");
    expect(env.client.refusal("lobby")).toBeUndefined();
    expect(env.client.room("lobby")?.info.joined).toBe(false);
    await env.client.join("lobby");
    expect(env.client.room("lobby")?.info.joined).toBe(true);
    env.client.stop();
  });

  it("a room not on screen goes with an alert naming it", async () => {
    const env = await online((s) => {
      s.server.room("lobby");
      s.server.room("other");
    });
    await env.client.openRoom("other");
    env.server.bans.set("lobby", [{ id: ME.id, name: ME.name, banned_at: "2026-12-01T12:00:00Z" }]);
    env.socket.deliver({ type: "left", room: "lobby", reason: "banned" });
    expect(env.client.room("lobby")).toBeUndefined();
    expect(env.events.filter((e) => e.type === "notice")).toEqual([
      { type: "notice", room: "lobby", message: "You were banned from “lobby”." },
    ]);
    env.client.stop();
  });

  it("a join the gateway refuses as banned says so and does not shift the next join's answer", async () => {
    const env = await started((s) => {
      s.server.room("a");
      s.server.room("b");
    });
    await tick();
    const socket = env.sockets.last;
    socket.accept();
    await tick();
    expect(socket.frames("join").map((j) => j.room)).toEqual(["a", "b"]);
    // Banned between the listing and the join: the gateway's error names no room; the oldest join is a's.
    socket.deliver({ type: "error", code: "banned", message: "you are banned from room 'a'" });
    socket.deliver({ type: "joined", room: "b", seq: 0, recovered: true, members: [ME] });
    expect(env.client.room("a")).toMatchObject({ live: false, notice: "You are banned from this room." });
    expect(env.client.room("b")).toMatchObject({ live: true, notice: undefined });
    env.client.stop();
  });

  it("a join refused as banned is tried once more after the gateway forgets a lifted ban (5 s)", async () => {
    const env = await started((s) => {
      s.server.room("a");
    });
    await tick();
    const socket = env.sockets.last;
    socket.accept();
    await tick();
    const sending = env.client.send("a", "hello again") as string;
    socket.deliver({ type: "error", code: "banned", message: "you are banned from room 'a'" });
    expect(env.client.room("a")?.notice).toBe("You are banned from this room.");
    // Still to be sent: the refusal may be a ban lifted a moment ago.
    expect(env.client.room("a")?.timeline.findPending(sending)?.state).toBe("sending");
    await tick(5_000);
    expect(socket.frames("join")).toHaveLength(1);
    await tick(1_000);
    expect(socket.frames("join")).toHaveLength(2);
    socket.deliver({ type: "joined", room: "a", seq: 0, recovered: true, members: [ME] });
    expect(env.client.room("a")).toMatchObject({ live: true, notice: undefined });
    expect(socket.frames("send").map((f) => f.id)).toEqual([sending]);
    env.client.stop();
  });

  it("a join refused as banned twice stays refused, and what was to be sent there fails", async () => {
    const env = await started((s) => {
      s.server.room("a");
    });
    await tick();
    const socket = env.sockets.last;
    socket.accept();
    await tick();
    const sending = env.client.send("a", "let me in") as string;
    socket.deliver({ type: "error", code: "banned", message: "you are banned from room 'a'" });
    await tick(6_000);
    env.server.bans.set("a", [{ id: ME.id, name: ME.name, banned_at: "2026-12-01T12:00:00Z" }]);
    socket.deliver({ type: "error", code: "banned", message: "you are banned from room 'a'" });
    expect(env.client.room("a")).toMatchObject({ live: false, notice: "You are banned from this room." });
    expect(env.client.room("a")?.timeline.findPending(sending)).toMatchObject({
      state: "failed",
      error: "You are banned from this room.",
    });
    // The room list is read again: the API no longer lists the room, and it is not joined again.
    await tick(60_000);
    expect(socket.frames("join")).toHaveLength(2);
    expect(env.client.room("a")).toBeUndefined();
    env.client.stop();
  });
});
