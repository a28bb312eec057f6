/**
 * Which rooms the user is in: the API's room listing (re-read every `roomsPollMs` while the page is visible, so
 * unread counts and memberships follow other devices), creating, joining, leaving and deleting rooms, their
 * members, and the gateway taking the user out of a room (`left` with a reason).
 *
 * A listing asked for before a membership change made or learnt here is stale when it comes back: it could drop
 * a room just created or bring back one just left, so it is not applied.
 */

import { ApiError, type Member, type RoomInfo } from "./api";
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

/** What the person is alerted to about a room that is not open, by the `left` frame's reason (`name`: the room's). */
const ENDED_ALERTS: Record<string, (name: string) => string> = {
  room_deleted: (name) => `The room “${name}” was deleted.`,
  member_removed: (name) => `You were removed from “${name}”.`,
  banned: (name) => `You were banned from “${name}”.`,
  access_revoked: (name) => `You no longer have access to “${name}”.`,
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
    this.memberships += 1;
    this.keep(info);
    await this.refresh().catch(() => undefined);
    return info;
  }

  /** Joins a public room, or a private one with its invite (`ROOM.CODE` or a link). */
  async join(roomOrInvite: string, code?: string): Promise<RoomInfo> {
    const invite = code === undefined ? parseInvite(roomOrInvite) : { room: roomOrInvite, code };
    if (!invite) throw new ApiError(422, "invalid_invite", "that is not an invite code or link");
    const info = await this.ctx.api.joinRoom(this.ctx.token, invite.room, invite.code);
    this.memberships += 1;
    this.keep(info);
    await this.refresh().catch(() => undefined);
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

  /** A room's members, the owner first, as the API has them now. */
  members(id: string): Promise<Member[]> {
    return this.ctx.api.members(this.ctx.token, id);
  }

  /** Removes a member from a room the user owns; the room's member count follows from the API. */
  async removeMember(roomId: string, userId: string): Promise<void> {
    await this.ctx.api.removeMember(this.ctx.token, roomId, userId);
    const room = this.ctx.rooms.get(roomId);
    if (room) this.refreshRoomSoon(room);
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
      member_count: info.joined ? Math.max(0, info.member_count - 1) : info.member_count,
    };
    const gone = reason === "room_deleted" || info.private;
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

  /** Stops the room's wait before its details are re-read. */
  stopTimers(room: Room): void {
    clearTimeout(room.infoTimer);
    room.infoTimer = undefined;
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
    if (info.joined && room.ended) {
      // A member again (joined here, or on another device since): live as any other room.
      room.ended = undefined;
      room.notice = undefined;
    }
    ctx.unread.apply(room, { room: info.id, read_seq: info.read_seq, last_seq: info.last_seq, unread: info.unread });
    if (wasMember && !info.joined && info.id !== ctx.openId) ctx.live.leave(room);
  }
}
