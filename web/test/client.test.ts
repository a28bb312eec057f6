import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import { NatterClient, parseInvite, inviteCode, type ClientOptions } from "../src/natter/client";
import { BOB, ME, message, setup, type FakeSocket } from "./fakes";

/** Lets pending promises and due timers run. */
const tick = (ms = 0) => vi.advanceTimersByTimeAsync(ms);

function start(configure?: (s: ReturnType<typeof setup>) => void, options: Partial<ClientOptions> = {}) {
  const env = setup();
  configure?.(env);
  const client = new NatterClient({
    api: env.api,
    session: env.session,
    socket: env.sockets.factory,
    roomsPollMs: 0,
    ...options,
  });
  return { ...env, client };
}

/** Starts the client and brings its first connection up with every member room joined. */
async function online(env: ReturnType<typeof start>, gateway = "gw-1") {
  await env.client.start();
  await tick();
  const socket = env.sockets.last;
  socket.accept(gateway);
  await tick();
  for (const join of socket.frames("join")) {
    socket.deliver({ type: "joined", room: join.room, seq: join.since ?? 0, recovered: true, members: [ME] });
  }
  await tick();
  return socket;
}

beforeEach(() => {
  vi.useFakeTimers();
});

afterEach(() => {
  vi.useRealTimers();
});

describe("NatterClient", () => {
  it("rejoins every room with since = the last seq it holds after a reconnect, avoiding the lost gateway", async () => {
    const env = start((s) => {
      s.server.room("lobby", { last_seq: 4 });
      s.server.room("dev", { last_seq: 0 });
    });
    const first = await online(env);
    expect(first.url).toBe("ws://gw-1/ws");
    expect(first.protocols).toEqual(["natter.v1", "access-1"]);
    expect(first.frames("join")).toEqual([
      { type: "join", room: "lobby", since: 4 },
      { type: "join", room: "dev", since: 0 },
    ]);
    first.deliver(message("lobby", 6, 4));
    first.deliver(message("lobby", 9, 6));
    expect(env.client.status.state).toBe("online");

    first.drop(1006);
    await tick();
    const status = env.client.status;
    expect(status.state).toBe("reconnecting");
    if (status.state !== "reconnecting") throw new Error("unreachable");
    expect(status.retryAt - Date.now()).toBeGreaterThan(0);
    expect(status.retryAt - Date.now()).toBeLessThanOrEqual(500);
    await tick(500);
    expect(env.server.calls("/api/gateway").at(-1)?.path).toBe("/api/gateway?avoid=gw-1");
    const second = env.sockets.last;
    expect(second).not.toBe(first);
    expect(second.url).toBe("ws://gw-2/ws");
    second.accept("gw-2");
    await tick();
    expect(second.frames("join")).toEqual([
      { type: "join", room: "lobby", since: 9 },
      { type: "join", room: "dev", since: 0 },
    ]);
    // The replay of what was missed, then a duplicate from the overlap: each shown once, in order.
    second.deliver({ type: "joined", room: "lobby", seq: 12, recovered: true, members: [ME, BOB] });
    second.deliver(message("lobby", 12, 9));
    second.deliver(message("lobby", 12, 9));
    await tick();
    const lobby = env.client.room("lobby");
    expect(lobby?.timeline.messages.map((m) => m.seq)).toEqual([6, 9, 12]);
    expect(lobby?.online.map((u) => u.name)).toEqual(["alice", "bob"]);
    env.client.stop();
  });

  it("backs off with jitter while no gateway can be reached, and shows when it retries", async () => {
    const env = start((s) => {
      s.server.room("lobby");
      s.server.gateways = [];
    });
    await env.client.start();
    await tick();
    const delays: number[] = [];
    for (let i = 0; i < 5; i++) {
      const status = env.client.status;
      if (status.state !== "reconnecting") throw new Error(`expected reconnecting, got ${status.state}`);
      expect(status.reason).toContain("no_gateway");
      delays.push(status.retryAt - Date.now());
      await tick(status.retryAt - Date.now());
    }
    // Each wait is within [bound/2, bound], the bound doubling from 500 ms.
    delays.forEach((d, i) => {
      const bound = Math.min(15_000, 500 * 2 ** i);
      expect(d).toBeGreaterThanOrEqual(bound / 2);
      expect(d).toBeLessThanOrEqual(bound);
    });
    env.client.stop();
    expect(env.client.status.state).toBe("offline");
  });

  it("fills a gap found by prev from the history API", async () => {
    const env = start((s) => s.server.room("lobby", { last_seq: 4 }));
    const socket = await online(env);
    env.server.store("lobby", message("lobby", 6, 4), message("lobby", 8, 6));
    socket.deliver(message("lobby", 11, 8));
    await tick();
    expect(env.server.calls("/api/rooms/lobby/messages").map((r) => r.path)).toContain(
      "/api/rooms/lobby/messages?after=4&limit=200",
    );
    const lobby = env.client.room("lobby");
    expect(lobby?.timeline.messages.map((m) => m.seq)).toEqual([6, 8, 11]);
    expect(lobby?.timeline.head).toBe(11);
    expect(lobby?.timeline.hasGap).toBe(false);
    env.client.stop();
  });

  it("waits for history that is still being written, then gives up visibly", async () => {
    const env = start((s) => s.server.room("lobby", { last_seq: 4 }));
    const socket = await online(env);
    socket.deliver(message("lobby", 11, 8));
    await tick(200);
    expect(env.client.room("lobby")?.filling).toBe(true);
    // The persister catches up.
    env.server.store("lobby", message("lobby", 8, 4));
    await tick(2_000);
    expect(env.client.room("lobby")?.timeline.messages.map((m) => m.seq)).toEqual([8, 11]);
    expect(env.client.room("lobby")?.filling).toBe(false);

    socket.deliver(message("lobby", 20, 15));
    await tick(30_000);
    const lobby = env.client.room("lobby");
    expect(lobby?.timeline.hasGap).toBe(false);
    expect(lobby?.notice).toMatch(/could not be loaded/);
    // Live messages chain on from the newest held one.
    socket.deliver(message("lobby", 21, 20));
    expect(env.client.room("lobby")?.timeline.head).toBe(21);
    env.client.stop();
  });

  it("reloads from history when the gateway answers recovered: false", async () => {
    const env = start((s) => s.server.room("lobby", { last_seq: 2 }));
    const socket = await online(env);
    socket.deliver(message("lobby", 3, 2));
    socket.drop(4008);
    await tick(1_000);
    const again = env.sockets.last;
    again.accept("gw-2");
    await tick();
    expect(again.frames("join")[0]).toEqual({ type: "join", room: "lobby", since: 3 });
    for (let seq = 10; seq <= 60; seq++) env.server.store("lobby", message("lobby", seq, seq - 1));
    again.deliver({ type: "joined", room: "lobby", seq: 60, recovered: false, members: [ME] });
    await tick();
    const lobby = env.client.room("lobby");
    expect(env.server.calls("/api/rooms/lobby/messages").at(-1)?.path).toBe(
      "/api/rooms/lobby/messages?before=61&limit=50",
    );
    const shown = lobby?.timeline.messages.map((m) => m.seq) ?? [];
    expect(shown[shown.length - 1]).toBe(60);
    expect(shown).toHaveLength(50);
    expect(shown).not.toContain(3);
    again.deliver(message("lobby", 61, 60));
    expect(env.client.room("lobby")?.timeline.head).toBe(61);
    env.client.stop();
  });

  it("takes a message from pending to acked, and to failed with a retry that reuses the id", async () => {
    const env = start((s) => s.server.room("lobby"));
    const socket = await online(env);
    const id = env.client.send("lobby", "hello") as string;
    const view = () => env.client.room("lobby")?.timeline;
    expect(view()?.findPending(id)?.state).toBe("sending");
    expect(socket.frames("send")).toEqual([{ type: "send", room: "lobby", id, body: "hello" }]);
    socket.deliver({ type: "ack", room: "lobby", id, seq: 5 });
    expect(view()?.findPending(id)?.state).toBe("sent");
    socket.deliver(message("lobby", 5, 0, ME, id));
    expect(view()?.pending).toHaveLength(0);
    expect(view()?.items()).toEqual([expect.objectContaining({ kind: "message", mine: true, sent: true })]);

    const doomed = env.client.send("lobby", "again") as string;
    for (let i = 0; i < 5; i++) {
      socket.deliver({ type: "error", code: "publish_failed", message: "not stored", ref: doomed });
      await tick(20_000);
    }
    expect(view()?.findPending(doomed)?.state).toBe("failed");
    const tries = socket.frames("send").filter((f) => f.id === doomed).length;
    expect(tries).toBe(5);
    env.client.retry("lobby", doomed);
    expect(socket.frames("send").filter((f) => f.id === doomed)).toHaveLength(tries + 1);
    expect(view()?.findPending(doomed)?.state).toBe("sending");
    env.client.stop();
  });

  it("resends what was not acknowledged after a reconnect, with the same ids", async () => {
    const env = start((s) => s.server.room("lobby"));
    const socket = await online(env);
    const id = env.client.send("lobby", "in flight") as string;
    socket.drop(1006);
    // Written while offline: queued, shown as sending.
    const queued = env.client.send("lobby", "offline") as string;
    expect(env.client.room("lobby")?.timeline.findPending(queued)?.state).toBe("sending");
    await tick(1_000);
    const again = env.sockets.last;
    again.accept("gw-2");
    await tick();
    again.deliver({ type: "joined", room: "lobby", seq: 0, recovered: true, members: [ME] });
    // One at a time, in the order written.
    expect(again.frames("send").map((f) => f.id)).toEqual([id]);
    again.deliver({ type: "ack", room: "lobby", id, seq: 1 });
    expect(again.frames("send").map((f) => f.id)).toEqual([id, queued]);
    env.client.stop();
  });

  it("keeps the order written when the gateway refuses a message for the rate limit", async () => {
    const env = start((s) => s.server.room("lobby"));
    const socket = await online(env);
    const ids = ["first", "second", "third"].map((body) => env.client.send("lobby", body) as string);
    expect(socket.frames("send").map((f) => f.body)).toEqual(["first"]);
    socket.deliver({ type: "error", code: "rate_limited", message: "slow down", ref: ids[0] });
    await tick(500);
    // Nothing overtakes the refused message while it waits.
    expect(socket.frames("send").map((f) => f.body)).toEqual(["first"]);
    await tick(1_000);
    expect(socket.frames("send").map((f) => f.body)).toEqual(["first", "first"]);
    ids.forEach((id, i) => {
      socket.deliver({ type: "ack", room: "lobby", id, seq: i + 1 });
    });
    expect(socket.frames("send").map((f) => f.body)).toEqual(["first", "first", "second", "third"]);
    env.client.stop();
  });

  it.each(["rate_limited", "overloaded"])("retries a send refused with %s after a pause and never drops it", async (code) => {
    const env = start((s) => s.server.room("lobby"));
    const socket = await online(env);
    const id = env.client.send("lobby", "fast") as string;
    for (let i = 0; i < 8; i++) {
      socket.deliver({ type: "error", code, message: "slow down", ref: id });
      const before = socket.frames("send").length;
      let waited = 0;
      while (socket.frames("send").length === before && waited < 12_000) {
        await tick(100);
        waited += 100;
      }
      expect(socket.frames("send").length).toBe(before + 1);
      expect(socket.frames("send").at(-1)?.id).toBe(id);
      // A pause, growing with each refusal.
      expect(waited).toBeGreaterThanOrEqual(700);
      expect(env.client.room("lobby")?.timeline.findPending(id)?.state).toBe("sending");
    }
    socket.deliver({ type: "ack", room: "lobby", id, seq: 3 });
    expect(env.client.room("lobby")?.timeline.findPending(id)?.state).toBe("sent");
    env.client.stop();
  });

  it("reconnects at once to another gateway on 1012, and refreshes the token first on 4001", async () => {
    const env = start((s) => s.server.room("lobby"));
    const socket = await online(env);
    socket.drop(1012, "gateway restarting");
    await tick(300);
    const drained = env.sockets.last;
    expect(drained).not.toBe(socket);
    expect(drained.url).toBe("ws://gw-2/ws");
    drained.accept("gw-2");
    await tick();
    expect(env.server.refreshes).toBe(0);
    drained.drop(4001, "access token expired");
    await tick(300);
    expect(env.server.refreshes).toBe(1);
    expect(env.sockets.last.protocols).toEqual(["natter.v1", "access-2"]);
    env.client.stop();
  });

  it("refreshes the access token before it expires and hands it to the gateway in-band", async () => {
    const env = start((s) => s.server.room("lobby"));
    const socket = await online(env);
    // Tokens live 900 s: the refresh is due a minute before they expire, well before the gateway's 4001.
    await tick(839_000);
    expect(socket.frames("refresh")).toHaveLength(0);
    await tick(2_000);
    expect(env.server.refreshes).toBe(1);
    expect(socket.frames("refresh")).toEqual([{ type: "refresh", token: "access-2" }]);
    env.client.stop();
  });

  it("counts unread messages in rooms not open, clears them when the room is read, and keeps the cursor", async () => {
    const env = start((s) => {
      s.server.room("lobby");
      s.server.room("dev", { last_seq: 10, read_seq: 8, unread: 2 });
    });
    const socket = await online(env);
    await env.client.openRoom("lobby");
    expect(env.client.room("dev")?.unread).toBe(2);
    socket.deliver(message("dev", 11, 10));
    socket.deliver(message("dev", 12, 11, ME, "mine"));
    expect(env.client.room("dev")?.unread).toBe(3);
    expect(env.client.totalUnread()).toBe(3);
    await env.client.openRoom("dev");
    expect(env.client.room("dev")?.unread).toBe(0);
    await tick(500);
    expect(env.server.calls("/api/rooms/dev/read", "PUT").map((r) => r.body)).toEqual([{ seq: 12 }]);
    // Another device's reading shows up on the next listing.
    env.server.rooms.get("lobby")!.last_seq = 30;
    env.server.rooms.get("lobby")!.unread = 4;
    await env.client.openRoom("dev");
    await env.client.refreshRooms();
    expect(env.client.room("lobby")?.unread).toBe(4);
    env.server.rooms.get("lobby")!.read_seq = 30;
    env.server.rooms.get("lobby")!.unread = 0;
    await env.client.refreshRooms();
    expect(env.client.room("lobby")?.unread).toBe(0);
    env.client.stop();
  });

  it("streams drafts throttled, with the last text always sent, and drops a draft when its message arrives", async () => {
    const env = start((s) => s.server.room("lobby"));
    const socket = await online(env);
    for (const text of ["h", "he", "hel", "hell", "hello"]) {
      env.client.setDraft("lobby", text);
      await tick(40);
    }
    await tick(200);
    const drafts = socket.frames("typing").map((f) => f.text);
    expect(drafts[0]).toBe("h");
    expect(drafts[drafts.length - 1]).toBe("hello");
    expect(drafts.length).toBeLessThan(5);
    env.client.setDraft("lobby", "");
    expect(socket.frames("typing").at(-1)).toEqual({ type: "typing", room: "lobby", text: "" });

    // A busy page: the throttle's timer runs late, so a keystroke finds the interval over and sends at once;
    // what is typed right after must still go out.
    await tick(1_000);
    env.client.setDraft("lobby", "a");
    env.client.setDraft("lobby", "ab");
    vi.setSystemTime(Date.now() + 400);
    env.client.setDraft("lobby", "abc");
    env.client.setDraft("lobby", "abcd");
    await tick(300);
    expect(socket.frames("typing").at(-1)).toEqual({ type: "typing", room: "lobby", text: "abcd" });

    socket.deliver({ type: "typing", room: "lobby", user: BOB, text: "on my w" });
    expect(env.client.room("lobby")?.drafts).toEqual([{ user: BOB, text: "on my w" }]);
    socket.deliver(message("lobby", 1, 0, BOB));
    expect(env.client.room("lobby")?.drafts).toEqual([]);
    socket.deliver({ type: "typing", room: "lobby", user: BOB, text: "still" });
    await tick(8_000);
    expect(env.client.room("lobby")?.drafts).toEqual([]);
    env.client.stop();
  });

  it("retries a join the gateway could not check, and notes a room that is gone", async () => {
    const env = start((s) => {
      s.server.room("lobby");
      s.server.room("gone");
    });
    await env.client.start();
    await tick();
    const socket = env.sockets.last;
    socket.accept();
    await tick();
    socket.deliver({ type: "error", code: "unavailable", message: "cannot check access; retry" });
    socket.deliver({ type: "joined", room: "gone", seq: 0, recovered: true, members: [] });
    await tick(2_500);
    expect(socket.frames("join").filter((j) => j.room === "lobby")).toHaveLength(2);
    env.client.stop();
  });

  it("retries a join over the gateway's budget a moment later, matched to its join", async () => {
    const env = start((s) => {
      s.server.room("lobby");
      s.server.room("second");
    });
    await env.client.start();
    await tick();
    const socket = env.sockets.last;
    socket.accept();
    await tick();
    const first = socket.frames("join")[0].room;
    const other = first === "lobby" ? "second" : "lobby";
    socket.deliver({ type: "error", code: "rate_limited", message: "joining rooms too fast; slow down" });
    socket.deliver({ type: "joined", room: other, seq: 0, recovered: true, members: [] });
    await tick();
    expect(env.client.room(other)?.notice).toBeUndefined();
    await tick(2_500);
    expect(socket.frames("join").filter((j) => j.room === first)).toHaveLength(2);
    expect(socket.frames("join").filter((j) => j.room === other)).toHaveLength(1);
    env.client.stop();
  });
});

describe("NatterClient under stress", () => {
  it("never sends what the gateway would refuse for its size, and keeps the person's text", async () => {
    const env = start((s) => s.server.room("lobby"));
    const socket = await online(env);
    const long = "字".repeat(4_001);
    const id = env.client.send("lobby", long) as string;
    expect(env.client.room("lobby")?.timeline.findPending(id)).toMatchObject({ state: "failed", body: long });
    // 4000 characters that JSON writes as six bytes each: within the character limit, over the frame limit.
    const escaped = "\u0001".repeat(4_000);
    const big = env.client.send("lobby", `x${escaped}x`.slice(0, 4_000)) as string;
    expect(env.client.room("lobby")?.timeline.findPending(big)?.state).toBe("failed");
    env.client.setDraft("lobby", long);
    expect(socket.frames("send")).toHaveLength(0);
    expect(socket.frames("typing").every((f) => [...f.text].length <= 4_000)).toBe(true);
    expect(socket.closedWith).toBeUndefined();
    env.client.stop();
  });

  it("backs off after history fails to load instead of asking again at once", async () => {
    const env = start((s) => s.server.room("lobby", { last_seq: 9 }));
    await online(env);
    env.server.fail("/api/rooms/lobby/messages", "GET", 503, 3);
    const errors: string[] = [];
    env.client.subscribe((e) => e.type === "error" && errors.push(e.message));
    await env.client.openRoom("lobby");
    for (let i = 0; i < 20; i++) await env.client.loadOlder("lobby");
    expect(env.server.calls("/api/rooms/lobby/messages")).toHaveLength(1);
    expect(errors).toHaveLength(1);
    await tick(2_100);
    await env.client.loadOlder("lobby");
    expect(env.server.calls("/api/rooms/lobby/messages")).toHaveLength(2);
    env.client.stop();
  });

  it("keeps sending the read cursor until the API has it", async () => {
    const env = start((s) => s.server.room("lobby", { last_seq: 3, read_seq: 1, unread: 2 }));
    const socket = await online(env);
    env.server.fail("/api/rooms/lobby/read", "PUT", 503, 2);
    await env.client.openRoom("lobby");
    socket.deliver(message("lobby", 5, 3));
    await tick(10_000);
    const puts = env.server.calls("/api/rooms/lobby/read", "PUT");
    expect(puts.length).toBe(3);
    expect(env.server.rooms.get("lobby")?.read_seq).toBe(5);
    env.client.stop();
  });

  it("reconnects with a fresh token when the gateway refuses an in-band refresh, at most every 30 s", async () => {
    const env = start((s) => s.server.room("lobby"));
    const socket = await online(env);
    socket.deliver({ type: "error", code: "token_bad_signature", message: "bad signature" });
    await tick(300);
    expect(env.sockets.sockets).toHaveLength(2);
    expect(env.sockets.last.protocols).toEqual(["natter.v1", "access-2"]);
    env.sockets.last.accept("gw-2");
    await tick();
    for (let i = 0; i < 5; i++) env.sockets.last.deliver({ type: "error", code: "token_expired", message: "expired" });
    await tick(300);
    expect(env.sockets.sockets).toHaveLength(2);
    expect(env.server.refreshes).toBe(1);
    env.client.stop();
  });

  it("ignores a room listing asked for before a room was created here", async () => {
    const env = start((s) => s.server.room("lobby"));
    await online(env);
    env.server.holdListings = true;
    const poll = env.client.refreshRooms();
    await tick();
    env.server.holdListings = false;
    const created = env.client.createRoom("fresh", false);
    await tick();
    env.server.release();
    await Promise.all([poll, created]);
    expect(env.client.roomList().map((r) => r.info.id)).toContain("fresh");
    env.client.stop();
  });

  it("matches a join's error to its room even when an earlier join was left meanwhile", async () => {
    const env = start((s) => {
      s.server.room("a");
      s.server.room("b", { joined: false });
    });
    await env.client.start();
    await tick();
    // Previewing b when the connection comes up: b is joined first, then a.
    await env.client.openRoom("b");
    const socket = env.sockets.last;
    socket.accept();
    await tick();
    expect(socket.frames("join").map((j) => j.room)).toEqual(["b", "a"]);
    // The preview is closed before the gateway answered it; then the answers come, in order.
    await env.client.openRoom(undefined);
    socket.deliver({ type: "error", code: "room_private", message: "private" });
    socket.deliver({ type: "joined", room: "a", seq: 0, recovered: true, members: [ME] });
    expect(env.client.room("a")?.notice).toBeUndefined();
    expect(env.client.room("a")?.live).toBe(true);
    // The refusal of a join given up on says nothing about the room.
    expect(env.client.room("b")?.notice).toBeUndefined();
    env.client.stop();
  });

  it("joins the open room first and at most maxLiveRooms in all", async () => {
    const env = start(
      (s) => {
        for (const id of ["r1", "r2", "r3"]) s.server.room(id);
      },
      { maxLiveRooms: 2 },
    );
    await env.client.start();
    await tick();
    const socket = env.sockets.last;
    socket.accept();
    await tick();
    expect(socket.frames("join").map((j) => j.room)).toEqual(["r1", "r2"]);
    for (const j of socket.frames("join")) socket.deliver({ type: "joined", room: j.room, seq: 0, recovered: true, members: [] });
    await env.client.openRoom("r3");
    expect(socket.frames("leave").map((l) => l.room)).toEqual(["r2"]);
    expect(socket.frames("join").at(-1)?.room).toBe("r3");
    env.client.stop();
  });

  it("hands a token refreshed while connecting to the gateway once greeted", async () => {
    const env = start((s) => s.server.room("lobby"));
    await env.client.start();
    await tick();
    const socket = env.sockets.last;
    await env.session.refresh();
    socket.accept();
    await tick();
    expect(socket.frames("refresh")).toEqual([{ type: "refresh", token: "access-2" }]);
    env.client.stop();
  });

  it("passes over a gateway that never greeted when it reconnects", async () => {
    const env = start((s) => s.server.room("lobby"));
    await env.client.start();
    await tick();
    env.sockets.last.drop(1006);
    await tick(600);
    expect(env.server.calls("/api/gateway").at(-1)?.path).toBe("/api/gateway?avoid=gw-1");
    env.client.stop();
  });
});

describe("NatterClient sending through leaves and refusals", () => {
  it("resends a rate-limited message after its room was left for the live-room cap and joined again", async () => {
    const env = start(
      (s) => {
        for (const id of ["r1", "r2", "r3"]) s.server.room(id);
      },
      { maxLiveRooms: 2 },
    );
    const socket = await online(env);
    await env.client.openRoom("r2");
    env.client.send("r1", "also on its way");
    const first = env.client.send("r2", "waits out the limit") as string;
    socket.deliver({ type: "error", code: "rate_limited", message: "slow down", ref: first });
    // Opening r3 takes the place of a background room; both have something on its way, so the last one, r2, is
    // left with its message unsent.
    await env.client.openRoom("r3");
    expect(socket.frames("leave").map((f) => f.room)).toContain("r2");
    socket.deliver({ type: "joined", room: "r3", seq: 0, recovered: true, members: [] });
    await tick(10_000);
    expect(socket.frames("send").filter((f) => f.room === "r2")).toHaveLength(1);
    // Back to r2: joined again, the message goes out again with its id, then the next one.
    await env.client.openRoom("r2");
    socket.deliver({ type: "joined", room: "r2", seq: 0, recovered: true, members: [] });
    expect(socket.frames("send").filter((f) => f.room === "r2").map((f) => f.id)).toEqual([first, first]);
    const second = env.client.send("r2", "next") as string;
    socket.deliver({ type: "ack", room: "r2", id: first, seq: 1 });
    expect(socket.frames("send").at(-1)?.id).toBe(second);
    env.client.stop();
  });

  it("does not let rate-limit refusals use up a message's attempts", async () => {
    const env = start((s) => s.server.room("lobby"));
    const socket = await online(env);
    const id = env.client.send("lobby", "patient") as string;
    for (let i = 0; i < 6; i++) {
      socket.deliver({ type: "error", code: "rate_limited", message: "slow down", ref: id });
      await tick(9_000);
    }
    socket.deliver({ type: "error", code: "publish_failed", message: "not stored", ref: id });
    expect(env.client.room("lobby")?.timeline.findPending(id)?.state).toBe("sending");
    await tick(2_000);
    socket.deliver({ type: "ack", room: "lobby", id, seq: 4 });
    expect(env.client.room("lobby")?.timeline.findPending(id)?.state).toBe("sent");
    env.client.stop();
  });

  it("resends a message whose outcome is unknown (publish_failed) with the same id until acked with its seq", async () => {
    const env = start((s) => s.server.room("lobby"));
    const socket = await online(env);
    const id = env.client.send("lobby", "did it land?") as string;
    const next = env.client.send("lobby", "after it") as string;
    const pending = () => env.client.room("lobby")?.timeline.findPending(id);
    for (let i = 0; i < 3; i++) {
      socket.deliver({ type: "error", code: "publish_failed", message: "outcome unknown", ref: id });
      // Still shown as on its way, never as not sent.
      expect(pending()?.state).toBe("sending");
      expect(pending()?.error).toBeUndefined();
      // The gateway answers every attempt: wait for the resend only.
      const before = socket.frames("send").length;
      for (let waited = 0; socket.frames("send").length === before && waited < 10_000; waited += 100) await tick(100);
    }
    // Every attempt carried the same id, and nothing overtook it.
    expect(socket.frames("send").map((f) => f.id)).toEqual([id, id, id, id]);
    // The first attempt was stored after all: the resend is acked with the original seq.
    socket.deliver({ type: "ack", room: "lobby", id, seq: 7 });
    expect(pending()).toMatchObject({ state: "sent", seq: 7 });
    expect(socket.frames("send").at(-1)?.id).toBe(next);
    socket.deliver(message("lobby", 7, 0, ME, id));
    const items = env.client.room("lobby")?.timeline.items() ?? [];
    expect(items[0]).toMatchObject({ kind: "message", mine: true, sent: true, message: { seq: 7, id } });
    env.client.stop();
  });

  it("shows a message never confirmed as such, and as sent once it turns up after all", async () => {
    const env = start((s) => s.server.room("lobby"));
    const socket = await online(env);
    const id = env.client.send("lobby", "into the void") as string;
    for (let i = 0; i < 5; i++) {
      socket.deliver({ type: "error", code: "publish_failed", message: "outcome unknown", ref: id });
      const before = socket.frames("send").length;
      for (let waited = 0; socket.frames("send").length === before && waited < 10_000; waited += 100) await tick(100);
    }
    expect(socket.frames("send").map((f) => f.id)).toEqual([id, id, id, id, id]);
    const timeline = env.client.room("lobby")?.timeline;
    expect(timeline?.findPending(id)).toMatchObject({ state: "failed", unconfirmed: true });
    // NATS is back and the message was stored after all: it arrives in the room's order.
    socket.deliver(message("lobby", 3, 0, ME, id));
    expect(timeline?.pending).toHaveLength(0);
    expect(timeline?.items()).toEqual([expect.objectContaining({ kind: "message", mine: true, sent: true })]);
    env.client.stop();
  });

  it("marks what was written in a room that turned out to be gone as failed", async () => {
    const env = start((s) => s.server.room("gone"));
    await env.client.start();
    await tick();
    const id = env.client.send("gone", "hello?") as string;
    const socket = env.sockets.last;
    socket.accept();
    await tick();
    socket.deliver({ type: "error", code: "room_not_found", message: "no room 'gone'" });
    expect(env.client.room("gone")?.timeline.findPending(id)).toMatchObject({
      state: "failed",
      error: "This room no longer exists.",
    });
    env.client.stop();
  });

  it("asks for history no more than its backoff allows while live messages keep showing a gap", async () => {
    const env = start((s) => s.server.room("lobby", { last_seq: 4 }));
    const socket = await online(env);
    env.server.fail("/api/rooms/lobby/messages", "GET", 503, 100);
    for (let i = 0; i < 10; i++) socket.deliver(message("lobby", 20 + i, 10 + i));
    await tick(50);
    expect(env.server.calls("/api/rooms/lobby/messages").length).toBeLessThanOrEqual(2);
    env.client.stop();
    const after = env.server.requests.length;
    await tick(60_000);
    expect(env.server.requests.length).toBe(after);
  });
});

describe("invites", () => {
  it("accept a code or a link and reject anything else", () => {
    expect(parseInvite("abc123.XyZ_-9")).toEqual({ room: "abc123", code: "XyZ_-9" });
    expect(parseInvite(" http://127.0.0.1:8080/r/abc123?code=XyZ ")).toEqual({ room: "abc123", code: "XyZ" });
    expect(parseInvite("abc123")).toEqual({ room: "abc123", code: undefined });
    expect(parseInvite("a.b.c")).toBeUndefined();
    expect(parseInvite("<script>")).toBeUndefined();
    const room = { id: "abc123", join_code: "k3y" } as Parameters<typeof inviteCode>[0];
    expect(inviteCode(room)).toBe("abc123.k3y");
  });
});

export type { FakeSocket };
