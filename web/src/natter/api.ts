/**
 * The auth API over HTTP: accounts, tokens, sessions, rooms, read cursors, history and gateway assignment.
 *
 * Uses `fetch`, so it runs in browsers and in Node alike. Every failure is an {@link ApiError} carrying the API's
 * stable error code.
 */

import type { UserRef } from "./frames";

/** Tokens as the API hands them out. */
export interface TokenResponse {
  access_token: string;
  /** Absent when the refresh token is kept in an HttpOnly cookie (see {@link ApiOptions.refreshCookie}). */
  refresh_token?: string;
  expires_in: number;
  token_type: string;
  user: { id: string; name: string; guest: boolean };
}

/** What a member may do in a room: the owner, a moderator the owner appointed, or a member. */
export type RoomRole = "owner" | "moderator" | "member";

/** A room, or a conversation between people: `direct` (two people) or `group` (3 to 8). */
export type RoomKind = "room" | "direct" | "group";

/** A room as the caller sees it. */
export interface RoomInfo {
  id: string;
  /** A direct conversation's: the other person's name. */
  name: string;
  private: boolean;
  /** What it is (absent from an API older than conversations: a room). */
  kind?: RoomKind;
  /** A direct conversation's other person. */
  peer?: UserRef;
  owner_id: string;
  member_count: number;
  joined: boolean;
  /** The caller's role (absent when not a member). */
  role?: RoomRole;
  join_code?: string;
  created_at: string;
  last_seq: number;
  read_seq: number;
  unread: number;
  /** Unread messages (after the read cursor) that mention the caller. */
  mentions?: number;
  /** Whether the caller muted it. */
  muted?: boolean;
}

/** A member of a room, as `GET /api/rooms/{id}/members` lists them (the owner first). */
export interface Member {
  id: string;
  name: string;
  role: RoomRole;
  joined_at: string;
}

/** A user banned from a room, as `GET /api/rooms/{id}/bans` lists them. */
export interface Ban {
  id: string;
  name: string;
  /** The name of who banned them (absent if that account is gone). */
  banned_by?: string;
  banned_at: string;
}

/** Someone the caller blocked, as `GET /api/blocks` lists them (the latest first). */
export interface Blocked {
  id: string;
  name: string;
  since: string;
}

/** One of the caller's sessions (a signed-in device), as `GET /api/sessions` lists them. */
export interface SessionInfo {
  /** The session id: the `sid` of its access tokens. */
  id: string;
  created_at: string;
  /** Its sign-in or its latest refresh. */
  last_used_at: string;
  expires_at: string;
  user_agent?: string | null;
  address?: string | null;
  /** Whether this is the session of the token that asked. */
  current: boolean;
}

/** The caller's read cursor in a room. */
export interface ReadCursor {
  room: string;
  read_seq: number;
  last_seq: number;
  unread: number;
  /** Unread messages that mention the caller. */
  mentions?: number;
}

/** A stored message. */
export interface HistoryMessage {
  seq: number;
  id: string;
  user: UserRef;
  /** A message's current text (empty once deleted); an edit event's new text. */
  body: string;
  ts: string;
  /** A reply's: the seq of the message it answers. */
  reply_to?: number;
  /** A change event's: what it changes (absent for a message). */
  change?:
    | { kind: "edit"; target: number }
    | { kind: "delete"; target: number }
    | { kind: "react"; target: number; emoji: string; on: boolean };
  /** The room's members a message's text mentions (`@name`), as the server resolved them. */
  mentions?: UserRef[];
  /** A message's newest edit folded in. */
  edited?: { seq: number; at: string };
  /** A deleted message's tombstone. */
  deleted?: { by: string; at: string };
  /** A message's reactions, with who reacted. */
  reactions?: { emoji: string; count: number; me: boolean; users: string[] }[];
  /** The newest reaction event folded into `reactions`. */
  reactions_seq?: number;
}

/** One page of history: newest first for `before`, oldest first for `after`. */
export interface HistoryPage {
  messages: HistoryMessage[];
  has_more: boolean;
}

/** A message a search found, as it reads now. */
export interface SearchHit {
  room: string;
  room_name: string;
  seq: number;
  user: UserRef;
  body: string;
  ts: string;
  edited: boolean;
  /** How well it matches: larger is better. */
  rank: number;
}

/** A message that mentions the caller, in one of their rooms. */
export interface MentionHit {
  room: string;
  room_name: string;
  seq: number;
  user: UserRef;
  body: string;
  ts: string;
}

/** One page of the messages mentioning the caller, newest first. */
export interface MentionsPage {
  mentions: MentionHit[];
  has_more: boolean;
}

/** One page of search results: the best matches first, the newest first among equals. */
export interface SearchPage {
  results: SearchHit[];
  has_more: boolean;
}

/** Where a search looks, and which page of its results. */
export interface SearchOptions {
  /** Only this room (any room the caller may read); without it, every room the caller is a member of. */
  room?: string;
  /** Only messages by the user of this name. */
  author?: string;
  /** Results per page, 1 to 50 (the API's default: 20). */
  limit?: number;
  /** Results to skip, 0 to 500. */
  offset?: number;
}

/** A gateway to connect to. */
export interface GatewayAssignment {
  url: string;
  id: string;
  connections: number;
}

/** A failed API call: the HTTP status (0 when the API could not be reached) and the API's error code. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    /** Seconds to wait before retrying, for 429. */
    readonly retryAfter?: number,
  ) {
    super(message);
    this.name = "ApiError";
  }

  /** Whether retrying the same call later may succeed (the network, the server, a rate limit). */
  get transient(): boolean {
    return this.status === 0 || this.status === 429 || this.status >= 500;
  }
}

/** Supplies the access token for calls that need one. */
export type TokenSource = () => Promise<string>;

/** How an {@link Api} keeps refresh tokens. */
export interface ApiOptions {
  /**
   * Keep the refresh token in an HttpOnly cookie the page cannot read (browsers on the API's origin): sign-ins
   * and refreshes then answer without `refresh_token`, and refresh and logout send the cookie instead.
   */
  refreshCookie?: boolean;
}

/** The path of one member of a room. */
function memberPath(id: string, user: string): string {
  return `/api/rooms/${encodeURIComponent(id)}/members/${encodeURIComponent(user)}`;
}

/** The header that asks the API to keep the refresh token in its cookie. */
const REFRESH_MODE = { "natter-refresh-token": "cookie" };

/** Calls the auth API at `base` ("" for the page's own origin). */
export class Api {
  private readonly unauthorized = new Set<(err: ApiError, token: string) => void>();
  private readonly refreshCookie: boolean;

  constructor(
    readonly base: string,
    private readonly fetchImpl: typeof fetch = (...args) => globalThis.fetch(...args),
    options: ApiOptions = {},
  ) {
    this.refreshCookie = options.refreshCookie ?? false;
  }

  register(username: string, password: string): Promise<TokenResponse> {
    return this.call("POST", "/api/register", { body: { username, password }, headers: this.mode() });
  }

  login(username: string, password: string): Promise<TokenResponse> {
    return this.call("POST", "/api/login", { body: { username, password }, headers: this.mode() });
  }

  guest(username: string): Promise<TokenResponse> {
    return this.call("POST", "/api/guest", { body: { username }, headers: this.mode() });
  }

  /** New tokens for `refreshToken`, or for the one in the cookie when there is none (cookie mode). */
  refresh(refreshToken?: string): Promise<TokenResponse> {
    return this.call("POST", "/api/refresh", {
      body: refreshToken === undefined ? undefined : { refresh_token: refreshToken },
      headers: this.mode(),
    });
  }

  /** Ends the session of `refreshToken`, or of the one in the cookie when there is none (cookie mode). */
  logout(refreshToken?: string): Promise<void> {
    return this.call("POST", "/api/logout", {
      body: refreshToken === undefined ? undefined : { refresh_token: refreshToken },
      headers: this.mode(),
    });
  }

  /** The caller's live sessions, the most recently used first. */
  sessions(token: TokenSource): Promise<SessionInfo[]> {
    return this.call("GET", "/api/sessions", { token });
  }

  /** Ends one of the caller's sessions (its sockets are closed with 4003). */
  endSession(token: TokenSource, id: string): Promise<void> {
    return this.call("DELETE", `/api/sessions/${encodeURIComponent(id)}`, { token });
  }

  /** Ends every session of the caller's, or with `keepCurrent` every one but the caller's; returns how many. */
  async endSessions(token: TokenSource, keepCurrent: boolean): Promise<number> {
    const query = keepCurrent ? "?keep_current=true" : "";
    const answer = await this.call<{ ended: number }>("DELETE", `/api/sessions${query}`, { token });
    return answer.ended;
  }

  /** Changes the caller's password; every other session is ended. Returns how many were. */
  async changePassword(token: TokenSource, currentPassword: string, newPassword: string): Promise<number> {
    const answer = await this.call<{ ended: number }>("POST", "/api/account/password", {
      token,
      body: { current_password: currentPassword, new_password: newPassword },
    });
    return answer.ended;
  }

  /**
   * Every room the caller is in, then the other public rooms: the listing's pages followed through their `Link`
   * headers, up to `maxPages` of 500.
   */
  async rooms(token: TokenSource, maxPages = 10): Promise<RoomInfo[]> {
    const rooms: RoomInfo[] = [];
    let path: string | undefined = "/api/rooms";
    for (let page = 0; path !== undefined && page < maxPages; page++) {
      let next: string | undefined;
      rooms.push(
        ...(await this.call<RoomInfo[]>("GET", path, {
          token,
          onHeaders: (headers) => (next = nextPage(headers.get("link"))),
        })),
      );
      path = next;
    }
    return rooms;
  }

  room(token: TokenSource, id: string): Promise<RoomInfo> {
    return this.call("GET", `/api/rooms/${encodeURIComponent(id)}`, { token });
  }

  createRoom(token: TokenSource, name: string, isPrivate: boolean): Promise<RoomInfo> {
    return this.call("POST", "/api/rooms", { token, body: { name, private: isPrivate } });
  }

  joinRoom(token: TokenSource, id: string, code?: string): Promise<RoomInfo> {
    return this.call("POST", `/api/rooms/${encodeURIComponent(id)}/join`, {
      token,
      body: code === undefined ? {} : { code },
    });
  }

  /** Gives a private room a new join code (owner only); the room with it. */
  rotateJoinCode(token: TokenSource, id: string): Promise<RoomInfo> {
    return this.call("POST", `/api/rooms/${encodeURIComponent(id)}/join-code`, { token });
  }

  leaveRoom(token: TokenSource, id: string): Promise<void> {
    return this.call("POST", `/api/rooms/${encodeURIComponent(id)}/leave`, { token });
  }

  deleteRoom(token: TokenSource, id: string): Promise<void> {
    return this.call("DELETE", `/api/rooms/${encodeURIComponent(id)}`, { token });
  }

  /** A room's members, the owner first (a private room's: members only). */
  members(token: TokenSource, id: string): Promise<Member[]> {
    return this.call("GET", `/api/rooms/${encodeURIComponent(id)}/members`, { token });
  }

  /**
   * Removes a member from a room (the owner, or a moderator removing a member); the gateways take the member out
   * of it.
   */
  removeMember(token: TokenSource, id: string, user: string): Promise<void> {
    return this.call("POST", `${memberPath(id, user)}/remove`, { token });
  }

  /** Makes a member a moderator, or a moderator a member again (owner only); the member with the new role. */
  setRole(token: TokenSource, id: string, user: string, role: "moderator" | "member"): Promise<Member> {
    return this.call("PUT", `${memberPath(id, user)}/role`, { token, body: { role } });
  }

  /**
   * Bans a user from a room (the owner, or a moderator banning a member or a stranger): their membership ends, the
   * gateways take them out, and they cannot join or read the room until the ban is lifted.
   */
  banUser(token: TokenSource, id: string, user: string): Promise<void> {
    return this.call("POST", `${memberPath(id, user)}/ban`, { token });
  }

  /** The users banned from a room, for its owner and moderators. */
  bans(token: TokenSource, id: string): Promise<Ban[]> {
    return this.call("GET", `/api/rooms/${encodeURIComponent(id)}/bans`, { token });
  }

  /** Lifts a ban (the owner or a moderator): the user may join again as anyone may. */
  unban(token: TokenSource, id: string, user: string): Promise<void> {
    return this.call("DELETE", `/api/rooms/${encodeURIComponent(id)}/bans/${encodeURIComponent(user)}`, { token });
  }

  /** The direct conversation with the user named `user`: made now (201), or the one the two already have (200). */
  startDirect(token: TokenSource, user: string): Promise<RoomInfo> {
    return this.call("POST", "/api/conversations/direct", { token, body: { user } });
  }

  /** A new group conversation of the caller and 2 to 7 others (by user name), named `name` or after its people. */
  startGroup(token: TokenSource, members: string[], name?: string): Promise<RoomInfo> {
    return this.call("POST", "/api/conversations/group", { token, body: name ? { members, name } : { members } });
  }

  /** The people the caller blocked, the latest first. */
  blocks(token: TokenSource): Promise<Blocked[]> {
    return this.call("GET", "/api/blocks", { token });
  }

  /** Blocks a user (by id): the direct conversation of the two closes for both until the block is lifted. */
  block(token: TokenSource, user: string): Promise<void> {
    return this.call("PUT", `/api/blocks/${encodeURIComponent(user)}`, { token });
  }

  /** Lifts a block: the direct conversation opens again (unless the other person blocks the caller too). */
  unblock(token: TokenSource, user: string): Promise<void> {
    return this.call("DELETE", `/api/blocks/${encodeURIComponent(user)}`, { token });
  }

  markRead(token: TokenSource, id: string, seq: number): Promise<ReadCursor> {
    return this.call("PUT", `/api/rooms/${encodeURIComponent(id)}/read`, { token, body: { seq } });
  }

  /** A page of a room's history: `before` a seq (newest first) or `after` one (oldest first). */
  messages(
    token: TokenSource,
    id: string,
    page: { before?: number; after?: number; limit?: number },
  ): Promise<HistoryPage> {
    const query = new URLSearchParams();
    if (page.before !== undefined) query.set("before", String(page.before));
    if (page.after !== undefined) query.set("after", String(page.after));
    if (page.limit !== undefined) query.set("limit", String(page.limit));
    return this.call("GET", `/api/rooms/${encodeURIComponent(id)}/messages?${query}`, { token });
  }

  /**
   * Messages found by their words (`q` in web-search syntax: all words, `"a phrase"`, `or`, `-word`), in the
   * caller's rooms or in one room, by their text as it reads now.
   */
  search(token: TokenSource, q: string, options: SearchOptions = {}): Promise<SearchPage> {
    const query = new URLSearchParams({ q });
    if (options.room !== undefined) query.set("room", options.room);
    if (options.author !== undefined) query.set("author", options.author);
    if (options.limit !== undefined) query.set("limit", String(options.limit));
    if (options.offset !== undefined) query.set("offset", String(options.offset));
    return this.call("GET", `/api/search?${query}`, { token });
  }

  /** Mutes a room for the caller, or unmutes it; the room. */
  mute(token: TokenSource, id: string, muted: boolean): Promise<RoomInfo> {
    return this.call("PUT", `/api/rooms/${encodeURIComponent(id)}/mute`, { token, body: { muted } });
  }

  /** Messages mentioning the caller across their rooms, newest first; `before` a seq pages on. */
  mentions(token: TokenSource, page: { before?: number; limit?: number } = {}): Promise<MentionsPage> {
    const query = new URLSearchParams();
    if (page.before !== undefined) query.set("before", String(page.before));
    if (page.limit !== undefined) query.set("limit", String(page.limit));
    return this.call("GET", `/api/mentions?${query}`, { token });
  }

  /** The least-loaded live gateway, passing over the ids in `avoid` (ones just lost) when another is live. */
  gateway(avoid: string[] = []): Promise<GatewayAssignment> {
    const query = avoid.length ? `?avoid=${encodeURIComponent(avoid.join(","))}` : "";
    return this.call("GET", `/api/gateway${query}`, {});
  }

  /**
   * Listens to calls made with an access token that the API refused with 401 (`token_revoked`: the token's
   * session was logged out), with the token they carried; returns how to stop.
   */
  onUnauthorized(listener: (err: ApiError, token: string) => void): () => void {
    this.unauthorized.add(listener);
    return () => this.unauthorized.delete(listener);
  }

  private mode(): Record<string, string> {
    return this.refreshCookie ? { ...REFRESH_MODE } : {};
  }

  private async call<T>(
    method: string,
    path: string,
    options: {
      token?: TokenSource;
      body?: unknown;
      headers?: Record<string, string>;
      /** Told the response's headers when it succeeds. */
      onHeaders?: (headers: Headers) => void;
    },
  ): Promise<T> {
    const headers: Record<string, string> = { ...options.headers };
    const token = options.token ? await options.token() : undefined;
    if (token !== undefined) headers.authorization = `Bearer ${token}`;
    if (options.body !== undefined) headers["content-type"] = "application/json";
    let response: Response;
    try {
      response = await this.fetchImpl(this.base + path, {
        method,
        headers,
        // The refresh cookie goes to the API's own origin only.
        credentials: "same-origin",
        body: options.body === undefined ? undefined : JSON.stringify(options.body),
      });
    } catch (err) {
      throw new ApiError(0, "network", `cannot reach the server (${(err as Error).message})`);
    }
    const text = await response.text().catch(() => "");
    let body: unknown = undefined;
    if (text) {
      try {
        body = JSON.parse(text);
      } catch {
        body = undefined;
      }
    }
    if (!response.ok) {
      const error = (body as { error?: { code?: string; message?: string } } | undefined)?.error;
      const retryAfter = Number(response.headers.get("retry-after")) || undefined;
      const failure = new ApiError(
        response.status,
        error?.code ?? `http_${response.status}`,
        error?.message ?? `the server answered ${response.status}`,
        retryAfter,
      );
      if (failure.status === 401 && token !== undefined) {
        for (const listener of [...this.unauthorized]) listener(failure, token);
      }
      throw failure;
    }
    options.onHeaders?.(response.headers);
    return body as T;
  }
}

/** The path of a `Link` header's `rel="next"` target, if it names one on this API. */
export function nextPage(link: string | null): string | undefined {
  const match = link?.match(/<(\/api\/[^>]*)>\s*;\s*rel="next"/);
  return match?.[1];
}
