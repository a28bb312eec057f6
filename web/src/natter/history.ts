/**
 * Recovery from the history API: older pages as the person scrolls up, gaps in a room's chain filled (a message
 * arrived whose `prev` is not held), and a room started over after a join answered `recovered: false`.
 *
 * The persister writes behind the live stream, so history may not have caught up yet: a fill or a reload waits
 * a little and asks again. A failure is not asked again at once: the next try waits out a backoff.
 */

import { ApiError, type HistoryPage } from "./api";
import { backoffDelay, NO_JITTER, sleep, type BackoffOptions } from "./backoff";
import type { ClientContext } from "./context";
import type { Room } from "./rooms";

/** A room's reading of history (this part's slice of the room). */
export interface HistoryState {
  loadingOlder: boolean;
  /** Older history is not asked for again before this time (after a failure). */
  olderRetryAt: number;
  olderFailures: number;
  /** Filling a gap from history. */
  filling: boolean;
  fillTimer?: ReturnType<typeof setTimeout>;
  /** Failed gap fills in a row. */
  fillFailures?: number;
  /** Bumped by every reload from history, so an overtaken one stops. */
  reloads: number;
}

/** A new room's: nothing loading, nothing failed. */
export function historyState(): HistoryState {
  return { loadingOlder: false, olderRetryAt: 0, olderFailures: 0, filling: false, reloads: 0 };
}

/** A history request that failed (older pages, gap fills): tried again 2 s later, doubling to 30 s. */
const FAILED_RETRY: BackoffOptions = { first: 1_000, max: 30_000, jitter: NO_JITTER };

/** A gap fill whose page brought nothing new yet: asked again 200 ms later, doubling to 1 s. */
const FILL_WAIT: BackoffOptions = { first: 100, max: 1_000, jitter: NO_JITTER };

/** Idle fills after which a gap is given up on (about 10 s of waiting). */
const FILL_PATIENCE = 12;

/** A reload whose newest page does not reach the join's seq yet: asked again every 500 ms. */
const RELOAD_WAIT: BackoffOptions = { first: 500, max: 500, jitter: NO_JITTER };

/** Reloads asked again before taking what history has. */
const RELOAD_PATIENCE = 10;

export class History {
  constructor(private readonly ctx: ClientContext) {}

  /** Loads the page of history before the oldest message held. */
  async loadOlder(id: string): Promise<void> {
    const { ctx } = this;
    const room = ctx.rooms.get(id);
    if (!room) return;
    const state = room.history;
    if (state.loadingOlder || !room.timeline.hasOlder || Date.now() < state.olderRetryAt) return;
    state.loadingOlder = true;
    ctx.emit();
    try {
      const before = room.timeline.floor;
      const page = await ctx.api.messages(ctx.token, id, { before, limit: ctx.options.historyPage });
      state.olderFailures = 0;
      if (ctx.holds(room) && room.timeline.floor === before) {
        room.timeline.prependOlder(page.messages, page.has_more);
      }
    } catch (err) {
      // Not again at once (the list asks whenever it shows its top): wait longer after each failure, and for
      // good when the room is gone or closed to this user.
      state.olderFailures += 1;
      const final = err instanceof ApiError && (err.status === 403 || err.status === 404);
      state.olderRetryAt = final ? Infinity : Date.now() + backoffDelay(state.olderFailures, FAILED_RETRY);
      ctx.fail(err, "cannot load older messages");
    } finally {
      state.loadingOlder = false;
      ctx.emit();
    }
  }

  /** After `recovered: false`: start over from history at the room's current position. */
  async reload(room: Room, seq: number): Promise<void> {
    const { ctx } = this;
    const reload = ++room.history.reloads;
    room.timeline.reset(seq);
    room.notice = undefined;
    // The newest page must reach `seq` (a message of this room); the persister may still be writing it.
    for (let attempt = 0; ctx.started; attempt++) {
      let page: HistoryPage;
      try {
        page = await ctx.api.messages(ctx.token, room.id, { before: seq + 1, limit: ctx.options.historyPage });
      } catch (err) {
        ctx.fail(err, "cannot reload the room's history");
        return;
      }
      if (!ctx.holds(room) || room.history.reloads !== reload) return;
      const newest = page.messages[0]?.seq ?? 0;
      if (newest >= seq || attempt >= RELOAD_PATIENCE) {
        room.timeline.prependOlder(page.messages, page.has_more);
        if (newest < seq) room.notice = "Some recent messages are still being saved; reload to see them.";
        break;
      }
      await sleep(backoffDelay(attempt, RELOAD_WAIT));
    }
    // The unread count of what was missed comes from the API.
    ctx.membership.refreshRoomsSoon();
    ctx.emit();
  }

  /** A message arrived whose `prev` is not held: fetch what lies between from history. */
  async fillGap(room: Room): Promise<void> {
    const { ctx } = this;
    const state = room.history;
    // One fill at a time, and none while a failed one waits out its backoff.
    if (state.filling || state.fillTimer || !ctx.started) return;
    state.filling = true;
    ctx.emit();
    let idle = 0;
    try {
      while (room.timeline.hasGap && ctx.holds(room) && ctx.started) {
        const after = room.timeline.head;
        const page = await ctx.api.messages(ctx.token, room.id, { after, limit: 200 });
        state.fillFailures = 0;
        const before = room.timeline.head;
        room.timeline.fillAfter(after, page.messages);
        if (!room.timeline.hasGap) break;
        if (room.timeline.head === before) {
          // History has not caught up yet (the persister writes behind the stream): wait a little.
          idle += 1;
          if (idle > FILL_PATIENCE) {
            room.timeline.skipGap();
            room.notice = "Some messages could not be loaded yet; reload later to see them.";
            break;
          }
          await sleep(backoffDelay(idle, FILL_WAIT));
        } else {
          idle = 0;
        }
      }
    } catch (err) {
      if (err instanceof ApiError && !err.transient) {
        // The room is gone or closed to this user: nothing to fill it from.
        room.timeline.skipGap();
        room.notice = "Some messages could not be loaded.";
      } else {
        state.fillFailures = (state.fillFailures ?? 0) + 1;
        if (state.fillFailures === 1) ctx.fail(err, "cannot load missed messages");
        clearTimeout(state.fillTimer);
        state.fillTimer = setTimeout(() => {
          state.fillTimer = undefined;
          if (ctx.started && ctx.holds(room)) void this.fillGap(room);
        }, backoffDelay(state.fillFailures, FAILED_RETRY));
      }
    } finally {
      state.filling = false;
      // What was filled from history is not counted live: the unread count comes from the API.
      if (room.id !== ctx.openId) ctx.membership.refreshRoomsSoon();
      ctx.emit();
    }
  }

  /** Stops the room's wait before a failed gap fill is tried again. */
  stopTimers(room: Room): void {
    clearTimeout(room.history.fillTimer);
    room.history.fillTimer = undefined;
  }
}
