/**
 * Which rooms the user is in: the API's room listing (re-read every `roomsPollMs` while the page is visible, so
 * unread counts and memberships follow other devices), creating, joining, leaving and deleting rooms, their
 * members and moderation (roles, removals, bans), the gateway taking the user out of a room (`left` with a
 * reason), and a direct conversation closed by a block.
 *
 * A listing asked for before a membership change made or learnt here is stale when it comes back: it could drop
 * a room just created or bring back one just left, so it is not applied.
 */

import { ApiError, type Ban, type Member, type RoomInfo, type RoomRole } from "./api";
import type { ClientContext } from "./context";
import type { LeftReason } from "./frames";
import { Room } from "./rooms";

/** Splits an invite (`ROOM.CODE`, or a link `…/r/ROOM?code=CODE`) into a room id and its join code. */
export function parseInvite(text: string): { room: string; code?: string } | undefined {
  const trimmed = text.trim();
  const link = /\/r\/([A-Za-z0-9_-]{1,64})(?:\?code=([A-Za-z0-9_-]+))?/.exec(trimmed);
  if (link) return { room: link[1], code: link[2] };
  const plain = /^([A-Za-z0-9_-]{1,64})(?:\.([A-Za-z0-9_-]+))?$/.exec(trimmed);
  if (plain) return { room: plain[1], code: plain[2] };
  return undefined;
}

/** The invite a private room's owner hands out: the room id and its join code in one string. */
export function inviteCode(room: RoomInfo): string | undefined {
  return room.join_code ? `${room.id}.${room.join_code}` : undefined;
}

/**
 * The user's role in a room: as the API says (`role`); from an API that does not say, the owner by the room's
 * owner id, any other member a member. Absent when not a member.
 */
export function roleIn(info: RoomInfo, me: string): RoomRole | undefined {
  if (info.role) return info.role;
  if (info.owner_id === me) return "owner";
  return info.joined ? "member" : undefined;
}

/** Whether a role moderates its room: removes and bans members, deletes anyone's messages. */
export function moderates(role: RoomRole | undefined): boolean {
  return role === "owner" || role === "moderator";
}

/** What the user may do to one member of a room, as the API allows it. */
export interface MemberActions {
  /** Make them a moderator, or a member again (the owner, to anyone but themself). */
  role: boolean;
  /** Remove them from the room. */
  remove: boolean;
  /** Ban them from the room. */
  ban: boolean;
}

/**
 * What the user, of role `mine` in a room, may do to `member` there: the owner acts on everyone else; a moderator
 * on plain members only (never on the owner or another moderator); nobody on themself; a member on nobody.
 */
export function memberActions(mine: RoomRole | undefined, member: Pick<Member, "id" | "role">, me: string): MemberActions {
  const other = member.id !== me && member.role !== "owner";
  const over = mine === "owner" ? other : mine === "moderator" && other && member.role === "member";
  return { role: mine === "owner" && other, remove: over, ban: over };
}

/** What the person is alerted to about a room that is not open, by the `left` frame's reason (`name`: the room's). */
const ENDED_ALERTS: Record<string, (name: string) => string> = {
  room_deleted: (name) => `The room “${name}” was deleted.`,
  member_removed: (name) => `You were removed from “${name}”.`,
  banned: (name) => `You were banned from “${name}”.`,
  access_revoked: (name) => `You no longer have access to “${name}”.`,
  blocked: (name) => `The conversation with “${name}” is closed: one of you blocked the other.`,
};

export class Membership {
  /** Room listings asked for so far, and the latest one applied. */
  private listingsAsked = 0;
  private listingApplied = 0;
  /**
   * Changes to membership made or learnt here (create, join, leave, delete; a `left` with a reason): a listing
   * asked for before one is stale.
   */
  private memberships = 0;
  /** Rooms this client is leaving or deleting through the API: the gateway's `left` for them is no news. */
  private readonly leaving = new Set<string>();
  private listTimer: ReturnType<typeof setTimeout> | undefined;
  private pollTimer: ReturnType<typeof setInterval> | undefined;
  private loaded = false;

  constructor(private readonly ctx: ClientContext) {}

  /** Whether the room list has been read once. */
  get ready(): boolean {
    return this.loaded;
  }

  /** Starts re-reading the room list every `roomsPollMs` while the page is visible. */
  start(): void {
    const { options } = this.ctx;
    if (options.roomsPollMs > 0) {
      this.pollTimer = setInterval(() => {
        if (this.ctx.visible) void this.refresh().catch(() => undefined);
      }, options.roomsPollMs);
    }
  }

  /** Stops re-reading the room list. */
  stop(): void {
    clearInterval(this.pollTimer);
    clearTimeout(this.listTimer);
  }

  /** Re-reads the room list: membership, names, and unread counts as other devices left them. */
  async refresh(): Promise<void> {
    const { ctx } = this;
    const asked = ++this.listingsAsked;
    const memberships = this.memberships;
    const list = await ctx.api.rooms(ctx.token);
    // An answer overtaken by a newer one, or asked for before a membership change here, is stale: it could drop
    // a room just created or bring back one just left.
    if (asked < this.listingApplied || memberships !== this.memberships) return;
    this.listingApplied = asked;
    const seen = new Set<string>();
    for (const info of list) {
      seen.add(info.id);
      this.keep(info);
    }
    ctx.rooms.setOrder(list.map((r) => r.id));
    for (const room of ctx.rooms.all()) {
      if (!seen.has(room.id) && room.id !== ctx.openId) this.drop(room);
    }
    this.loaded = true;
    ctx.live.sync();
    ctx.emit();
  }

  /** One room listing soon, however many asked for it (rooms reloading after a reconnect, say). */
  refreshRoomsSoon(): void {
    if (this.listTimer) return;
    this.listTimer = setTimeout(() => {
      this.listTimer = undefined;
      if (this.ctx.started) void this.refresh().catch(() => undefined);
    }, 500);
  }

  /** Re-reads one room's details from the API, at most once every 300 ms. */
  refreshRoomSoon(room: Room): void {
    if (room.infoTimer) return;
    room.infoTimer = setTimeout(() => {
      room.infoTimer = undefined;
      this.ctx.api
        .room(this.ctx.token, room.id)
        .then((info) => {
          if (this.ctx.rooms.get(info.id) !== room) return;
          this.update(room, info);
          this.ctx.emit();
        })
        .catch(() => undefined);
    }, 300);
  }

  /** Starts keeping a room (or updates the one kept already, and returns it). */
  keep(info: RoomInfo): Room {
    const existing = this.ctx.rooms.get(info.id);
    if (existing) {
      this.update(existing, info);
      return existing;
    }
    const room = new Room(info, this.ctx.me);
    this.ctx.rooms.add(room);
    return room;
  }

  /** Stops keeping a room: it is left on the gateway, its timers stop, and it leaves the list. */
  drop(room: Room): void {
    this.ctx.live.leave(room);
    this.ctx.stopTimers(room);
    this.ctx.rooms.delete(room.id);
  }

  /**
   * A room the user was taken out of is opened afresh, as the person asked: a public room may be previewed
   * again; a gone one says so on joining.
   */
  reopen(room: Room): void {
    room.ended = undefined;
    room.notice = undefined;
  }

  /** Creates a room (the user becomes its owner) and returns it. */
  async create(name: string, isPrivate: boolean): Promise<RoomInfo> {
    const info = await this.ctx.api.createRoom(this.ctx.token, name, isPrivate);
    await this.added(info);
    return info;
  }

  /**
   * The user became a member of a room here (created, joined, a conversation started): it is kept at once, and
   * the list read again (which joins it live).
   */
  async added(info: RoomInfo): Promise<Room> {
    this.memberships += 1;
    const room = this.keep(info);
    await this.refresh().catch(() => undefined);
    return room;
  }

  /** Joins a public room, or a private one with its invite (`ROOM.CODE` or a link). */
  async join(roomOrInvite: string, code?: string): Promise<RoomInfo> {
    const invite = code === undefined ? parseInvite(roomOrInvite) : { room: roomOrInvite, code };
    if (!invite) throw new ApiError(422, "invalid_invite", "that is not an invite code or link");
    const info = await this.ctx.api.joinRoom(this.ctx.token, invite.room, invite.code);
    await this.added(info);
    return info;
  }

  /** Gives a private room a new join code (owner only): invites made of the old one stop working. */
  async newJoinCode(id: string): Promise<RoomInfo> {
    const info = await this.ctx.api.rotateJoinCode(this.ctx.token, id);
    this.keep(info);
    this.ctx.emit();
    return info;
  }

  /** Leaves a room (members; the owner deletes instead). */
  leave(id: string): Promise<void> {
    return this.quit(id, () => this.ctx.api.leaveRoom(this.ctx.token, id));
  }

  /** Deletes a room (owner only). */
  remove(id: string): Promise<void> {
    return this.quit(id, () => this.ctx.api.deleteRoom(this.ctx.token, id));
  }

  /**
   * A room's members, the owner first, as the API has them now. The user's own role among them is taken as the
   * room's (appointed or dismissed since the room was last read, the actions offered follow at once).
   */
  async members(id: string): Promise<Member[]> {
    const list = await this.moderate(id, () => this.ctx.api.members(this.ctx.token, id));
    const room = this.ctx.rooms.get(id);
    const mine = list.find((member) => member.id === this.ctx.me.id);
    if (room && mine && room.info.joined && !room.ended && room.info.role !== mine.role) {
      room.info = { ...room.info, role: mine.role };
      this.ctx.emit();
    }
    return list;
  }

  /**
   * Removes a member from a room the user owns or moderates (a moderator: plain members only); the room's member
   * count follows from the API.
   */
  async removeMember(roomId: string, userId: string): Promise<void> {
    await this.moderate(roomId, () => this.ctx.api.removeMember(this.ctx.token, roomId, userId));
    this.countChanged(roomId);
  }

  /** Makes a member a moderator, or a moderator a member again (owner only); the member with the new role. */
  setRole(roomId: string, userId: string, role: "moderator" | "member"): Promise<Member> {
    return this.moderate(roomId, () => this.ctx.api.setRole(this.ctx.token, roomId, userId, role));
  }

  /**
   * Bans a user from a room the user owns or moderates (a moderator: not the owner or another moderator): their
   * membership ends and they are kept out until the ban is lifted; the room's member count follows from the API.
   */
  async ban(roomId: string, userId: string): Promise<void> {
    await this.moderate(roomId, () => this.ctx.api.banUser(this.ctx.token, roomId, userId));
    this.countChanged(roomId);
  }

  /** The users banned from a room (its owner and moderators may read them). */
  bans(roomId: string): Promise<Ban[]> {
    return this.moderate(roomId, () => this.ctx.api.bans(this.ctx.token, roomId));
  }

  /** Lifts a ban: the user may join again (a public room as anyone may, a private one with its invite). */
  unban(roomId: string, userId: string): Promise<void> {
    return this.moderate(roomId, () => this.ctx.api.unban(this.ctx.token, roomId, userId));
  }

  /** Whether this client is leaving or deleting the room itself (so the gateway's `left` is its answer). */
  leavingHere(id: string): boolean {
    return this.leaving.has(id);
  }

  /**
   * The gateway took the user out of a room (`left` with a reason): it is not joined any more and is not joined
   * again by itself, what was still to be sent there fails with the reason, and the room leaves the user's list
   * (deleted or private rooms at once; a public one stays among the public rooms). The open room stays on screen
   * with a notice until the person moves on; another room is dropped with an alert.
   */
  ended(room: Room, reason: LeftReason): void {
    const { ctx } = this;
    if (reason === "blocked") {
      this.closed(room, true);
      // Perhaps blocked by the user on another device: the page offers to lift it.
      void ctx.conversations.loadBlocks().catch(() => undefined);
      return;
    }
    const id = room.id;
    room.ended = reason;
    const notice = room.endedNotice;
    ctx.live.takenOut(room);
    ctx.outbox.failPending(room, notice);
    // A listing asked for before this could still call the room joined.
    this.memberships += 1;
    const info = room.info;
    room.info = {
      ...info,
      joined: false,
      join_code: undefined,
      role: undefined,
      member_count: info.joined ? Math.max(0, info.member_count - 1) : info.member_count,
    };
    // A banned user may not see the room, however public.
    const gone = reason === "room_deleted" || reason === "banned" || info.private;
    if (id === ctx.openId) {
      room.notice = notice;
      if (gone) ctx.rooms.unlist(id);
    } else {
      if (gone) this.drop(room);
      const alert = ENDED_ALERTS[reason];
      if (alert) ctx.tell(id, alert(info.name));
    }
    this.refreshRoomsSoon();
  }

  /**
   * A direct conversation closed by a block (the gateway took the user out of it with `left` reason `blocked`, or
   * refused to join it with `blocked`): still the user's, listed and readable, but not live, and what was to be sent
   * there fails. It opens again when a join succeeds (live.ts). `alert`: about a conversation not on screen, the
   * person is told, unless the block is the user's own.
   */
  closed(room: Room, alert: boolean): void {
    const { ctx } = this;
    if (room.ended === "blocked") return;
    room.ended = "blocked";
    room.notice = room.endedNotice;
    ctx.live.takenOut(room);
    ctx.outbox.failPending(room, room.notice);
    if (alert && room.id !== ctx.openId && !ctx.conversations.closedByMe(room)) {
      ctx.tell(room.id, ENDED_ALERTS.blocked(room.info.name));
    }
  }

  /** Stops the room's wait before its details are re-read. */
  stopTimers(room: Room): void {
    clearTimeout(room.infoTimer);
    room.infoTimer = undefined;
  }

  /**
   * A moderation request about a room (`request`). A refusal for the user's role (403) re-reads the room: the
   * role may have changed elsewhere, and the actions offered follow it.
   */
  private async moderate<T>(roomId: string, request: () => Promise<T>): Promise<T> {
    try {
      return await request();
    } catch (err) {
      const room = this.ctx.rooms.get(roomId);
      if (room && err instanceof ApiError && err.status === 403) this.refreshRoomSoon(room);
      throw err;
    }
  }

  /** Someone left the room's members through the user's hand: its count is re-read from the API. */
  private countChanged(roomId: string): void {
    const room = this.ctx.rooms.get(roomId);
    if (room) this.refreshRoomSoon(room);
  }

  /** Leaves or deletes a room through the API (`request`), then forgets it here. */
  private async quit(id: string, request: () => Promise<unknown>): Promise<void> {
    const { ctx } = this;
    this.leaving.add(id);
    try {
      await request();
    } finally {
      this.leaving.delete(id);
    }
    this.memberships += 1;
    const room = ctx.rooms.get(id);
    if (room) this.drop(room);
    if (ctx.openId === id) ctx.openId = undefined;
    await this.refresh().catch(() => undefined);
  }

  /** A room's details changed (a listing, a re-read, a join): membership, cursor and unread count follow. */
  private update(room: Room, info: RoomInfo): void {
    const { ctx } = this;
    const wasMember = room.info.joined;
    room.info = info;
    if (info.joined && room.ended && room.ended !== "blocked") {
      // A member again (joined here, or on another device since): live as any other room. (A conversation closed
      // by a block stays a member's: only a join says it is open again.)
      room.ended = undefined;
      room.notice = undefined;
    }
    ctx.unread.apply(room, { room: info.id, read_seq: info.read_seq, last_seq: info.last_seq, unread: info.unread });
    if (wasMember && !info.joined && info.id !== ctx.openId) ctx.live.leave(room);
  }
}
