import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import { ApiError } from "../src/natter/api";
import { NatterClient } from "../src/natter/client";
import { searchRefusal } from "../src/natter/errors";
import { excerpt, highlight, searchTerms } from "../src/natter/search";
import { describeSearch } from "../src/ui/errors";
import { parseRoute, routePath, type Route } from "../src/ui/router";
import { BOB, ME, message, setup } from "./fakes";

describe("searchTerms", () => {
  it("takes every word, lower-cased, each once", () => {
    expect(searchTerms("Lunch at NOON, lunch!")).toEqual(["lunch", "at", "noon"]);
  });

  it("takes a phrase's words, and leaves out `or` and excluded words and phrases", () => {
    expect(searchTerms('"design review" or mockups -draft -"old stuff" OR Final')).toEqual([
      "design",
      "review",
      "mockups",
      "final",
    ]);
  });

  it("keeps a word with a hyphen inside, in its parts; takes a phrase left open", () => {
    expect(searchTerms('e-mail "open phrase')).toEqual(["e", "mail", "open", "phrase"]);
  });

  it("knows words in any script, and finds none in punctuation", () => {
    expect(searchTerms("Café 東京 naïve")).toEqual(["café", "東京", "naïve"]);
    expect(searchTerms("?! -- \"\"")).toEqual([]);
  });
});

describe("highlight", () => {
  const marked = (text: string, query: string) =>
    highlight(text, searchTerms(query))
      .map((piece) => (piece.mark ? `[${piece.text}]` : piece.text))
      .join("");

  it("marks whole words in any case, and nothing inside another word", () => {
    expect(marked("Lunch at 12:30? lunchbox LUNCH.", "lunch")).toBe("[Lunch] at 12:30? lunchbox [LUNCH].");
  });

  it("marks each word of a phrase and of an `or`, never an excluded word", () => {
    expect(marked("the design review of the old design", '"design review" or old -the')).toBe(
      "the [design] [review] of the [old] [design]",
    );
  });

  it("gives the text back whole, unmarked, when no word matches or none is searched for", () => {
    expect(highlight("nothing here", ["else"])).toEqual([{ text: "nothing here", mark: false }]);
    expect(highlight("nothing here", [])).toEqual([{ text: "nothing here", mark: false }]);
    expect(highlight("", ["x"])).toEqual([]);
  });

  it("keeps markup as text: the pieces put together are the text", () => {
    const text = '<img src=x onerror="alert(1)"> x';
    const pieces = highlight(text, ["x"]);
    expect(pieces.map((p) => p.text).join("")).toBe(text);
    expect(pieces.filter((p) => p.mark).map((p) => p.text)).toEqual(["x", "x"]);
  });
});

describe("excerpt", () => {
  it("gives a short text whole", () => {
    expect(excerpt("a short one", ["one"])).toBe("a short one");
  });

  it("cuts a long text around its first match, at a word's start, saying where it was cut", () => {
    const text = `${"lorem ipsum ".repeat(60)}the needle is here ${"dolor sit ".repeat(60)}`;
    const cut = excerpt(text, ["needle"], 120);
    expect(cut.startsWith("…")).toBe(true);
    expect(cut.endsWith("…")).toBe(true);
    expect(cut).toContain("needle");
    expect(cut.length).toBeLessThanOrEqual(122);
    expect(cut.slice(1, 2)).not.toBe(" ");
    expect(text).toContain(cut.slice(1, -1));
  });

  it("starts a long text at its beginning when the match is there, or when nothing matches", () => {
    const text = `needle ${"hay ".repeat(100)}`;
    expect(excerpt(text, ["needle"], 50).startsWith("needle")).toBe(true);
    expect(excerpt(text, ["absent"], 50).startsWith("needle")).toBe(true);
    expect(excerpt(text, ["absent"], 50).endsWith("…")).toBe(true);
  });

  it("ends near the text's end when the match is there", () => {
    const text = `${"hay ".repeat(100)}needle`;
    const cut = excerpt(text, ["needle"], 50);
    expect(cut.endsWith("needle")).toBe(true);
    expect(cut.startsWith("…")).toBe(true);
  });

  it("never splits a character outside the basic plane", () => {
    const text = "😀".repeat(200);
    const cut = excerpt(text, [], 51);
    expect(cut).toBe(`${"😀".repeat(25)}…`);
  });
});

describe("routes", () => {
  const at = (path: string): Route => {
    const url = new URL(path, "http://natter.test");
    return parseRoute({ pathname: url.pathname, search: url.search });
  };

  it("reads a search with its words and filters", () => {
    expect(at("/search?q=lunch+at%20noon&room=abc_1&author=bob")).toEqual({
      search: { q: "lunch at noon", room: "abc_1", author: "bob" },
    });
    expect(at("/search")).toEqual({ search: { q: "", room: undefined, author: undefined } });
  });

  it("ignores a room id that cannot be one", () => {
    expect(at("/search?q=x&room=../etc").search?.room).toBeUndefined();
  });

  it("reads a message to bring into view in a room, only as a number", () => {
    expect(at("/r/abc?m=1795456800000057")).toEqual({ room: "abc", code: undefined, seq: 1795456800000057 });
    expect(at("/r/abc?m=12x").seq).toBeUndefined();
    expect(at("/r/abc?m=0").seq).toBeUndefined();
    expect(at("/r/abc?code=k3y")).toEqual({ room: "abc", code: "k3y", seq: undefined });
    expect(at("/elsewhere?m=5")).toEqual({});
  });

  it("writes what it reads back", () => {
    const routes: Route[] = [
      {},
      { room: "abc" },
      { room: "abc", seq: 42 },
      { room: "abc", code: "k3y" },
      { search: { q: 'a "quoted phrase" & more' } },
      { search: { q: "x", room: "abc", author: "bob" } },
    ];
    for (const route of routes) {
      const back = at(routePath(route));
      expect(back.room).toBe(route.room);
      expect(back.seq).toBe(route.seq);
      expect(back.code).toBe(route.code);
      expect(back.search?.q).toBe(route.search?.q);
      expect(back.search?.room).toBe(route.search?.room);
      expect(back.search?.author).toBe(route.search?.author);
    }
    expect(routePath({ search: { q: "a b" } })).toBe("/search?q=a+b");
    expect(routePath({ room: "abc", seq: 42 })).toBe("/r/abc?m=42");
  });
});

describe("client.search", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });

  afterEach(() => {
    vi.useRealTimers();
  });

  it("asks the API with the words and filters, and pages with offset", async () => {
    const env = setup();
    env.server.room("team", { name: "Team" });
    env.server.room("other", { name: "Other", joined: false });
    env.server.store(
      "team",
      { ...message("team", 1, 0), body: "lunch at noon" },
      { ...message("team", 2, 1, ME), body: "lunch is late" },
      { ...message("team", 3, 2), body: "nothing else" },
    );
    env.server.store("other", { ...message("other", 1, 0), body: "lunch elsewhere" });
    const client = new NatterClient({ api: env.api, session: env.session, socket: env.sockets.factory, roomsPollMs: 0 });
    await client.start();

    const first = await client.search("  lunch ", { limit: 1 });
    expect(first.results.map((hit) => [hit.room_name, hit.seq, hit.user.name])).toEqual([["Team", 2, ME.name]]);
    expect(first.has_more).toBe(true);
    const second = await client.search("lunch", { limit: 1, offset: 1 });
    expect(second.results.map((hit) => hit.body)).toEqual(["lunch at noon"]);
    expect(second.has_more).toBe(false);
    expect((await client.search("lunch", { author: ` ${BOB.name} ` })).results.map((hit) => hit.seq)).toEqual([1]);
    expect((await client.search("lunch", { room: "other" })).results.map((hit) => hit.body)).toEqual(["lunch elsewhere"]);

    const asked = env.server.calls("/api/search").map((call) => new URL(call.path, "http://x").searchParams);
    expect(asked[0].get("q")).toBe("lunch");
    expect(asked[0].get("limit")).toBe("1");
    expect(asked[0].has("offset")).toBe(false);
    expect(asked[1].get("offset")).toBe("1");
    expect(asked[2].get("author")).toBe(BOB.name);
    expect(asked[3].get("room")).toBe("other");
    // The access token goes along.
    expect(env.server.calls("/api/search")[0].headers.authorization).toMatch(/^Bearer /);
    client.stop();
  });

  it("refuses an empty or overlong query without asking, and hands on the API's refusals", async () => {
    const env = setup();
    const client = new NatterClient({ api: env.api, session: env.session, socket: env.sockets.factory, roomsPollMs: 0 });
    await expect(client.search("   ")).rejects.toMatchObject({ status: 400, code: "invalid_query" });
    await expect(client.search("x".repeat(201))).rejects.toMatchObject({ code: "invalid_query" });
    expect(env.server.calls("/api/search")).toHaveLength(0);
    env.server.fail("/api/search", "GET", 422, 1, "query_too_broad");
    await expect(client.search("the")).rejects.toMatchObject({ status: 422, code: "query_too_broad" });
    client.stop();
  });
});

describe("a refused search in words", () => {
  it("says what to do for each code, and falls back to the API's words", () => {
    expect(describeSearch(new ApiError(422, "query_too_broad", "x"))).toMatch(/add words, or search one room/);
    expect(describeSearch(new ApiError(429, "rate_limited", "x", 17))).toMatch(/try again in 17 seconds/);
    expect(describeSearch(new ApiError(404, "user_not_found", "x"))).toMatch(/Nobody has that user name/);
    expect(describeSearch(new ApiError(0, "network", "x"))).toMatch(/Cannot reach the server/);
    expect(describeSearch(new ApiError(503, "unavailable", "the database cannot be reached"))).toBe(
      "The database cannot be reached.",
    );
    expect(searchRefusal("something_new", "fallback")).toBe("fallback");
  });
});
