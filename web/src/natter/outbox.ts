/**
 * The outbox: the user's own messages and changes to messages (edit, delete, react) on their way to the gateway,
 * and everything that settles them: acks, the room's order, refusals, retries and failures.
 *
 * A room's entries go out one at a time, in the order written, each after the previous one's ack: whatever the
 * gateway refuses and the client retries, they are stored in that order, and nothing overtakes an entry waiting out
 * the rate limit. A retry keeps the entry's id, so the gateway's duplicate window stores it at most once.
 */

import { backoffDelay, NO_JITTER, type BackoffOptions } from "./backoff";
import type { ClientContext } from "./context";
import { newMessageId, type ClientFrame } from "./frames";
import type { Room } from "./rooms";
import type { OutgoingChange, PendingMessage } from "./timeline";

/** A room's sending (this part's slice of the room). */
export interface OutboxState {
  /** The user's message on its way to the gateway (one at a time), and its pending resend. */
  inFlight?: string;
  sendTimer?: ReturnType<typeof setTimeout>;
  /** Rate-limit refusals in a row (for the pause's backoff). */
  limited?: number;
}

/** A new room's: nothing on its way. */
export function outboxState(): OutboxState {
  return {};
}

/** Most attempts at a send that failed on the server's side before it is shown as failed. */
const MAX_SEND_ATTEMPTS = 5;

/** A send refused for the rate limit (or an overloaded gateway): 1 s, doubling to 8 s, each ±25%. */
const RATE_LIMIT_RETRY: BackoffOptions = { first: 1_000, max: 8_000, jitter: [0.75, 1.25] };

/**
 * A send whose outcome is unknown (`publish_failed`) or that the gateway could not take (`unavailable`), by its
 * attempts so far: 1 s after the first, doubling (at most 8 s before the fifth and last).
 */
const UNSETTLED_RETRY: BackoffOptions = { first: 500, max: 8_000, jitter: NO_JITTER };

export class Outbox {
  /** The wait for each in-flight entry's ack, by its id. */
  private readonly ackTimers = new Map<string, ReturnType<typeof setTimeout>>();

  constructor(private readonly ctx: ClientContext) {}

  /** Sends a message (a reply to `replyTo`, when given); it shows at once as sending. Returns its client id. */
  send(roomId: string, body: string, replyTo?: number): string | undefined {
    const room = this.ctx.rooms.get(roomId);
    const text = body.trim();
    if (!room || !text) return undefined;
    this.ctx.presence.draftSent(room);
    return this.enqueue(room, text, { replyTo });
  }

  /** Replaces the text of one of the user's messages. Returns the change's client id. */
  edit(roomId: string, target: number, body: string): string | undefined {
    const text = body.trim();
    if (!text) return undefined;
    return this.change(roomId, text, { kind: "edit", target, body: text });
  }

  /** Deletes a message (the user's own, or any in a room the user owns). */
  deleteMessage(roomId: string, target: number): string | undefined {
    return this.change(roomId, "", { kind: "delete", target });
  }

  /** Adds the user's reaction with `emoji` to a message, or takes it back (`on: false`). */
  react(roomId: string, target: number, emoji: string, on: boolean): string | undefined {
    return this.change(roomId, "", { kind: "react", target, emoji, on });
  }

  /** Sends a failed message or change again, with the same id (so it is stored once even if the first try was). */
  retry(roomId: string, id: string): void {
    const room = this.ctx.rooms.get(roomId);
    // A room the user was taken out of takes nothing more: the message stays failed, with its reason.
    if (!room?.timeline.findPending(id) || room.ended) return;
    room.timeline.updatePending(id, {
      state: "sending",
      error: undefined,
      errorCode: undefined,
      unconfirmed: undefined,
      attempts: 0,
    });
    this.pump(room);
    this.ctx.emit();
  }

  /** Forgets a failed message or change the person gave up on. */
  dismiss(roomId: string, id: string): void {
    const room = this.ctx.rooms.get(roomId);
    const pending = room?.timeline.findPending(id);
    if (!room || !pending || pending.state !== "failed") return;
    room.timeline.dismiss(id);
    this.ctx.emit();
  }

  /** Queues a change behind the room's messages still to be sent: it goes out in the order written, like them. */
  private change(roomId: string, body: string, change: OutgoingChange): string | undefined {
    const room = this.ctx.rooms.get(roomId);
    return room && this.enqueue(room, body, { change });
  }

  /** Adds a message or change to the room's queue, shown at once as sending; returns its client id. */
  private enqueue(room: Room, body: string, extra: { replyTo?: number; change?: OutgoingChange }): string {
    const { maxBodyChars } = this.ctx.options;
    const pending = room.timeline.addPending(newMessageId(), body, undefined, extra);
    const length = [...body].length;
    if (length > maxBodyChars) {
      // Shown, so nothing the person wrote vanishes, but never sent: the gateway would refuse it.
      room.timeline.updatePending(pending.id, {
        state: "failed",
        error: `too long (${length} characters; at most ${maxBodyChars})`,
      });
    } else if (room.ended) {
      room.timeline.updatePending(pending.id, { state: "failed", error: room.endedNotice });
    } else {
      this.pump(room);
    }
    this.ctx.emit();
    return pending.id;
  }

  /**
   * Sends the room's oldest message still to be stored, unless one is on its way already. One at a time per room:
   * messages are stored in the order they were written, however the gateway refuses and retries them.
   */
  pump(room: Room): void {
    if (room.outbox.inFlight !== undefined || !this.ctx.live.joined(room) || !this.ctx.live.online) return;
    for (const pending of room.timeline.pending) {
      if (pending.state === "sending" && this.put(room, pending.id)) return;
    }
  }

  /** Puts message `id` on the wire as the room's one in flight; false when it cannot go at all (too large). */
  private put(room: Room, id: string, countAttempt = true): boolean {
    const { live } = this.ctx;
    const pending = room.timeline.findPending(id);
    if (!pending || pending.state !== "sending") return false;
    if (!live.joined(room) || !live.online) {
      // Not live (left, or between connections): the next join sends it.
      this.release(room);
      return true;
    }
    const frame = outgoingFrame(room.id, pending);
    if (live.tooLarge(frame)) {
      room.timeline.updatePending(id, { state: "failed", error: "too long to send" });
      return false;
    }
    room.outbox.inFlight = id;
    clearTimeout(room.outbox.sendTimer);
    room.outbox.sendTimer = undefined;
    // A socket that is closing: the reconnect's rejoin sends it again.
    if (!live.send(frame)) return true;
    // Refusals for the rate limit are waited out without limit: they do not use up the attempts.
    if (countAttempt) room.timeline.updatePending(id, { attempts: pending.attempts + 1 });
    this.clearAckTimer(id);
    this.ackTimers.set(id, setTimeout(() => this.ackMissing(room, id), this.ctx.options.ackTimeoutMs));
    return true;
  }

  /** No ack came for message `id` in time: send it again, or give up after the last attempt. */
  private ackMissing(room: Room, id: string): void {
    this.ackTimers.delete(id);
    if (room.outbox.inFlight !== id) return;
    const still = room.timeline.findPending(id);
    if (still && still.state === "sending" && still.attempts >= MAX_SEND_ATTEMPTS) {
      room.timeline.updatePending(id, { state: "failed", error: "no answer from the server", unconfirmed: true });
      this.settled(room, id);
      this.ctx.emit();
    } else if (still && still.state === "sending") {
      this.put(room, id);
    } else {
      this.settled(room, id);
    }
  }

  /** The gateway acknowledged message `id` (stored as `seq`) in `room`, when the room is still held. */
  acked(room: Room | undefined, id: string, seq: number): void {
    this.clearAckTimer(id);
    if (!room) return;
    room.timeline.ack(id, seq);
    this.settled(room, id);
  }

  /** Message `id` is no longer on its way (stored, or given up on): the next one may go. */
  settled(room: Room, id: string): void {
    this.clearAckTimer(id);
    if (room.outbox.inFlight !== id) return;
    room.outbox.limited = 0;
    room.outbox.inFlight = undefined;
    clearTimeout(room.outbox.sendTimer);
    room.outbox.sendTimer = undefined;
    this.pump(room);
  }

  /**
   * The gateway refused message `ref` (`code`, `message`) in whichever room holds it; false when no room holds
   * it.
   */
  refused(ref: string, code: string, message: string): boolean {
    for (const room of this.ctx.rooms.all()) {
      if (room.timeline.findPending(ref)) {
        this.refusedIn(room, ref, code, message);
        return true;
      }
    }
    return false;
  }

  private refusedIn(room: Room, id: string, code: string, message: string): void {
    // Only the message in flight can be refused (the gateway answers in order); anything else is stale.
    if (room.outbox.inFlight !== id) return;
    this.clearAckTimer(id);
    const pending = room.timeline.findPending(id);
    if (!pending) return;
    switch (code) {
      case "rate_limited":
      case "overloaded": {
        // Never dropped: wait for the rate limit to refill (or the gateway to catch up), then send it again.
        room.outbox.limited = (room.outbox.limited ?? 0) + 1;
        this.putLater(room, id, backoffDelay(room.outbox.limited - 1, RATE_LIMIT_RETRY), false);
        return;
      }
      case "not_joined":
        // Sent again once the room is joined (if it is still to be live).
        this.release(room);
        this.ctx.live.rejoin(room);
        return;
      case "publish_failed":
      case "unavailable":
        // publish_failed: the outcome is unknown (it may be stored yet). The same id again settles it: stored at
        // most once, acked with the original seq.
        if (pending.attempts < MAX_SEND_ATTEMPTS) {
          this.putLater(room, id, backoffDelay(pending.attempts, UNSETTLED_RETRY));
          return;
        }
        if (code === "publish_failed") {
          room.timeline.updatePending(id, { state: "failed", error: "not confirmed by the server", unconfirmed: true });
          this.settled(room, id);
          return;
        }
        break;
    }
    room.timeline.updatePending(id, { state: "failed", error: message, errorCode: code });
    this.settled(room, id);
  }

  /** Sends the message in flight again after `delay` ms (it keeps its place: nothing overtakes it). */
  private putLater(room: Room, id: string, delay: number, countAttempt = true): void {
    clearTimeout(room.outbox.sendTimer);
    room.outbox.sendTimer = setTimeout(() => {
      room.outbox.sendTimer = undefined;
      if (room.outbox.inFlight === id) this.put(room, id, countAttempt);
    }, delay);
  }

  /** Forgets the message in flight without sending the next: the room is not live; its next join resends. */
  release(room: Room): void {
    if (room.outbox.inFlight !== undefined) this.clearAckTimer(room.outbox.inFlight);
    room.outbox.inFlight = undefined;
    clearTimeout(room.outbox.sendTimer);
    room.outbox.sendTimer = undefined;
  }

  /** Marks every message still to be sent in a room failed (the room is gone or closed to the user). */
  failPending(room: Room, reason: string): void {
    this.release(room);
    for (const pending of room.timeline.pending) {
      if (pending.state === "sending") room.timeline.updatePending(pending.id, { state: "failed", error: reason });
    }
  }

  /** The connection dropped: nothing is on its way any more; every rejoin sends its room's oldest again. */
  disconnected(): void {
    for (const room of this.ctx.rooms.all()) {
      room.outbox.inFlight = undefined;
      clearTimeout(room.outbox.sendTimer);
      room.outbox.sendTimer = undefined;
    }
    this.stop();
  }

  /** Stops waiting for every ack. */
  stop(): void {
    for (const timer of this.ackTimers.values()) clearTimeout(timer);
    this.ackTimers.clear();
  }

  /** Stops the room's waits: for a resend, and for its entry in flight's ack. */
  stopTimers(room: Room): void {
    clearTimeout(room.outbox.sendTimer);
    room.outbox.sendTimer = undefined;
    if (room.outbox.inFlight !== undefined) this.clearAckTimer(room.outbox.inFlight);
  }

  private clearAckTimer(id: string): void {
    const timer = this.ackTimers.get(id);
    if (timer !== undefined) {
      clearTimeout(timer);
      this.ackTimers.delete(id);
    }
  }
}

/** The frame that carries a pending message or change. */
function outgoingFrame(room: string, pending: PendingMessage): ClientFrame {
  const change = pending.change;
  if (!change) {
    return pending.replyTo === undefined
      ? { type: "send", room, id: pending.id, body: pending.body }
      : { type: "send", room, id: pending.id, body: pending.body, reply_to: pending.replyTo };
  }
  switch (change.kind) {
    case "edit":
      return { type: "edit", room, id: pending.id, target: change.target, body: change.body };
    case "delete":
      return { type: "delete", room, id: pending.id, target: change.target };
    case "react":
      return { type: "react", room, id: pending.id, target: change.target, emoji: change.emoji, on: change.on };
  }
}
