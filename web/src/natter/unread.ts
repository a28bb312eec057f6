/**
 * Unread counts and read cursors. A room's count is the API's (as of the last listing, while the cursor is below
 * the API's `last_seq`) plus the others' messages seen live since, above the cursor. The open room is marked read
 * while the page is visible and scrolled to the newest message: the cursor is raised here at once and sent to the
 * API shortly after, again with backoff until it is stored, so other devices follow.
 */

import { ApiError, type ReadCursor, type RoomInfo } from "./api";
import { backoffDelay, NO_JITTER, type BackoffOptions } from "./backoff";
import type { ClientContext } from "./context";
import type { Room } from "./rooms";

/** A room's unread count and read cursor (this part's slice of the room). */
export interface UnreadState {
  /** The API's `last_seq` when unread counts were last read from it. */
  base: number;
  /** The API's unread count at `base`. */
  serverUnread: number;
  readSeq: number;
  /** The read cursor last sent (or being sent). */
  sentRead: number;
  /** Others' messages after `base`, seen live. */
  liveUnread: Set<number>;
  readTimer?: ReturnType<typeof setTimeout>;
  /** Failed read-cursor updates in a row (for the retry's backoff). */
  readFailures: number;
}

/** A new room's, from its details as the API listed them. */
export function unreadState(info: RoomInfo): UnreadState {
  return {
    base: info.last_seq,
    serverUnread: info.unread,
    readSeq: info.read_seq,
    sentRead: info.read_seq,
    liveUnread: new Set(),
    readFailures: 0,
  };
}

/** A read cursor the API did not store: sent again 2 s later, doubling to 30 s. */
const READ_RETRY: BackoffOptions = { first: 1_000, max: 30_000, jitter: NO_JITTER };

/** How long after reading a cursor is sent (so scrolling through a room sends one). */
const READ_DELAY_MS = 300;

export class Unread {
  constructor(private readonly ctx: ClientContext) {}

  /** A room's unread count (0 for a room the user is not a member of). */
  count(room: Room): number {
    const state = room.unread;
    if (!room.info.joined) return 0;
    let live = 0;
    for (const seq of state.liveUnread) if (seq > state.readSeq) live += 1;
    return (state.readSeq >= state.base ? 0 : state.serverUnread) + live;
  }

  /** The sum of unread counts over the user's rooms. */
  total(): number {
    let total = 0;
    // A muted room counts its mentions of the user only.
    for (const room of this.ctx.rooms.all()) {
      total += this.ctx.mentions.muted(room) ? this.ctx.mentions.count(room) : this.count(room);
    }
    return total;
  }

  /** Someone else's message arrived live: unread, when above both the API's count and the cursor. */
  arrived(room: Room, seq: number): void {
    const state = room.unread;
    if (seq > Math.max(state.base, state.readSeq)) state.liveUnread.add(seq);
  }

  /** The API's cursor and count for a room (from a listing, or the answer to a cursor sent). */
  apply(room: Room, cursor: ReadCursor): void {
    const state = room.unread;
    this.ctx.mentions.apply(room, cursor);
    // Read here further than the API knows (an update that failed): tell it again.
    if (state.readSeq > cursor.read_seq && room.info.joined) {
      state.sentRead = Math.min(state.sentRead, cursor.read_seq);
      this.sendSoon(room, READ_DELAY_MS);
    }
    state.readSeq = Math.max(state.readSeq, cursor.read_seq);
    if (cursor.last_seq >= state.base) {
      state.base = cursor.last_seq;
      state.serverUnread = cursor.unread;
      for (const seq of state.liveUnread) if (seq <= state.base) state.liveUnread.delete(seq);
    }
  }

  /** Marks the open room read up to its newest message, if the person can see it. */
  markOpenRead(): void {
    const { ctx } = this;
    const room = ctx.openId ? ctx.rooms.get(ctx.openId) : undefined;
    if (!room || !room.info.joined || !ctx.visible || !ctx.following) return;
    const state = room.unread;
    const seq = Math.max(room.timeline.newestSeq, state.base);
    if (seq <= state.readSeq && this.count(room) === 0) return;
    state.readSeq = Math.max(state.readSeq, seq);
    state.liveUnread.clear();
    this.sendSoon(room, READ_DELAY_MS);
    ctx.emit();
  }

  /** Stops the room's read cursor waiting to be sent. */
  stopTimers(room: Room): void {
    clearTimeout(room.unread.readTimer);
    room.unread.readTimer = undefined;
  }

  /** Sends the read cursor to the API after `delay` ms, retrying with backoff until it is stored. */
  private sendSoon(room: Room, delay: number): void {
    const state = room.unread;
    if (state.readSeq <= state.sentRead || state.readTimer) return;
    state.readTimer = setTimeout(() => {
      state.readTimer = undefined;
      const target = state.readSeq;
      state.sentRead = target;
      this.ctx.api
        .markRead(this.ctx.token, room.id, target)
        .then((cursor) => {
          state.readFailures = 0;
          this.apply(room, cursor);
          this.ctx.emit();
        })
        .catch((err) => {
          // The count here is right already; other devices learn it once the API has it.
          state.sentRead = Math.min(state.sentRead, target - 1);
          state.readFailures += 1;
          const gone = err instanceof ApiError && (err.status === 403 || err.status === 404);
          if (!gone && this.ctx.holds(room) && this.ctx.started) {
            this.sendSoon(room, backoffDelay(state.readFailures, READ_RETRY));
          }
        });
    }, delay);
  }
}
