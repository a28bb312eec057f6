import { describe, expect, it } from "vitest";

import { RoomTimeline } from "../src/natter/timeline";
import { BOB, ME, message } from "./fakes";

const seqs = (t: RoomTimeline) => t.messages.map((m) => m.seq);

describe("RoomTimeline", () => {
  it("keeps messages in seq order, each once, and follows the prev chain", () => {
    const t = new RoomTimeline(ME, 10);
    expect(t.receive(message("r", 12, 10))).toBe(true);
    expect(t.receive(message("r", 15, 12))).toBe(true);
    // The same message again (a replay overlapping the live feed) is not added.
    expect(t.receive(message("r", 15, 12))).toBe(false);
    expect(seqs(t)).toEqual([12, 15]);
    expect(t.head).toBe(15);
    expect(t.hasGap).toBe(false);
  });

  it("tells a gap from a quiet room by prev, and closes it from a history page", () => {
    const t = new RoomTimeline(ME, 10);
    t.receive(message("r", 12, 10));
    t.receive(message("r", 20, 17));
    expect(t.hasGap).toBe(true);
    expect(t.head).toBe(12);
    expect(t.gapTarget).toBe(17);
    // History after 12: 14 and 17 (and 20, already held).
    t.fillAfter(12, [message("r", 14, 12), message("r", 17, 14), message("r", 20, 17)]);
    expect(seqs(t)).toEqual([12, 14, 17, 20]);
    expect(t.head).toBe(20);
    expect(t.hasGap).toBe(false);
  });

  it("pages older history in front without duplicates and knows where the room starts", () => {
    const t = new RoomTimeline(ME, 30);
    t.receive(message("r", 31, 30));
    t.prependOlder([message("r", 30, 0), message("r", 25, 0), message("r", 20, 0)], true);
    expect(t.floor).toBe(20);
    // An overlapping page adds only what is new.
    t.prependOlder([message("r", 25, 0), message("r", 20, 0), message("r", 5, 0)], false);
    expect(seqs(t)).toEqual([5, 20, 25, 30, 31]);
    expect(t.hasOlder).toBe(false);
  });

  it("shows own messages as sending, then sent, and drops the pending copy once the message is in order", () => {
    const t = new RoomTimeline(ME, 0);
    const pending = t.addPending("x1", "hello");
    expect(t.items().map((i) => i.kind)).toEqual(["pending"]);
    expect(pending.state).toBe("sending");
    t.ack("x1", 7);
    expect(t.findPending("x1")?.state).toBe("sent");
    t.receive(message("r", 7, 0, ME, "x1"));
    const items = t.items();
    expect(items).toHaveLength(1);
    expect(items[0]).toMatchObject({ kind: "message", mine: true, sent: true });
  });

  it("dedups by author and client id, not by id alone", () => {
    const t = new RoomTimeline(ME, 0);
    t.receive(message("r", 1, 0, BOB, "same"));
    t.receive(message("r", 2, 1, ME, "same"));
    expect(seqs(t)).toEqual([1, 2]);
  });

  it("starts over on reset and keeps what is still pending", () => {
    const t = new RoomTimeline(ME, 0);
    t.receive(message("r", 1, 0));
    t.addPending("p", "queued");
    t.reset(500);
    expect(t.messages).toHaveLength(0);
    expect(t.pending).toHaveLength(1);
    expect([t.head, t.floor, t.hasOlder]).toEqual([500, 501, true]);
  });

  it("holds a bounded number of messages", () => {
    const t = new RoomTimeline(ME, 0);
    for (let i = 1; i <= 100; i++) t.receive(message("r", i, i - 1));
    t.trim(40);
    expect(t.messages).toHaveLength(40);
    expect(t.floor).toBe(61);
    expect(t.hasOlder).toBe(true);
  });
});
