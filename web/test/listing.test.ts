import { describe, expect, it } from "vitest";

import { Api, nextPage, type RoomInfo } from "../src/natter/api";

describe("nextPage", () => {
  it("reads the next page's path from a Link header", () => {
    expect(nextPage('</api/rooms?after=1.17.abc&limit=500>; rel="next"')).toBe("/api/rooms?after=1.17.abc&limit=500");
  });

  it("names nothing without a header, another relation, or a target off this API", () => {
    expect(nextPage(null)).toBeUndefined();
    expect(nextPage('</api/rooms?after=x>; rel="prev"')).toBeUndefined();
    expect(nextPage('<https://evil.test/api/rooms>; rel="next"')).toBeUndefined();
  });
});

describe("Api.rooms", () => {
  const room = (id: string) => ({ id }) as RoomInfo;

  /** An API with the listing in pages of two, each linking the next. */
  function paged(ids: string[]) {
    const asked: string[] = [];
    const fetchImpl: typeof fetch = async (input) => {
      const path = String(input);
      asked.push(path);
      const from = Number(new URL(path, "http://api.test").searchParams.get("after") ?? 0);
      const page = ids.slice(from, from + 2).map(room);
      const headers = new Headers();
      if (from + 2 < ids.length) headers.set("link", `</api/rooms?after=${from + 2}>; rel="next"`);
      return new Response(JSON.stringify(page), { status: 200, headers });
    };
    return { api: new Api("", fetchImpl), asked };
  }

  it("follows the pages to the end", async () => {
    const { api, asked } = paged(["a", "b", "c", "d", "e"]);
    const rooms = await api.rooms(async () => "token");
    expect(rooms.map((r) => r.id)).toEqual(["a", "b", "c", "d", "e"]);
    expect(asked).toEqual(["/api/rooms", "/api/rooms?after=2", "/api/rooms?after=4"]);
  });

  it("stops after as many pages as it may read", async () => {
    const { api, asked } = paged(["a", "b", "c", "d", "e"]);
    const rooms = await api.rooms(async () => "token", 2);
    expect(rooms.map((r) => r.id)).toEqual(["a", "b", "c", "d"]);
    expect(asked).toHaveLength(2);
  });
});
