import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import { NatterClient } from "../src/natter/client";
import { BOB, CAROL, ME, setup } from "./fakes";

beforeEach(() => {
  vi.useFakeTimers();
});

afterEach(() => {
  vi.useRealTimers();
});

describe("members", () => {
  it("the owner lists a room's members and removes one; the member count follows from the API", async () => {
    const env = setup();
    env.server.room("team", { owner_id: ME.id, member_count: 2, private: true });
    env.server.members.set("team", [BOB]);
    const client = new NatterClient({ api: env.api, session: env.session, socket: env.sockets.factory, roomsPollMs: 0 });
    await client.start();
    expect((await client.members("team")).map((m) => [m.name, m.role])).toEqual([
      ["alice", "owner"],
      ["bob", "member"],
    ]);
    await client.removeMember("team", BOB.id);
    expect(env.server.calls(`/api/rooms/team/members/${BOB.id}/remove`, "POST")).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(500);
    expect(client.room("team")?.info.member_count).toBe(1);
    expect((await client.members("team")).map((m) => m.name)).toEqual(["alice"]);
    // Removing them again is refused, with the API's code, for the page to put in words.
    await expect(client.removeMember("team", BOB.id)).rejects.toMatchObject({ status: 404, code: "member_not_found" });
    client.stop();
  });

  it("is refused for a plain member, with the API's code", async () => {
    const env = setup();
    env.server.room("theirs", { owner_id: BOB.id, member_count: 3, role: "member" });
    env.server.members.set("theirs", [ME, CAROL]);
    const client = new NatterClient({ api: env.api, session: env.session, socket: env.sockets.factory, roomsPollMs: 0 });
    await client.start();
    await expect(client.removeMember("theirs", CAROL.id)).rejects.toMatchObject({ status: 403, code: "not_room_moderator" });
    client.stop();
  });
});
