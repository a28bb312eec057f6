/**
 * Presence and drafts: who is online in each room (`joined.members`, then `presence` frames), the others' live
 * drafts (`typing` frames, gone when their message arrives, when they clear them, or after `draftTtlMs`), and the
 * person's own draft, streamed to the room at most every `typingIntervalMs`, always ending on the latest text.
 */

import type { ClientContext } from "./context";
import type { UserRef } from "./frames";
import type { Draft, Room } from "./rooms";

/** Who is in a room and what they are typing (this part's slice of the room). */
export interface PresenceState {
  online: Map<string, UserRef>;
  drafts: Map<string, { user: UserRef; text: string; at: number }>;
  /** The person's own draft: the update waiting out the throttle, when the last one went, and its text. */
  draftTimer?: ReturnType<typeof setTimeout>;
  draftSentAt: number;
  draftQueued?: string;
  draftLast: string;
}

/** A new room's: nobody known online, no drafts. */
export function presenceState(): PresenceState {
  return { online: new Map(), drafts: new Map(), draftSentAt: 0, draftLast: "" };
}

export class Presence {
  private sweep: ReturnType<typeof setInterval> | undefined;

  constructor(private readonly ctx: ClientContext) {}

  /** Starts dropping drafts not updated for `draftTtlMs`. */
  start(): void {
    this.sweep = setInterval(() => this.expire(), 1_000);
  }

  /** Stops dropping stale drafts. */
  stop(): void {
    clearInterval(this.sweep);
  }

  /** Who is online in a room, by name. */
  online(room: Room): UserRef[] {
    return [...room.presence.online.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  /** The others' drafts in a room. */
  drafts(room: Room): Draft[] {
    return [...room.presence.drafts.values()].map(({ user, text }) => ({ user, text }));
  }

  /** A room was joined: these are its members online now. */
  joined(room: Room, members: UserRef[]): void {
    room.presence.online = new Map(members.map((u) => [u.id, u]));
  }

  /** A `presence` frame: some came online in the room, some went. */
  changed(room: Room, joined: UserRef[], left: UserRef[]): void {
    for (const user of joined) room.presence.online.set(user.id, user);
    // Someone new may have become a member: the member count comes from the API.
    if (joined.length && room.id === this.ctx.openId) this.ctx.membership.refreshRoomSoon(room);
    for (const user of left) {
      room.presence.online.delete(user.id);
      room.presence.drafts.delete(user.id);
    }
  }

  /** Someone else's draft, as typed; "" clears it. */
  typing(room: Room, user: UserRef, text: string): void {
    if (text === "") room.presence.drafts.delete(user.id);
    else room.presence.drafts.set(user.id, { user, text, at: Date.now() });
  }

  /** `user` sent a message in the room: it takes the place of their draft. */
  sent(room: Room, user: UserRef): void {
    room.presence.drafts.delete(user.id);
  }

  /** The room is no longer joined: nobody is known to be online in it. */
  clear(room: Room): void {
    room.presence.online.clear();
    room.presence.drafts.clear();
  }

  /** The connection dropped: the drafts shown may be stale. */
  clearDrafts(room: Room): void {
    room.presence.drafts.clear();
  }

  /** The person's draft as typed: streamed to the room's other members (throttled), "" clears it. */
  setDraft(roomId: string, typed: string): void {
    const { options } = this.ctx;
    const room = this.ctx.rooms.get(roomId);
    if (!room || !this.ctx.live.joined(room)) return;
    const own = room.presence;
    // A draft never exceeds what a message may hold.
    const text = [...typed].slice(0, options.maxBodyChars).join("");
    if (text === own.draftLast && own.draftQueued === undefined) return;
    const wait = own.draftSentAt + options.typingIntervalMs - Date.now();
    if (text === "" || wait <= 0) {
      clearTimeout(own.draftTimer);
      own.draftTimer = undefined;
      own.draftQueued = undefined;
      this.sendDraft(room, text);
      return;
    }
    own.draftQueued = text;
    if (!own.draftTimer) {
      own.draftTimer = setTimeout(() => {
        own.draftTimer = undefined;
        const queued = own.draftQueued;
        own.draftQueued = undefined;
        if (queued !== undefined) this.sendDraft(room, queued);
      }, wait);
    }
  }

  /**
   * The person sent a message: their draft is over without a further frame (the gateway clears it for the others
   * when the message arrives).
   */
  draftSent(room: Room): void {
    const own = room.presence;
    clearTimeout(own.draftTimer);
    own.draftTimer = undefined;
    own.draftQueued = undefined;
    own.draftLast = "";
  }

  /** Stops the room's draft update waiting out the throttle. */
  stopTimers(room: Room): void {
    clearTimeout(room.presence.draftTimer);
    room.presence.draftTimer = undefined;
  }

  private sendDraft(room: Room, text: string): void {
    const { live } = this.ctx;
    if (!live.joined(room)) return;
    const frame = { type: "typing", room: room.id, text } as const;
    if (live.tooLarge(frame)) return;
    if (live.send(frame)) {
      room.presence.draftLast = text;
      room.presence.draftSentAt = Date.now();
    }
  }

  private expire(): void {
    const cutoff = Date.now() - this.ctx.options.draftTtlMs;
    let changed = false;
    for (const room of this.ctx.rooms.all()) {
      for (const [id, draft] of room.presence.drafts) {
        if (draft.at < cutoff) {
          room.presence.drafts.delete(id);
          changed = true;
        }
      }
    }
    if (changed) this.ctx.emit();
  }
}
