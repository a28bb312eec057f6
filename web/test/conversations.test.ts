import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import { ApiError } from "../src/natter/api";
import { isConversation, NatterClient, parseNames, peerOnline, type ClientEvent, type RoomView } from "../src/natter/client";
import { describe as describeError } from "../src/ui/errors";
import { BOB, CAROL, DAN, ME, setup } from "./fakes";

const tick = (ms = 0) => vi.advanceTimersByTimeAsync(ms);

/**
 * A client online, after `configure` set up the server: the rooms listed joined on the gateway, but those in
 * `refused`, whose joins the gateway refuses as `blocked`.
 */
async function online(configure: (env: ReturnType<typeof setup>) => void = () => undefined, refused: string[] = []) {
  const env = setup();
  configure(env);
  const client = new NatterClient({ api: env.api, session: env.session, socket: env.sockets.factory, roomsPollMs: 0 });
  const events: ClientEvent[] = [];
  client.subscribe((event) => event.type !== "change" && events.push(event));
  await client.start();
  await tick();
  const socket = env.sockets.last;
  socket.accept();
  await tick();
  for (const join of socket.frames("join")) {
    if (refused.includes(join.room)) {
      socket.deliver({ type: "error", code: "blocked", message: "one of you blocked the other" });
    } else {
      socket.deliver({ type: "joined", room: join.room, seq: 0, recovered: true, members: [ME] });
    }
  }
  return { ...env, client, socket, events };
}

/** The server's direct conversation of the user with `peer`, as the API lists it. */
function direct(env: ReturnType<typeof setup>, peer = BOB) {
  return env.server.room(`dm-${peer.id}`, {
    name: peer.name,
    kind: "direct",
    peer,
    private: true,
    role: "member",
  });
}

/** The joins sent for a room on a socket. */
const joins = (socket: ReturnType<typeof setup>["sockets"]["last"], room: string) =>
  socket.frames("join").filter((j) => j.room === room);

beforeEach(() => {
  vi.useFakeTimers();
});

afterEach(() => {
  vi.useRealTimers();
});

describe("conversation helpers", () => {
  it("reads the names typed for a group: commas and spaces, each once, never the user's own", () => {
    expect(parseNames("bob, carol dan")).toEqual(["bob", "carol", "dan"]);
    expect(parseNames(" @bob ,, Bob;carol alice ", "Alice")).toEqual(["bob", "carol"]);
    expect(parseNames("   ")).toEqual([]);
  });

  it("tells conversations from rooms, and whether a direct conversation's other person is online", () => {
    const view = (extra: Partial<RoomView["info"]>, online = [ME]) =>
      ({ info: { id: "x", name: "x", private: true, ...extra }, online }) as unknown as RoomView;
    expect(isConversation(view({ kind: "direct" }).info)).toBe(true);
    expect(isConversation(view({ kind: "group" }).info)).toBe(true);
    expect(isConversation(view({ kind: "room" }).info)).toBe(false);
    expect(isConversation(view({}).info)).toBe(false);
    expect(peerOnline(view({ kind: "direct", peer: BOB }))).toBe(false);
    expect(peerOnline(view({ kind: "direct", peer: BOB }, [ME, BOB]))).toBe(true);
    expect(peerOnline(view({ kind: "group" }, [ME, BOB]))).toBe(false);
  });

  it("says each refusal in plain words, keeping the names the API gives as written", () => {
    const says = (status: number, code: string, message = code) => describeError(new ApiError(status, code, message));
    expect(says(403, "blocked", "bob does not take messages from you")).toBe("bob does not take messages from you.");
    expect(says(403, "blocked", "you blocked bob; unblock them to write to them")).toBe(
      "You blocked bob; unblock them to write to them.",
    );
    expect(says(404, "user_not_found", "no user named 'zed'")).toBe("Nobody is called “zed”: check the user name.");
    expect(says(422, "cannot_message_yourself")).toBe("That is you: write to someone else.");
    expect(says(422, "invalid_members")).toBe("A group is you and 2 to 7 other people, each named once.");
    expect(says(409, "direct_cannot_be_left")).toMatch(/cannot be left/);
    expect(says(404, "block_not_found")).toBe("They are not blocked any more.");
    expect(says(422, "cannot_block_yourself")).toBe("You cannot block yourself.");
    expect(says(409, "not_a_room")).toBe("Only a room can do that, not a conversation.");
  });
});

describe("starting conversations", () => {
  it("a direct conversation by name: kept and joined at once, the same one the next time", async () => {
    const env = await online((s) => s.server.room("lobby"));
    const info = await env.client.startDirect(" bob ");
    expect(env.server.calls("/api/conversations/direct", "POST")[0].body).toEqual({ user: "bob" });
    expect(info).toMatchObject({ kind: "direct", name: "bob", peer: BOB });
    expect(env.client.roomList().map((r) => [r.info.id, r.info.kind ?? "room"])).toEqual([
      ["lobby", "room"],
      [info.id, "direct"],
    ]);
    // Joined live like any room: its unread count and presence follow.
    expect(joins(env.socket, info.id)).toHaveLength(1);
    env.socket.deliver({ type: "joined", room: info.id, seq: 0, recovered: true, members: [ME] });
    expect(peerOnline(env.client.room(info.id) as RoomView)).toBe(false);
    env.socket.deliver({ type: "presence", room: info.id, joined: [BOB], left: [] });
    expect(peerOnline(env.client.room(info.id) as RoomView)).toBe(true);
    env.socket.deliver({ type: "message", room: info.id, seq: 1, prev: 0, id: "m1", user: BOB, body: "hi", ts: "2026-12-01T10:00:00Z" });
    expect(env.client.room(info.id)?.unread).toBe(1);
    // Asked again: the same conversation, listed once.
    const again = await env.client.startDirect("Bob");
    expect(again.id).toBe(info.id);
    expect(env.client.roomList().filter((r) => r.info.id === info.id)).toHaveLength(1);
    env.client.stop();
  });

  it("refusals keep the API's codes: nobody of that name, the user themself, a block either way", async () => {
    const env = await online();
    await expect(env.client.startDirect("zed")).rejects.toMatchObject({ status: 404, code: "user_not_found" });
    await expect(env.client.startDirect("alice")).rejects.toMatchObject({ status: 422, code: "cannot_message_yourself" });
    env.server.blockPairs.add(`${CAROL.id}/${ME.id}`);
    await expect(env.client.startDirect("carol")).rejects.toMatchObject({
      status: 403,
      code: "blocked",
      message: "carol does not take messages from you",
    });
    expect(env.client.roomList()).toEqual([]);
    env.client.stop();
  });

  it("a group of the user and others, named or not; too few people refused", async () => {
    const env = await online();
    const info = await env.client.startGroup(["bob", "carol"], "  Lunch ");
    expect(env.server.calls("/api/conversations/group", "POST")[0].body).toEqual({ members: ["bob", "carol"], name: "Lunch" });
    expect(info).toMatchObject({ kind: "group", name: "Lunch", member_count: 3 });
    expect(joins(env.socket, info.id)).toHaveLength(1);
    const unnamed = await env.client.startGroup(["bob", "dan"]);
    expect(env.server.calls("/api/conversations/group", "POST")[1].body).toEqual({ members: ["bob", "dan"] });
    expect(unnamed.name).toBe("alice, bob, dan");
    await expect(env.client.startGroup(["bob"])).rejects.toMatchObject({ status: 422, code: "invalid_members" });
    // Anyone may leave a group; a direct conversation cannot be left.
    await env.client.leave(info.id);
    expect(env.client.room(info.id)).toBeUndefined();
    const dm = await env.client.startDirect("dan");
    await expect(env.client.leave(dm.id)).rejects.toMatchObject({ status: 409, code: "direct_cannot_be_left" });
    expect(env.client.room(dm.id)).toBeDefined();
    env.client.stop();
  });
});

describe("blocking", () => {
  it("the user blocks the other person: the conversation closes here at once, stays listed, and is not joined again", async () => {
    const env = await online((s) => {
      direct(s);
      s.server.room("lobby");
    });
    const id = `dm-${BOB.id}`;
    await env.client.openRoom(id);
    expect(env.client.room(id)?.live).toBe(true);
    expect(env.client.blocks()).toEqual([]);
    await env.client.block(BOB.id);
    expect(env.server.calls(`/api/blocks/${BOB.id}`, "PUT")).toHaveLength(1);
    expect(env.client.blocked(BOB.id)).toBe(true);
    expect(env.client.blocks().map((b) => b.name)).toEqual(["bob"]);
    expect(env.client.room(id)).toMatchObject({
      ended: "blocked",
      live: false,
      notice: "This conversation is closed: one of you blocked the other.",
    });
    // Nothing can be sent there meanwhile.
    const sent = env.client.send(id, "still there?") as string;
    expect(env.client.room(id)?.timeline.findPending(sent)?.state).toBe("failed");
    // The gateway says so too: no news (nor an alert) about the user's own block.
    env.socket.deliver({ type: "left", room: id, reason: "blocked" });
    await env.client.openRoom("lobby");
    env.socket.deliver({ type: "left", room: id, reason: "blocked" });
    expect(env.events).toEqual([]);
    // Still the user's (listed, readable), never joined again: not after a listing, not after a reconnect.
    await env.client.refreshRooms();
    expect(env.client.roomList().map((r) => r.info.id)).toEqual([id, "lobby"]);
    expect(env.client.room(id)?.info.joined).toBe(true);
    env.socket.drop(1006);
    await tick(1_000);
    const again = env.sockets.last;
    again.accept("gw-2");
    await tick();
    expect(joins(again, id)).toHaveLength(0);
    expect(joins(env.socket, id)).toHaveLength(1);
    env.client.stop();
  });

  it("unblocking joins it again: open at once when the gateway lets the user in", async () => {
    const id = `dm-${BOB.id}`;
    // At the start the gateway refuses the conversation; the user's blocks are known.
    const env = await online((s) => {
      direct(s);
      s.server.blockPairs.add(`${ME.id}/${BOB.id}`);
    }, [id]);
    expect(env.client.room(id)).toMatchObject({ ended: "blocked", live: false });
    expect(env.client.blocked(BOB.id)).toBe(true);
    await env.client.refreshRooms();
    expect(joins(env.socket, id)).toHaveLength(1);
    await env.client.unblock(BOB.id);
    expect(env.server.calls(`/api/blocks/${BOB.id}`, "DELETE")).toHaveLength(1);
    expect(env.client.blocked(BOB.id)).toBe(false);
    expect(joins(env.socket, id)).toHaveLength(2);
    env.socket.deliver({ type: "joined", room: id, seq: 0, recovered: true, members: [ME, BOB] });
    expect(env.client.room(id)).toMatchObject({ ended: undefined, notice: undefined, live: true });
    const sent = env.client.send(id, "sorry") as string;
    expect(env.socket.frames("send").map((f) => f.id)).toEqual([sent]);
    // Lifted already: said, and nothing else changes.
    await expect(env.client.unblock(BOB.id)).rejects.toMatchObject({ status: 404, code: "block_not_found" });
    env.client.stop();
  });

  it("a join refused by a gateway not yet told of the lifted block is asked once more", async () => {
    const id = `dm-${BOB.id}`;
    const env = await online((s) => {
      direct(s);
      s.server.blockPairs.add(`${ME.id}/${BOB.id}`);
    }, [id]);
    await env.client.unblock(BOB.id);
    env.socket.deliver({ type: "error", code: "blocked", message: "one of you blocked the other" });
    expect(env.client.room(id)?.ended).toBe("blocked");
    await tick(1_500);
    expect(joins(env.socket, id)).toHaveLength(3);
    env.socket.deliver({ type: "joined", room: id, seq: 0, recovered: true, members: [ME] });
    expect(env.client.room(id)).toMatchObject({ ended: undefined, live: true });
    env.client.stop();
  });

  it("blocked by the other person: an alert about a conversation not on screen; asked again with each listing", async () => {
    const env = await online((s) => {
      direct(s);
      s.server.room("lobby");
    });
    const id = `dm-${BOB.id}`;
    await env.client.openRoom("lobby");
    env.socket.deliver({ type: "left", room: id, reason: "blocked" });
    expect(env.events).toEqual([
      { type: "notice", room: id, message: "The conversation with “bob” is closed: one of you blocked the other." },
    ]);
    expect(env.client.room(id)).toMatchObject({ ended: "blocked", live: false });
    expect(env.client.roomList().map((r) => r.info.id)).toContain(id);
    // The user does not block bob: each listing asks the gateway (bob may have lifted the block).
    await env.client.refreshRooms();
    expect(joins(env.socket, id)).toHaveLength(2);
    env.socket.deliver({ type: "error", code: "blocked", message: "one of you blocked the other" });
    expect(env.client.room(id)?.ended).toBe("blocked");
    // A refusal is no reason to read the list again by itself.
    await tick(2_000);
    expect(env.server.requests.filter((r) => r.path === "/api/rooms")).toHaveLength(2);
    await env.client.refreshRooms();
    expect(joins(env.socket, id)).toHaveLength(3);
    env.socket.deliver({ type: "joined", room: id, seq: 0, recovered: true, members: [ME, BOB] });
    expect(env.client.room(id)).toMatchObject({ ended: undefined, live: true });
    expect(env.events).toHaveLength(1);
    env.client.stop();
  });

  it("a join refused as blocked is matched to its conversation, not to the next join", async () => {
    const env = setup();
    direct(env, CAROL);
    env.server.room("lobby");
    const client = new NatterClient({ api: env.api, session: env.session, socket: env.sockets.factory, roomsPollMs: 0 });
    await client.start();
    await tick();
    const socket = env.sockets.last;
    socket.accept();
    await tick();
    expect(socket.frames("join").map((j) => j.room)).toEqual([`dm-${CAROL.id}`, "lobby"]);
    socket.deliver({ type: "error", code: "blocked", message: "one of you blocked the other" });
    socket.deliver({ type: "joined", room: "lobby", seq: 0, recovered: true, members: [ME] });
    expect(client.room(`dm-${CAROL.id}`)).toMatchObject({ ended: "blocked", live: false });
    expect(client.room("lobby")).toMatchObject({ live: true, ended: undefined, notice: undefined });
    client.stop();
  });

  it("blocking someone the API does not know, or the user, is refused with the API's code", async () => {
    const env = await online();
    await expect(env.client.block(ME.id)).rejects.toMatchObject({ status: 422, code: "cannot_block_yourself" });
    await expect(env.client.block("u-nobody")).rejects.toMatchObject({ status: 404, code: "user_not_found" });
    expect(env.client.blocks()).toEqual([]);
    expect(env.client.blocked(DAN.id)).toBe(false);
    env.client.stop();
  });
});
