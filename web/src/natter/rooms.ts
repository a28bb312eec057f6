/**
 * The rooms a client holds: each room's record, and the registry of them in the API's order.
 *
 * A room's record is what it is (its details, its timeline, why the user is out of it) plus one slice per part of
 * the client, each written only by the part that owns it: `live` (live.ts), `outbox` (outbox.ts), `history`
 * (history.ts), `unread` (unread.ts) and `presence` (presence.ts).
 */

import type { RoomInfo, RoomRole } from "./api";
import type { LeftReason, UserRef } from "./frames";
import { historyState, type HistoryState } from "./history";
import { liveState, type LiveState } from "./live";
import { outboxState, type OutboxState } from "./outbox";
import { presenceState, type PresenceState } from "./presence";
import { RoomTimeline } from "./timeline";
import { unreadState, type UnreadState } from "./unread";

/** Someone's live draft. */
export interface Draft {
  user: UserRef;
  text: string;
}

/** A room as the UI shows it. */
export interface RoomView {
  info: RoomInfo;
  timeline: RoomTimeline;
  /** Who is online in the room (any gateway), by name. */
  online: UserRef[];
  drafts: Draft[];
  /** Unread messages (none shown for a muted room). */
  unread: number;
  /** Unread messages that mention the user (shown even when muted). */
  mentions: number;
  /** Whether the user muted it. */
  muted: boolean;
  /** Whether it is joined on the gateway (live). */
  live: boolean;
  loadingOlder: boolean;
  /** Filling a gap from history. */
  filling: boolean;
  /** Something the person should know about this room. */
  notice?: string;
  /** The user's role in the room (absent when not a member, or out of it). */
  role?: RoomRole;
  /**
   * Why the gateway took the user out of this room (`left` with a reason: deleted, left elsewhere, removed by
   * the owner, access revoked): it is no longer joined, not rejoined, and nothing more can be sent to it.
   * `blocked`: a direct conversation closed by a block (either person's), still listed and readable, open again
   * once the block is lifted.
   */
  ended?: LeftReason;
}

/** What the person reads in a room the gateway took them out of, by the `left` frame's reason. */
const ENDED_NOTICES: Record<string, string> = {
  room_deleted: "This room was deleted.",
  member_left: "You left this room in another window.",
  member_removed: "You were removed from this room.",
  banned: "You were banned from this room.",
  access_revoked: "You no longer have access to this room.",
  blocked: "This conversation is closed: one of you blocked the other.",
};

/** One room as the client holds it. */
export class Room {
  /** Its details as the API last gave them (written by membership.ts). */
  info: RoomInfo;
  /** Its messages, in the room's order, and the user's own still on their way. */
  readonly timeline: RoomTimeline;
  /** Something the person should know about this room. */
  notice?: string;
  /** Taken out of the room by the gateway, for this reason: it is not joined again until the person asks. */
  ended?: LeftReason;
  /** A re-read of its details from the API, waiting (membership.ts). */
  infoTimer?: ReturnType<typeof setTimeout>;

  /** Each part's slice, written by that part only. */
  readonly live: LiveState = liveState();
  readonly outbox: OutboxState = outboxState();
  readonly history: HistoryState = historyState();
  readonly unread: UnreadState;
  readonly presence: PresenceState = presenceState();

  /** The view last made for the UI, and the change generation it was made in. */
  view?: RoomView;
  viewGeneration = -1;

  constructor(info: RoomInfo, me: UserRef) {
    this.info = info;
    this.timeline = new RoomTimeline(me, info.last_seq);
    this.unread = unreadState(info);
  }

  /** Its id (its details change; its id does not). */
  get id(): string {
    return this.info.id;
  }

  /** What the person reads about why they are out of this room (when `ended`). */
  get endedNotice(): string {
    return (this.ended && ENDED_NOTICES[this.ended]) ?? "You are no longer in this room.";
  }
}

/** The rooms held, by id, and the order the API lists them in (the user's rooms first). */
export class Rooms {
  private readonly byId = new Map<string, Room>();
  /**
   * Ids in list order. A room held may be missing from it (the open room, once the user is out of it, until the
   * person moves on).
   */
  private ids: string[] = [];

  /** The room held under `id`. */
  get(id: string): Room | undefined {
    return this.byId.get(id);
  }

  /** Whether a room is held under `id`. */
  has(id: string): boolean {
    return this.byId.has(id);
  }

  /** Every room held, in the order they were first held. */
  all(): IterableIterator<Room> {
    return this.byId.values();
  }

  /** The listed rooms' ids, in list order. */
  get order(): readonly string[] {
    return this.ids;
  }

  /** Whether a room is in the list (not only held). */
  listed(id: string): boolean {
    return this.ids.includes(id);
  }

  /** The list as the API gave it. */
  setOrder(ids: string[]): void {
    this.ids = ids;
  }

  /** Holds a new room, listed last unless it is listed already. */
  add(room: Room): void {
    this.byId.set(room.id, room);
    if (!this.ids.includes(room.id)) this.ids = [...this.ids, room.id];
  }

  /** Takes a room out of the list, still held. */
  unlist(id: string): void {
    this.ids = this.ids.filter((room) => room !== id);
  }

  /** Forgets a room. */
  delete(id: string): void {
    this.byId.delete(id);
    this.unlist(id);
  }
}
