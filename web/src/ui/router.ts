/**
 * The page's places: the room list (`/`), a room (`/r/ROOM`, with `?code=` for an invite link, or `?m=SEQ` for a
 * message to bring into view), search results (`/search?q=WORDS`, with `&room=ROOM` and `&author=NAME`) and the
 * messages that mention the user (`/mentions`).
 */

import { useEffect, useState } from "preact/hooks";

/** A search, as its address holds it. */
export interface SearchRoute {
  /** The words, as typed. */
  q: string;
  /** Only this room. */
  room?: string;
  /** Only this user's messages. */
  author?: string;
}

export interface Route {
  room?: string;
  code?: string;
  /** In a room: the message to bring into view and highlight (a search result's). */
  seq?: number;
  search?: SearchRoute;
  /** The messages that mention the user. */
  mentions?: boolean;
}

const ROOM_ID = /^[A-Za-z0-9_-]{1,64}$/;

export function parseRoute(location: { pathname: string; search: string }): Route {
  const params = new URLSearchParams(location.search);
  if (/^\/mentions\/?$/.test(location.pathname)) return { mentions: true };
  if (/^\/search\/?$/.test(location.pathname)) {
    const room = params.get("room") ?? "";
    const author = (params.get("author") ?? "").trim().slice(0, 64);
    return {
      search: {
        q: (params.get("q") ?? "").slice(0, 200),
        room: ROOM_ID.test(room) ? room : undefined,
        author: author || undefined,
      },
    };
  }
  const match = /^\/r\/([A-Za-z0-9_-]{1,64})\/?$/.exec(location.pathname);
  if (!match) return {};
  const code = params.get("code") ?? undefined;
  const seq = params.get("m") ?? "";
  return {
    room: match[1],
    code: code && /^[A-Za-z0-9_-]+$/.test(code) ? code : undefined,
    seq: /^[0-9]{1,17}$/.test(seq) && Number(seq) > 0 ? Number(seq) : undefined,
  };
}

/** The address of a place (what {@link parseRoute} reads back). */
export function routePath(route: Route): string {
  if (route.search) {
    const query = new URLSearchParams({ q: route.search.q });
    if (route.search.room) query.set("room", route.search.room);
    if (route.search.author) query.set("author", route.search.author);
    return `/search?${query}`;
  }
  if (route.mentions) return "/mentions";
  if (!route.room) return "/";
  const path = `/r/${route.room}`;
  if (route.code) return `${path}?code=${encodeURIComponent(route.code)}`;
  return route.seq ? `${path}?m=${route.seq}` : path;
}

export function navigate(route: Route, replace = false): void {
  const path = routePath(route);
  if (path === location.pathname + location.search) return;
  if (replace) history.replaceState(null, "", path);
  else history.pushState(null, "", path);
  dispatchEvent(new PopStateEvent("popstate"));
}

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(location));
  useEffect(() => {
    const update = () => setRoute(parseRoute(location));
    addEventListener("popstate", update);
    return () => removeEventListener("popstate", update);
  }, []);
  return route;
}
