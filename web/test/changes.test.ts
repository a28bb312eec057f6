import { describe, expect, it, vi } from "vitest";

import type { HistoryMessage } from "../src/natter/api";
import type { ChangeFrame } from "../src/natter/frames";
import { NatterClient } from "../src/natter/client";
import { RoomTimeline } from "../src/natter/timeline";
import { BOB, ME, message, setup } from "./fakes";

const TS = "2026-12-01T10:00:00.000Z";

function edited(seq: number, prev: number, target: number, body: string, user = BOB): ChangeFrame {
  return { type: "edited", room: "r", seq, prev, id: `e${seq}`, user, target, body, ts: TS };
}

function deleted(seq: number, prev: number, target: number, user = BOB): ChangeFrame {
  return { type: "deleted", room: "r", seq, prev, id: `d${seq}`, user, target, ts: TS };
}

function reacted(seq: number, prev: number, target: number, emoji: string, on: boolean, user = BOB): ChangeFrame {
  return { type: "reacted", room: "r", seq, prev, id: `r${seq}`, user, target, emoji, on, ts: TS };
}

const reactions = (t: RoomTimeline, seq: number) => Object.fromEntries(t.message(seq)?.reactions ?? []);

describe("changes to messages on the room's chain", () => {
  it("fold into the message they target and move the chain like messages", () => {
    const t = new RoomTimeline(ME, 10);
    t.receive(message("r", 11, 10));
    t.receiveChange(edited(12, 11, 11, "fixed"));
    t.receiveChange(reacted(13, 12, 11, "👍", true, ME));
    t.receiveChange(reacted(14, 13, 11, "👍", true));
    t.receiveChange(reacted(15, 14, 11, "🎉", true));
    t.receiveChange(reacted(16, 15, 11, "🎉", false));
    expect(t.head).toBe(16);
    expect(t.hasGap).toBe(false);
    // Changes are not messages: one message is listed.
    expect(t.messages.map((m) => m.seq)).toEqual([11]);
    expect(t.message(11)?.body).toBe("fixed");
    expect(t.message(11)?.edited).toEqual({ seq: 12, at: TS });
    expect(reactions(t, 11)).toEqual({ "👍": [ME.id, BOB.id] });
  });

  it("applies each change once: an event seen again, or older than what is folded in, changes nothing", () => {
    const t = new RoomTimeline(ME, 10);
    t.receive(message("r", 11, 10));
    t.receiveChange(reacted(12, 11, 11, "👍", true));
    t.receiveChange(reacted(12, 11, 11, "👍", true));
    expect(reactions(t, 11)).toEqual({ "👍": [BOB.id] });
    t.receiveChange(edited(14, 12, 11, "second"));
    t.receiveChange(edited(13, 12, 11, "first"));
    expect(t.message(11)?.body).toBe("second");
  });

  it("a deletion leaves a tombstone and nothing more changes it", () => {
    const t = new RoomTimeline(ME, 10);
    t.receive(message("r", 11, 10));
    t.receiveChange(reacted(12, 11, 11, "👍", true));
    t.receiveChange(deleted(13, 12, 11));
    t.receiveChange(edited(14, 13, 11, "too late"));
    const gone = t.message(11);
    expect(gone?.deleted).toEqual({ by: BOB.id, at: TS });
    expect(gone?.body).toBe("");
    expect(reactions(t, 11)).toEqual({});
  });

  it("a change that arrives across a gap is a gap, filled from history with the messages as they are now", () => {
    const t = new RoomTimeline(ME, 10);
    t.receive(message("r", 11, 10));
    t.receiveChange(reacted(15, 14, 11, "🎉", true, ME));
    expect(t.hasGap).toBe(true);
    const page: HistoryMessage[] = [
      { seq: 12, id: "m12", user: BOB, body: "hello again", ts: TS, edited: { seq: 13, at: TS }, reply_to: 11 },
      { seq: 13, id: "e13", user: BOB, body: "hello again", ts: TS, change: { kind: "edit", target: 12 } },
      { seq: 14, id: "r14", user: BOB, body: "", ts: TS, change: { kind: "react", target: 11, emoji: "👍", on: true } },
    ];
    t.fillAfter(11, page);
    expect(t.hasGap).toBe(false);
    expect(t.head).toBe(15);
    expect(t.message(12)?.replyTo).toBe(11);
    expect(t.message(12)?.edited?.seq).toBe(13);
    // Reaction 14 came from history after 15 was applied live: another user's emoji, so it counts too.
    expect(reactions(t, 11)).toEqual({ "🎉": [ME.id], "👍": [BOB.id] });
    // The same user's emoji again, older than what is applied: nothing changes.
    t.receiveChange(reacted(14, 13, 11, "🎉", false, ME));
    expect(reactions(t, 11)).toEqual({ "🎉": [ME.id], "👍": [BOB.id] });
  });

  it("older history holds its messages folded, and its change events are not listed", () => {
    const t = new RoomTimeline(ME, 20);
    const page: HistoryMessage[] = [
      { seq: 20, id: "r20", user: ME, body: "", ts: TS, change: { kind: "react", target: 18, emoji: "👍", on: true } },
      { seq: 19, id: "d19", user: BOB, body: "", ts: TS, change: { kind: "delete", target: 17 } },
      {
        seq: 18,
        id: "m18",
        user: BOB,
        body: "still here",
        ts: TS,
        reactions: [{ emoji: "👍", count: 1, me: true, users: [ME.id] }],
        reactions_seq: 20,
      },
      { seq: 17, id: "m17", user: BOB, body: "", ts: TS, deleted: { by: BOB.id, at: TS } },
    ];
    t.prependOlder(page, false);
    expect(t.messages.map((m) => m.seq)).toEqual([17, 18]);
    expect(t.message(17)?.deleted?.by).toBe(BOB.id);
    expect(reactions(t, 18)).toEqual({ "👍": [ME.id] });
    // A live reaction newer than the fold applies.
    t.receiveChange(reacted(21, 20, 18, "👍", false, ME));
    expect(reactions(t, 18)).toEqual({});
  });

  it("the user's own change is pending on its target until its event arrives", () => {
    const t = new RoomTimeline(ME, 10);
    t.receive(message("r", 11, 10, ME, "mine"));
    t.addPending("e-1", "better", undefined, { change: { kind: "edit", target: 11, body: "better" } });
    const [item] = t.items();
    expect(item.kind === "message" && item.changes.map((c) => c.id)).toEqual(["e-1"]);
    expect(t.items()).toHaveLength(1);
    t.receiveChange({ ...edited(12, 11, 11, "better", ME), id: "e-1" });
    const [after] = t.items();
    expect(after.kind === "message" && after.changes).toEqual([]);
    expect(t.message(11)?.body).toBe("better");
  });
});

describe("changes through the client", () => {
  it("go out behind the room's messages, in order, settle on their event, and say why when refused", async () => {
    vi.useFakeTimers();
    try {
      const env = setup();
      env.server.room("lobby", { last_seq: 4 });
      const client = new NatterClient({ api: env.api, session: env.session, socket: env.sockets.factory, roomsPollMs: 0 });
      await client.start();
      await vi.advanceTimersByTimeAsync(0);
      const socket = env.sockets.last;
      socket.accept("gw-1");
      await vi.advanceTimersByTimeAsync(0);
      socket.deliver({ type: "joined", room: "lobby", seq: 4, recovered: true, members: [ME] });
      socket.deliver(message("lobby", 5, 4, ME, "mine"));
      await vi.advanceTimersByTimeAsync(0);

      const edit = client.edit("lobby", 5, "  fixed  ");
      const reply = client.send("lobby", "and so", 5);
      // One at a time: the edit first; the reply waits for its ack.
      const sent = () => socket.sent.filter((f) => f.type !== "join" && f.type !== "ping");
      expect(sent()).toEqual([{ type: "edit", room: "lobby", id: edit, target: 5, body: "fixed" }]);
      expect(client.room("lobby")?.timeline.items()[0]).toMatchObject({ kind: "message", changes: [{ id: edit }] });
      socket.deliver({ type: "ack", room: "lobby", id: edit as string, seq: 6 });
      await vi.advanceTimersByTimeAsync(0);
      expect(sent()[1]).toEqual({ type: "send", room: "lobby", id: reply, body: "and so", reply_to: 5 });
      socket.deliver({ ...edited(6, 5, 5, "fixed", ME), room: "lobby", id: edit as string });
      await vi.advanceTimersByTimeAsync(0);
      const held = client.room("lobby")?.timeline;
      expect(held?.message(5)?.body).toBe("fixed");
      expect(held?.items()[0]).toMatchObject({ kind: "message", changes: [] });

      // A refusal shows on its message with the gateway's code, and can be dismissed.
      socket.deliver({ type: "ack", room: "lobby", id: reply as string, seq: 7 });
      const react = client.react("lobby", 5, "ok", true);
      await vi.advanceTimersByTimeAsync(0);
      expect(sent().at(-1)).toEqual({ type: "react", room: "lobby", id: react, target: 5, emoji: "ok", on: true });
      socket.deliver({ type: "error", code: "invalid_emoji", message: "a reaction is one emoji", ref: react });
      await vi.advanceTimersByTimeAsync(0);
      const failed = client.room("lobby")?.timeline.findPending(react as string);
      expect(failed).toMatchObject({ state: "failed", errorCode: "invalid_emoji" });
      client.dismiss("lobby", react as string);
      expect(client.room("lobby")?.timeline.findPending(react as string)).toBeUndefined();
    } finally {
      vi.useRealTimers();
    }
  });
});
