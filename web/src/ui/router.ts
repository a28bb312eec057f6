/** The page's two places: the room list (`/`) and a room (`/r/ROOM`, with `?code=` for an invite link). */

import { useEffect, useState } from "preact/hooks";

export interface Route {
  room?: string;
  code?: string;
}

export function parseRoute(location: Location): Route {
  const match = /^\/r\/([A-Za-z0-9_-]{1,64})\/?$/.exec(location.pathname);
  if (!match) return {};
  const code = new URLSearchParams(location.search).get("code") ?? undefined;
  return { room: match[1], code: code && /^[A-Za-z0-9_-]+$/.test(code) ? code : undefined };
}

export function navigate(route: Route, replace = false): void {
  const path = route.room ? `/r/${route.room}` : "/";
  if (path === location.pathname && !location.search) return;
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
