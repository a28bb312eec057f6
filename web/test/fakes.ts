/**
 * Test doubles for the protocol client's unit tests: a scripted WebSocket, and an in-memory auth API behind a
 * `fetch` function (so the real `Api` class parses real HTTP responses).
 *
 * These stand in for the network in unit tests only; the end-to-end tests in e2e/ run the real services.
 */

import { Api, type Ban, type Blocked, type HistoryMessage, type RoomInfo, type RoomRole, type TokenResponse } from "../src/natter/api";
import type { SocketFactory, SocketLike } from "../src/natter/connection";
import type { ClientFrame, MessageFrame, ServerFrame, UserRef } from "../src/natter/frames";
import { MemorySessionStore, Session } from "../src/natter/session";

export const ME: UserRef = { id: "u-me", name: "alice" };
export const BOB: UserRef = { id: "u-bob", name: "bob" };
export const CAROL: UserRef = { id: "u-carol", name: "carol" };
export const DAN: UserRef = { id: "u-dan", name: "dan" };

/** A socket whose other end the test plays. */
export class FakeSocket implements SocketLike {
  readyState = 0;
  readonly sent: ClientFrame[] = [];
  onopen: ((event: unknown) => void) | null = null;
  onmessage: ((event: { data: unknown }) => void) | null = null;
  onclose: ((event: { code: number; reason: string }) => void) | null = null;
  onerror: ((event: unknown) => void) | null = null;
  closedWith: number | undefined;

  constructor(
    readonly url: string,
    readonly protocols: string[],
  ) {}

  send(data: string): void {
    if (this.readyState !== 1) throw new Error("not open");
    const frame = JSON.parse(data) as ClientFrame;
    this.sent.push(frame);
    // A live gateway answers pings.
    if (frame.type === "ping") queueMicrotask(() => this.deliver({ type: "pong", id: frame.id }));
  }

  close(code?: number): void {
    this.closedWith = code;
    this.readyState = 3;
  }

  /** The gateway accepts the connection and greets. */
  accept(gateway = "gw-1", conn = "c-1"): void {
    this.readyState = 1;
    this.onopen?.({});
    this.deliver({ type: "hello", conn, gateway, user: ME });
  }

  deliver(frame: ServerFrame): void {
    this.onmessage?.({ data: JSON.stringify(frame) });
  }

  /** The gateway (or the network) ends the connection. */
  drop(code = 1006, reason = ""): void {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }

  /** Frames of one type sent so far. */
  frames<T extends ClientFrame["type"]>(type: T): Extract<ClientFrame, { type: T }>[] {
    return this.sent.filter((f) => f.type === type) as Extract<ClientFrame, { type: T }>[];
  }
}

/** Every socket a client opened, newest last. */
export class SocketLog {
  readonly sockets: FakeSocket[] = [];
  readonly factory: SocketFactory = (url, protocols) => {
    const socket = new FakeSocket(url, protocols);
    this.sockets.push(socket);
    return socket;
  };

  get last(): FakeSocket {
    const socket = this.sockets[this.sockets.length - 1];
    if (!socket) throw new Error("no socket opened yet");
    return socket;
  }
}

/** A message frame. */
export function message(room: string, seq: number, prev: number, user: UserRef = BOB, id = `m${seq}`): MessageFrame {
  return { type: "message", room, seq, prev, id, user, body: `body ${seq}`, ts: "2026-12-01T10:00:00.000Z" };
}

/** The auth API's behaviour, in memory. */
export class FakeServer {
  readonly rooms = new Map<string, RoomInfo>();
  /** Members of each room besides its owner. */
  readonly members = new Map<string, UserRef[]>();
  /**
   * Roles of members other than the owner and the user, by `room/user` (a member's is `member` unless set here);
   * the user's own is the room's `role`.
   */
  readonly roles = new Map<string, RoomRole>();
  /** The users banned from each room. */
  readonly bans = new Map<string, Ban[]>();
  /** The people the server knows, besides the user (for conversations and blocks). */
  readonly people: UserRef[] = [BOB, CAROL, DAN];
  /** Blocks, as `blocker/blocked` user ids. */
  readonly blockPairs = new Set<string>();
  /** Stored history per room, oldest first. */
  readonly history = new Map<string, HistoryMessage[]>();
  /** Gateways by id; assignment takes the first not avoided. */
  gateways: { id: string; url: string }[] = [
    { id: "gw-1", url: "ws://gw-1/ws" },
    { id: "gw-2", url: "ws://gw-2/ws" },
  ];
  readonly requests: { method: string; path: string; body?: unknown; headers: Record<string, string> }[] = [];
  /** The refresh token the browser's HttpOnly cookie holds (cookie mode), as the real API would set it. */
  cookie: string | undefined;
  refreshes = 0;
  /** Requests to fail: path prefix, method, the status and error code to answer, how many times. */
  private failures: { prefix: string; method: string; status: number; times: number; code?: string }[] = [];
  /** Answers to hold back until released: GET /api/rooms listings. */
  holdListings = false;
  private held: (() => void)[] = [];
  /** Requests to hold back until their gate opens: path prefix, method, the gate. */
  private gates: { prefix: string; method: string; open: Promise<void> }[] = [];
  private tokenCounter = 0;

  room(id: string, extra: Partial<RoomInfo> = {}): RoomInfo {
    const info: RoomInfo = {
      id,
      name: id,
      private: false,
      owner_id: BOB.id,
      member_count: 2,
      joined: true,
      created_at: "2026-12-01T00:00:00Z",
      last_seq: 0,
      read_seq: 0,
      unread: 0,
      ...extra,
    };
    this.rooms.set(id, info);
    return info;
  }

  /** Stores messages in a room's history (as the persister would). */
  store(room: string, ...frames: MessageFrame[]): void {
    const list = this.history.get(room) ?? [];
    for (const f of frames) list.push({ seq: f.seq, id: f.id, user: f.user, body: f.body, ts: f.ts });
    list.sort((a, b) => a.seq - b.seq);
    this.history.set(room, list);
    const info = this.rooms.get(room);
    if (info) info.last_seq = Math.max(info.last_seq, ...list.map((m) => m.seq));
  }

  tokens(): TokenResponse {
    this.tokenCounter += 1;
    return {
      access_token: `access-${this.tokenCounter}`,
      refresh_token: `refresh-${this.tokenCounter}`,
      expires_in: 900,
      token_type: "Bearer",
      user: { ...ME, guest: false },
    };
  }

  /** Answers the next `times` `method` requests to paths starting with `prefix` with `status` (and `code`). */
  fail(prefix: string, method: string, status: number, times = 1, code?: string): void {
    this.failures.push({ prefix, method, status, times, code });
  }

  /** Holds the answer to the next `method` request to a path starting with `prefix`; returns how to let it go. */
  hold(prefix: string, method: string): () => void {
    let release = () => undefined as void;
    const open = new Promise<void>((resolve) => (release = resolve));
    this.gates.push({ prefix, method, open });
    return release;
  }

  /** Lets held room listings answer. */
  release(): void {
    for (const go of this.held.splice(0)) go();
  }

  /** Whether the user is banned from a room. */
  banned(room: string, user = ME.id): boolean {
    return (this.bans.get(room) ?? []).some((b) => b.id === user);
  }

  /** Someone's role in a room, if a member. */
  roleOf(info: RoomInfo, user: string): RoomRole | undefined {
    if (user === info.owner_id) return "owner";
    if (user === ME.id) return info.joined ? (info.role ?? "member") : undefined;
    if (!(this.members.get(info.id) ?? []).some((u) => u.id === user)) return undefined;
    return this.roles.get(`${info.id}/${user}`) ?? "member";
  }

  /** Requests to paths starting with `prefix`. */
  calls(prefix: string, method?: string): { method: string; path: string; body?: unknown; headers: Record<string, string> }[] {
    return this.requests.filter((r) => r.path.startsWith(prefix) && (!method || r.method === method));
  }

  readonly fetch: typeof fetch = async (input, init) => {
    const url = new URL(String(input), "http://api.test");
    const method = init?.method ?? "GET";
    const body = init?.body ? JSON.parse(String(init.body)) : undefined;
    const headers = { ...(init?.headers as Record<string, string> | undefined) };
    this.requests.push({ method, path: url.pathname + url.search, body, headers });
    const cookieMode = headers["natter-refresh-token"] === "cookie";
    /** Tokens as the API answers them: in cookie mode, the refresh token goes in the cookie. */
    const issue = (status: number) => {
      const tokens = this.tokens();
      if (!cookieMode) return json(status, tokens);
      this.cookie = tokens.refresh_token;
      const { refresh_token: _kept, ...rest } = tokens;
      return json(status, rest);
    };
    const json = (status: number, value: unknown) =>
      new Response(value === undefined ? null : JSON.stringify(value), {
        status,
        headers: { "content-type": "application/json" },
      });
    const error = (status: number, code: string, message = code) => json(status, { error: { code, message } });
    const path = url.pathname;
    const gate = this.gates.findIndex((g) => path.startsWith(g.prefix) && g.method === method);
    if (gate >= 0) await this.gates.splice(gate, 1)[0].open;
    const failure = this.failures.find((f) => f.times > 0 && path.startsWith(f.prefix) && f.method === method);
    if (failure) {
      failure.times -= 1;
      return error(failure.status, failure.code ?? (failure.status >= 500 ? "unavailable" : "refused"));
    }
    if (path === "/api/gateway") {
      const avoid = (url.searchParams.get("avoid") ?? "").split(",");
      const pick = this.gateways.find((g) => !avoid.includes(g.id)) ?? this.gateways[0];
      return pick ? json(200, { ...pick, connections: 0 }) : error(503, "no_gateway");
    }
    if (path === "/api/refresh") {
      const presented = (body as { refresh_token?: string } | undefined)?.refresh_token ?? (cookieMode ? this.cookie : undefined);
      if (!presented) return error(401, "invalid_refresh_token");
      this.refreshes += 1;
      return issue(200);
    }
    if (path === "/api/login" || path === "/api/register") return issue(path === "/api/login" ? 200 : 201);
    if (path === "/api/logout") {
      if (cookieMode) this.cookie = undefined;
      return json(204, undefined);
    }
    if (path === "/api/rooms" && method === "GET") {
      // The listing is taken when asked for, whenever it is answered; a room the user is banned from is not in it.
      const listing = JSON.parse(JSON.stringify([...this.rooms.values()].filter((r) => !this.banned(r.id))));
      if (this.holdListings) await new Promise<void>((resolve) => this.held.push(resolve));
      return json(200, listing);
    }
    if (path === "/api/rooms" && method === "POST") {
      const { name } = body as { name: string };
      return json(201, this.room(name, { owner_id: ME.id, member_count: 1 }));
    }
    const read = /^\/api\/rooms\/([^/]+)\/read$/.exec(path);
    if (read && method === "PUT") {
      const info = this.rooms.get(read[1]);
      if (!info) return error(404, "room_not_found");
      info.read_seq = Math.max(info.read_seq, (body as { seq: number }).seq);
      const unread = (this.history.get(info.id) ?? []).filter((m) => m.seq > info.read_seq && m.user.id !== ME.id).length;
      info.unread = unread;
      return json(200, { room: info.id, read_seq: info.read_seq, last_seq: info.last_seq, unread });
    }
    const history = /^\/api\/rooms\/([^/]+)\/messages$/.exec(path);
    if (history) {
      const list = this.history.get(history[1]) ?? [];
      const limit = Number(url.searchParams.get("limit") ?? 50);
      const after = url.searchParams.get("after");
      if (after !== null) {
        const matching = list.filter((m) => m.seq > Number(after));
        return json(200, { messages: matching.slice(0, limit), has_more: matching.length > limit });
      }
      const before = Number(url.searchParams.get("before") ?? Number.MAX_SAFE_INTEGER);
      const matching = list.filter((m) => m.seq < before).reverse();
      return json(200, { messages: matching.slice(0, limit), has_more: matching.length > limit });
    }
    if (path === "/api/search" && method === "GET") {
      // Every word in a message's text, in the user's rooms (or the one asked for), the newest first.
      const words = (url.searchParams.get("q") ?? "").toLowerCase().split(/\s+/).filter(Boolean);
      const room = url.searchParams.get("room");
      const author = url.searchParams.get("author");
      const limit = Number(url.searchParams.get("limit") ?? 20);
      const offset = Number(url.searchParams.get("offset") ?? 0);
      if (room && !this.rooms.has(room)) return error(404, "room_not_found");
      const rooms = [...this.rooms.values()].filter((r) => (room ? r.id === room : r.joined));
      const hits = rooms
        .flatMap((r) =>
          (this.history.get(r.id) ?? [])
            .filter((m) => !m.change && !m.deleted && (!author || m.user.name === author))
            .filter((m) => words.every((w) => m.body.toLowerCase().split(/\W+/).includes(w)))
            .map((m) => ({ room: r.id, room_name: r.name, seq: m.seq, user: m.user, body: m.body, ts: m.ts, edited: false, rank: 0.1 })),
        )
        .sort((a, b) => b.seq - a.seq);
      return json(200, { results: hits.slice(offset, offset + limit), has_more: hits.length > offset + limit });
    }
    const one = /^\/api\/rooms\/([^/]+)$/.exec(path);
    if (one && method === "GET") {
      const info = this.rooms.get(one[1]);
      if (info && this.banned(info.id)) return error(403, "banned");
      return info ? json(200, info) : error(404, "room_not_found");
    }
    if (one && method === "DELETE") {
      return this.rooms.delete(one[1]) ? json(204, undefined) : error(404, "room_not_found");
    }
    const members = /^\/api\/rooms\/([^/]+)\/members$/.exec(path);
    if (members && method === "GET") {
      const info = this.rooms.get(members[1]);
      if (!info) return error(404, "room_not_found");
      if (this.banned(info.id)) return error(403, "banned");
      const owner = { id: info.owner_id, name: info.owner_id === ME.id ? ME.name : "owner" };
      const others = this.members.get(info.id) ?? [];
      return json(
        200,
        [owner, ...others].map((m) => ({ ...m, role: this.roleOf(info, m.id), joined_at: "2026-12-01T00:00:00Z" })),
      );
    }
    /** Whether the user may `act` on `target` in room `info`, as the API decides: the refusal, if not. */
    const mayActOn = (info: RoomInfo, target: string, act: "remove" | "ban"): Response | undefined => {
      const mine = this.roleOf(info, ME.id);
      if (mine !== "owner" && mine !== "moderator") return error(403, "not_room_moderator");
      if (target === info.owner_id) return error(409, act === "remove" ? "owner_cannot_be_removed" : "owner_cannot_be_banned");
      if (target === ME.id) return error(409, "cannot_moderate_yourself");
      if (this.roleOf(info, target) === "moderator" && mine !== "owner") return error(403, "not_room_owner");
      return undefined;
    };
    /** Takes `user` out of room `info`'s members. */
    const takeOut = (info: RoomInfo, user: string) => {
      this.members.set(info.id, (this.members.get(info.id) ?? []).filter((u) => u.id !== user));
      this.roles.delete(`${info.id}/${user}`);
      info.member_count -= 1;
    };
    const act = /^\/api\/rooms\/([^/]+)\/members\/([^/]+)\/(remove|ban|role)$/.exec(path);
    if (act) {
      const [, id, user, what] = act;
      const info = this.rooms.get(id);
      if (!info) return error(404, "room_not_found");
      const member = (this.members.get(id) ?? []).find((u) => u.id === user);
      if (what === "remove" && method === "POST") {
        const refused = mayActOn(info, user, "remove");
        if (refused) return refused;
        if (!member) return error(404, "member_not_found");
        takeOut(info, user);
        return json(204, undefined);
      }
      if (what === "ban" && method === "POST") {
        const refused = mayActOn(info, user, "ban");
        if (refused) return refused;
        const known = member ?? [BOB, CAROL].find((u) => u.id === user);
        if (!known) return error(404, "user_not_found");
        if (member) takeOut(info, user);
        const list = (this.bans.get(id) ?? []).filter((b) => b.id !== user);
        this.bans.set(id, [...list, { id: user, name: known.name, banned_by: ME.name, banned_at: "2026-12-01T12:00:00Z" }]);
        return json(204, undefined);
      }
      if (what === "role" && method === "PUT") {
        if (this.roleOf(info, ME.id) !== "owner") return error(403, "not_room_owner");
        const role = (body as { role?: string } | undefined)?.role;
        if (role !== "moderator" && role !== "member") return error(422, "invalid_role");
        if (user === info.owner_id) return error(409, "owner_role_fixed");
        if (!member) return error(404, "member_not_found");
        this.roles.set(`${id}/${user}`, role);
        return json(200, { ...member, role, joined_at: "2026-12-01T00:00:00Z" });
      }
    }
    const bans = /^\/api\/rooms\/([^/]+)\/bans(?:\/([^/]+))?$/.exec(path);
    if (bans) {
      const info = this.rooms.get(bans[1]);
      if (!info) return error(404, "room_not_found");
      if (!["owner", "moderator"].includes(this.roleOf(info, ME.id) ?? "")) return error(403, "not_room_moderator");
      const list = this.bans.get(info.id) ?? [];
      if (!bans[2] && method === "GET") return json(200, list);
      if (bans[2] && method === "DELETE") {
        if (!list.some((b) => b.id === bans[2])) return error(404, "ban_not_found");
        this.bans.set(info.id, list.filter((b) => b.id !== bans[2]));
        return json(204, undefined);
      }
    }
    /** Someone the server knows, by name (without case). */
    const named = (name: string) => [ME, ...this.people].find((u) => u.name.toLowerCase() === name.trim().toLowerCase());
    /** The refusal for a conversation between the user and `other` while either blocks the other. */
    const blockedWith = (other: UserRef): Response | undefined => {
      if (this.blockPairs.has(`${ME.id}/${other.id}`)) {
        return error(403, "blocked", `you blocked ${other.name}; unblock them to write to them`);
      }
      if (this.blockPairs.has(`${other.id}/${ME.id}`)) return error(403, "blocked", `${other.name} does not take messages from you`);
      return undefined;
    };
    if (path === "/api/conversations/direct" && method === "POST") {
      const name = (body as { user: string }).user;
      const other = named(name);
      if (!other) return error(404, "user_not_found", `no user named '${name}'`);
      if (other.id === ME.id) return error(422, "cannot_message_yourself");
      const refused = blockedWith(other);
      if (refused) return refused;
      const existing = this.rooms.get(`dm-${other.id}`);
      if (existing) return json(200, existing);
      const info = this.room(`dm-${other.id}`, {
        name: other.name,
        kind: "direct",
        peer: other,
        private: true,
        owner_id: ME.id,
        role: "member",
      });
      this.members.set(info.id, [other]);
      return json(201, info);
    }
    if (path === "/api/conversations/group" && method === "POST") {
      const { members, name } = body as { members: string[]; name?: string };
      if (members.length < 2 || members.length > 7) return error(422, "invalid_members");
      const others: UserRef[] = [];
      for (const member of members) {
        const other = named(member);
        if (!other) return error(404, "user_not_found", `no user named '${member}'`);
        if (other.id === ME.id || others.includes(other)) return error(422, "invalid_members");
        others.push(other);
      }
      for (const other of others) {
        const refused = blockedWith(other);
        if (refused) return refused;
      }
      const id = `group-${this.rooms.size + 1}`;
      const info = this.room(id, {
        name: name ?? [ME, ...others].map((u) => u.name).join(", "),
        kind: "group",
        private: true,
        owner_id: ME.id,
        role: "member",
        member_count: others.length + 1,
      });
      this.members.set(id, others);
      return json(201, info);
    }
    if (path === "/api/blocks" && method === "GET") {
      const list: Blocked[] = this.people
        .filter((u) => this.blockPairs.has(`${ME.id}/${u.id}`))
        .map((u) => ({ id: u.id, name: u.name, since: "2026-12-01T12:00:00Z" }));
      return json(200, list);
    }
    const block = /^\/api\/blocks\/([^/]+)$/.exec(path);
    if (block) {
      const user = block[1];
      if (method === "PUT") {
        if (user === ME.id) return error(422, "cannot_block_yourself");
        if (!this.people.some((u) => u.id === user)) return error(404, "user_not_found");
        this.blockPairs.add(`${ME.id}/${user}`);
        return json(204, undefined);
      }
      if (method === "DELETE") {
        return this.blockPairs.delete(`${ME.id}/${user}`) ? json(204, undefined) : error(404, "block_not_found");
      }
    }
    const membership = /^\/api\/rooms\/([^/]+)\/(join|leave)$/.exec(path);
    if (membership && method === "POST") {
      const info = this.rooms.get(membership[1]);
      if (!info) return error(404, "room_not_found");
      if (info.kind === "direct" && membership[2] === "leave") return error(409, "direct_cannot_be_left");
      if (info.kind && info.kind !== "room" && membership[2] === "join") return error(403, "room_private");
      if (membership[2] === "join" && this.banned(info.id)) return error(403, "banned");
      info.joined = membership[2] === "join";
      // A conversation left is no longer listed to the user.
      if (info.kind === "group" && !info.joined) this.rooms.delete(info.id);
      return membership[2] === "join" ? json(200, info) : json(204, undefined);
    }
    return error(404, "not_found");
  };
}

/** An API, a signed-in session and a socket log around a fake server. */
export function setup(server = new FakeServer()) {
  const api = new Api("http://api.test", server.fetch);
  const store = new MemorySessionStore();
  const session = new Session(api, store);
  session.begin(server.tokens());
  const sockets = new SocketLog();
  return { server, api, store, session, sockets };
}
