import { describe, expect, it } from "vitest";

import {
  countedUnread,
  insertMention,
  mentionCandidates,
  mentionPieces,
  mentionQuery,
  mentionsUser,
  roomBadges,
} from "../src/natter/mentions";
import { notificationText, shouldNotify } from "../src/natter/notify";
import { parseServerFrame } from "../src/natter/frames";
import { parseRoute, routePath } from "../src/ui/router";

const bob = { id: "u-bob", name: "bob" };
const carol = { id: "u-carol", name: "Carol.K" };

describe("mention pieces", () => {
  it("marks the @names the server listed, as text", () => {
    expect(mentionPieces("hi @bob, see this", [bob])).toEqual([
      { text: "hi " },
      { text: "@bob", user: bob },
      { text: ", see this" },
    ]);
  });

  it("matches names without regard to case, at word starts only", () => {
    expect(mentionPieces("@BOB and mail@bob", [bob])).toEqual([{ text: "@BOB", user: bob }, { text: " and mail@bob" }]);
  });

  it("marks nothing the server did not list", () => {
    expect(mentionPieces("hi @alice and @bob", [bob])).toEqual([
      { text: "hi @alice and " },
      { text: "@bob", user: bob },
    ]);
    expect(mentionPieces("hi @bob", undefined)).toEqual([{ text: "hi @bob" }]);
    expect(mentionPieces("hi @bob", [])).toEqual([{ text: "hi @bob" }]);
  });

  it("takes a trailing full stop off a name, keeps dots inside one", () => {
    expect(mentionPieces("thanks @carol.k.", [carol])).toEqual([
      { text: "thanks " },
      { text: "@carol.k", user: carol },
      { text: "." },
    ]);
    expect(mentionPieces("@bob.", [bob])).toEqual([{ text: "@bob", user: bob }, { text: "." }]);
  });

  it("keeps markup as plain text", () => {
    const pieces = mentionPieces("<b>@bob</b>", [bob]);
    expect(pieces.map((p) => p.text).join("")).toBe("<b>@bob</b>");
    expect(pieces.find((p) => p.user)?.text).toBe("@bob");
  });

  it("says whether a message mentions the user", () => {
    expect(mentionsUser([bob, carol], "u-bob")).toBe(true);
    expect(mentionsUser([carol], "u-bob")).toBe(false);
    expect(mentionsUser(undefined, "u-bob")).toBe(false);
    expect(mentionsUser([bob], "")).toBe(false);
  });
});

describe("the @ picker", () => {
  it("finds the @word at the caret", () => {
    expect(mentionQuery("hello @bo", 9)).toEqual({ start: 6, query: "bo" });
    expect(mentionQuery("@", 1)).toEqual({ start: 0, query: "" });
    expect(mentionQuery("mail@bo", 7)).toBeUndefined();
    expect(mentionQuery("hello @bo there", 15)).toBeUndefined();
    expect(mentionQuery("hello @bo there", 9)).toEqual({ start: 6, query: "bo" });
  });

  it("offers members whose names start with the query first, then containing it, never the user", () => {
    const members = [
      { id: "1", name: "alice" },
      { id: "2", name: "bob" },
      { id: "3", name: "Bobby" },
      { id: "4", name: "jimbo" },
      { id: "5", name: "carol" },
    ];
    expect(mentionCandidates(members, "bo", "1").map((m) => m.name)).toEqual(["bob", "Bobby", "jimbo"]);
    expect(mentionCandidates(members, "", "1").map((m) => m.name)).toEqual(["bob", "Bobby", "carol", "jimbo"]);
    expect(mentionCandidates(members, "zz", "1")).toEqual([]);
    expect(mentionCandidates(members, "", "1", 2)).toHaveLength(2);
  });

  it("puts @name and a space in place of the query", () => {
    expect(insertMention("hi @bo", 3, 6, "bob")).toEqual({ text: "hi @bob ", caret: 8 });
    expect(insertMention("hi @bo there", 3, 6, "bob")).toEqual({ text: "hi @bob there", caret: 8 });
    expect(insertMention("@", 0, 1, "carol")).toEqual({ text: "@carol ", caret: 7 });
  });
});

describe("badges", () => {
  it("shows a muted room's mentions, not its unread count", () => {
    expect(roomBadges(5, 2, false)).toEqual({ unread: 5, mentions: 2 });
    expect(roomBadges(5, 2, true)).toEqual({ unread: 0, mentions: 2 });
    expect(roomBadges(5, 0, true)).toEqual({ unread: 0, mentions: 0 });
  });

  it("counts a muted room in the page's title only by its mentions", () => {
    expect(countedUnread(5, 1, false)).toBe(5);
    expect(countedUnread(5, 1, true)).toBe(1);
    expect(countedUnread(5, 0, true)).toBe(0);
  });
});

describe("notifications", () => {
  const base = { hidden: true, kind: "room" as const, muted: false, mentionsMe: false };

  it("never while the page is visible", () => {
    expect(shouldNotify({ ...base, hidden: false, mentionsMe: true })).toBe(false);
    expect(shouldNotify({ ...base, hidden: false, kind: "direct" })).toBe(false);
  });

  it("for a mention anywhere, even in a muted room", () => {
    expect(shouldNotify({ ...base, mentionsMe: true })).toBe(true);
    expect(shouldNotify({ ...base, mentionsMe: true, muted: true })).toBe(true);
  });

  it("for any message in a conversation, unless it is muted", () => {
    expect(shouldNotify({ ...base, kind: "direct" })).toBe(true);
    expect(shouldNotify({ ...base, kind: "group" })).toBe(true);
    expect(shouldNotify({ ...base, kind: "direct", muted: true })).toBe(false);
  });

  it("not for a room's ordinary message, nor the user's own", () => {
    expect(shouldNotify(base)).toBe(false);
    expect(shouldNotify({ ...base, kind: undefined })).toBe(false);
    expect(shouldNotify({ ...base, mentionsMe: true, mine: true })).toBe(false);
  });

  it("says who wrote where, one notification per room", () => {
    const arrival = { room: "r1", roomName: "general", kind: "room" as const, user: bob, body: "hi @alice", mentionsMe: true };
    expect(notificationText(arrival)).toEqual({ title: "bob mentioned you in general", body: "hi @alice", tag: "natter:r1" });
    expect(notificationText({ ...arrival, kind: "direct", roomName: "bob", mentionsMe: false }).title).toBe("bob");
    expect(notificationText({ ...arrival, body: "x".repeat(300) }, 10).body).toBe(`${"x".repeat(9)}…`);
  });
});

describe("frames and routes", () => {
  it("parses personal events", () => {
    const frame = parseServerFrame(
      JSON.stringify({ type: "personal", event: { kind: "read", room: "r1", read_seq: 4, unread: 0, mentions: 0 } }),
    );
    expect(frame).toEqual({ type: "personal", event: { kind: "read", room: "r1", read_seq: 4, unread: 0, mentions: 0 } });
  });

  it("has a mentions page", () => {
    expect(parseRoute({ pathname: "/mentions", search: "" })).toEqual({ mentions: true });
    expect(routePath({ mentions: true })).toBe("/mentions");
  });
});
