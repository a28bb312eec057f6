/**
 * One room's messages as a client holds them: ordered by `seq`, each once, with the chain of `prev` links that
 * tells a gap from a quiet room, and the user's own messages that are still on their way.
 *
 * Pure bookkeeping, no I/O: the client feeds it live frames and history pages, and asks it what to fetch.
 *
 * Invariant: every message of the room with `floor <= seq <= head` is held. Messages above `head` may be held too
 * (they arrived across a gap); once the gap is filled, `head` moves past them. Everything below `floor` is in the
 * history API (`before=floor`).
 */

import type { HistoryMessage } from "./api";
import type { ChangeFrame, MessageFrame, UserRef } from "./frames";

/** A stored message, as the changes to it left it. */
export interface ChatMessage {
  seq: number;
  /** The previous event's seq in the room, when known (0: none). */
  prev?: number;
  id: string;
  user: UserRef;
  /** Its current text: the newest edit's; empty once deleted. */
  body: string;
  ts: string;
  /** The seq of the message it answers. */
  replyTo?: number;
  /** The room's members it mentions, as the server resolved them. */
  mentions?: UserRef[];
  /** Its newest edit folded in. */
  edited?: { seq: number; at: string };
  /** Who deleted it and when: its text is gone. */
  deleted?: { by: string; at: string };
  /** Each emoji's reactions: the ids of the users who reacted with it, in the order they did. */
  reactions: Map<string, string[]>;
  /** The newest reaction event history folded in: every reaction event up to it is counted. */
  reactionsSeq: number;
  /** Reaction events applied here above `reactionsSeq`: each user's emoji's newest. */
  reactionSeqs?: Map<string, number>;
}

/** A change the user asked for, on its way to the room like a message. */
export type OutgoingChange =
  | { kind: "edit"; target: number; body: string }
  | { kind: "delete"; target: number }
  | { kind: "react"; target: number; emoji: string; on: boolean };

/** Where one of the user's own messages is. */
export type SendState = "sending" | "sent" | "failed";

/** One of the user's own messages not yet seen in the room's order. */
export interface PendingMessage {
  id: string;
  user: UserRef;
  body: string;
  /** When it was written, locally (RFC 3339). */
  ts: string;
  state: SendState;
  /** Its seq once acknowledged. */
  seq?: number;
  /** Why it failed, for `failed`. */
  error?: string;
  /** The gateway's error code, when it refused it. */
  errorCode?: string;
  /**
   * For `failed`: the server never said whether it stored the message (`publish_failed`, or no answer at all),
   * so it may still arrive. Sending it again with the same id stores it at most once.
   */
  unconfirmed?: boolean;
  /** Transmissions so far. */
  attempts: number;
  /** A reply's target. */
  replyTo?: number;
  /** For a change to an earlier message rather than a message: what it changes. */
  change?: OutgoingChange;
}

/** What the UI lists: stored messages in order (each with the user's changes to it still on their way), then
 * the user's pending messages. */
export type TimelineItem =
  | { kind: "message"; message: ChatMessage; key: string; mine: boolean; sent: boolean; changes: PendingMessage[] }
  | { kind: "pending"; message: PendingMessage; key: string };

/** The key that identifies a message across resends: author and client id (the gateway's dedup id). */
export function messageKey(user: UserRef, id: string): string {
  return `${user.id}:${id}`;
}

export class RoomTimeline {
  private readonly bySeq = new Map<number, ChatMessage>();
  private readonly keys = new Map<string, number>();
  /** For held messages above `head`: their `prev`, to move `head` along once the gap closes. */
  private readonly ahead = new Map<number, number>();
  private ordered: ChatMessage[] = [];
  private pendingList: PendingMessage[] = [];
  /** Own messages confirmed while this timeline watched: shown as sent. */
  private readonly sentHere = new Set<string>();
  /** Change events seen (author and client id), so that an ack after its event settles the pending change. */
  private readonly changesSeen = new Set<string>();
  private cachedItems: TimelineItem[] | undefined;

  /** Every message up to here (from `floor`) is held. */
  head: number;
  /** The oldest held message of the contiguous range (`head + 1` when none is held). */
  floor: number;
  /** Whether history older than `floor` may exist. */
  hasOlder = true;
  /** A seq known to exist above `head` (the `prev` of a message that arrived across a gap). */
  gapTarget = 0;
  /** Changes on every change, for renderers. */
  version = 0;

  constructor(
    private readonly me: UserRef,
    /** The seq up to which the room is known to be in history (the API's `last_seq`). */
    start = 0,
  ) {
    this.head = start;
    this.floor = start + 1;
  }

  /** Whether messages above `head` are missing. */
  get hasGap(): boolean {
    return this.gapTarget > this.head;
  }

  /** The newest stored seq held (0 when none). */
  get newestSeq(): number {
    return this.ordered.length ? this.ordered[this.ordered.length - 1].seq : 0;
  }

  /** Stored messages held, oldest first. */
  get messages(): readonly ChatMessage[] {
    return this.ordered;
  }

  get pending(): readonly PendingMessage[] {
    return this.pendingList;
  }

  /** Whether this message (by seq or by author and id) is held already. */
  has(seq: number, key?: string): boolean {
    return this.bySeq.has(seq) || (key !== undefined && this.keys.has(key));
  }

  /**
   * A message from the gateway (live or replayed). Returns whether it was new; a message held already is not
   * added again, though its `prev` may still move `head` along.
   */
  receive(frame: MessageFrame): boolean {
    const message: ChatMessage = {
      seq: frame.seq,
      prev: frame.prev,
      id: frame.id,
      user: frame.user,
      body: frame.body,
      ts: frame.ts,
      replyTo: frame.reply_to,
      mentions: frame.mentions,
      reactions: new Map(),
      reactionsSeq: 0,
    };
    const added = this.insert(message);
    this.chain(frame.seq, frame.prev);
    this.changed();
    return added;
  }

  /**
   * A change to an earlier message from the gateway (live or replayed): applied to its target if held (a target
   * older than what is held has it folded in when history brings it), and a link of the room's chain like a
   * message. Applying one twice changes nothing.
   */
  receiveChange(frame: ChangeFrame): void {
    const change: HistoryMessage["change"] =
      frame.type === "edited"
        ? { kind: "edit", target: frame.target }
        : frame.type === "deleted"
          ? { kind: "delete", target: frame.target }
          : { kind: "react", target: frame.target, emoji: frame.emoji, on: frame.on };
    this.applyChange(frame.seq, frame.user, frame.id, frame.type === "edited" ? frame.body : "", frame.ts, change);
    this.chain(frame.seq, frame.prev);
    this.changed();
  }

  /** The message held at `seq`, if any. */
  message(seq: number): ChatMessage | undefined {
    return this.bySeq.get(seq);
  }

  /** A change event seen (live or in history): the user's own pending change it answers is settled. */
  private settle(user: UserRef, id: string): void {
    this.changesSeen.add(messageKey(user, id));
    if (user.id === this.me.id && this.findPending(id)) this.removePending(id);
  }

  /** Folds one change event into the message it targets. */
  private applyChange(seq: number, user: UserRef, id: string, body: string, ts: string, change: NonNullable<HistoryMessage["change"]>): void {
    this.settle(user, id);
    const target = this.bySeq.get(change.target);
    if (!target || target.deleted) return;
    switch (change.kind) {
      case "edit":
        if (seq > (target.edited?.seq ?? 0)) {
          target.body = body;
          target.edited = { seq, at: ts };
        }
        break;
      case "delete":
        target.deleted = { by: user.id, at: ts };
        target.body = "";
        target.edited = undefined;
        target.reactions = new Map();
        // The user's changes to it that were stored may never be seen: a deleted message's edits are erased.
        this.pendingList = this.pendingList.filter((p) => p.change?.target !== target.seq || p.state !== "sent");
        break;
      case "react": {
        const key = `${change.emoji}\u0000${user.id}`;
        if (seq <= target.reactionsSeq || seq <= (target.reactionSeqs?.get(key) ?? 0)) break;
        target.reactionSeqs = new Map(target.reactionSeqs ?? []).set(key, seq);
        const users = (target.reactions.get(change.emoji) ?? []).filter((u) => u !== user.id);
        if (change.on) users.push(user.id);
        const reactions = new Map(target.reactions);
        if (users.length) reactions.set(change.emoji, users);
        else reactions.delete(change.emoji);
        target.reactions = reactions;
        break;
      }
    }
    // A new object, so a renderer that compares messages sees the change.
    this.replace({ ...target });
  }

  /** Moves the chain along an event at `seq` whose predecessor is `prev`. */
  private chain(seq: number, prev: number): void {
    if (seq > this.head) {
      if (prev <= this.head) {
        this.head = seq;
      } else {
        this.ahead.set(prev, seq);
        this.gapTarget = Math.max(this.gapTarget, prev);
      }
      this.advance();
    }
  }

  /** Puts a changed copy of a held message in its place. */
  private replace(message: ChatMessage): void {
    this.bySeq.set(message.seq, message);
    const at = this.ordered.findIndex((m) => m.seq === message.seq);
    if (at >= 0) this.ordered[at] = message;
  }

  /**
   * A history page of messages after `after` (oldest first), fetched to fill a gap above `head`. Consecutive
   * messages of one page follow each other in the room, so each one's `prev` is known.
   */
  fillAfter(after: number, page: HistoryMessage[]): number {
    let prev = after;
    let added = 0;
    for (const stored of page) {
      if (stored.change) {
        this.applyChange(stored.seq, stored.user, stored.id, stored.body, stored.ts, stored.change);
      } else if (this.insert(fromHistory(stored, prev))) {
        added += 1;
      }
      if (stored.seq > this.head && prev <= this.head) this.head = stored.seq;
      this.advance();
      prev = stored.seq;
    }
    if (!this.hasGap) this.gapTarget = 0;
    this.changed();
    return added;
  }

  /** A history page of messages before `floor` (newest first), loaded as the person scrolls up. */
  prependOlder(page: HistoryMessage[], hasMore: boolean): number {
    let added = 0;
    for (let i = 0; i < page.length; i++) {
      const stored = page[i];
      if (stored.seq >= this.floor) continue;
      const prev = i + 1 < page.length ? page[i + 1].seq : hasMore ? undefined : 0;
      // A change older than what is held is folded into the messages it changed already.
      if (stored.change) this.settle(stored.user, stored.id);
      else if (this.insert(fromHistory(stored, prev))) added += 1;
      this.floor = Math.min(this.floor, stored.seq);
    }
    if (!hasMore) this.hasOlder = false;
    this.changed();
    return added;
  }

  /**
   * Gives up on a gap that history could not fill: `head` moves to the newest held message, so live messages
   * chain again. The missing messages stay in history for a later reload.
   */
  skipGap(): void {
    this.head = Math.max(this.head, this.newestSeq);
    this.ahead.clear();
    this.gapTarget = 0;
    this.changed();
  }

  /**
   * Starts over at `seq`, dropping every held message (pending ones stay): what the gateway says when it cannot
   * replay what was missed (`recovered: false`). Older messages come from history again.
   */
  reset(seq: number): void {
    this.bySeq.clear();
    this.keys.clear();
    this.ahead.clear();
    this.ordered = [];
    this.head = seq;
    this.floor = seq + 1;
    this.hasOlder = true;
    this.gapTarget = 0;
    this.changed();
  }

  /** Keeps at most `max` stored messages, dropping the oldest (they stay in history). */
  trim(max: number): void {
    if (this.ordered.length <= max) return;
    const dropped = this.ordered.splice(0, this.ordered.length - max);
    for (const message of dropped) {
      this.bySeq.delete(message.seq);
      this.keys.delete(messageKey(message.user, message.id));
    }
    this.floor = Math.min(this.ordered[0]?.seq ?? this.head + 1, this.head + 1);
    this.hasOlder = true;
    this.changed();
  }

  /** Adds one of the user's own messages (or changes to one), shown at once as sending. */
  addPending(
    id: string,
    body: string,
    now: Date = new Date(),
    extra: { replyTo?: number; change?: OutgoingChange } = {},
  ): PendingMessage {
    const pending: PendingMessage = { id, user: this.me, body, ts: now.toISOString(), state: "sending", attempts: 0, ...extra };
    this.pendingList = [...this.pendingList, pending];
    this.changed();
    return pending;
  }

  /** Finds a pending message by its client id. */
  findPending(id: string): PendingMessage | undefined {
    return this.pendingList.find((p) => p.id === id);
  }

  /** Updates a pending message (state, error, attempts). */
  updatePending(id: string, change: Partial<PendingMessage>): void {
    this.pendingList = this.pendingList.map((p) => (p.id === id ? { ...p, ...change } : p));
    this.changed();
  }

  /** The gateway stored the user's message `id` as `seq`. */
  ack(id: string, seq: number): void {
    const key = messageKey(this.me, id);
    if (this.keys.has(key) || this.changesSeen.has(key)) {
      // Seen in the room's order already.
      this.sentHere.add(key);
      this.removePending(id);
      return;
    }
    this.updatePending(id, { state: "sent", seq, error: undefined });
  }

  /** What to show: stored messages in order, then pending ones in the order they were written. */
  items(): TimelineItem[] {
    if (this.cachedItems) return this.cachedItems;
    const changes = new Map<number, PendingMessage[]>();
    for (const pending of this.pendingList) {
      if (pending.change) changes.set(pending.change.target, [...(changes.get(pending.change.target) ?? []), pending]);
    }
    const items: TimelineItem[] = this.ordered.map((message) => {
      const key = messageKey(message.user, message.id);
      const mine = message.user.id === this.me.id;
      return { kind: "message", message, key, mine, sent: this.sentHere.has(key), changes: changes.get(message.seq) ?? [] };
    });
    for (const pending of this.pendingList) {
      if (!pending.change) items.push({ kind: "pending", message: pending, key: messageKey(pending.user, pending.id) });
    }
    this.cachedItems = items;
    return items;
  }

  /** Forgets a failed pending message or change the person dismissed. */
  dismiss(id: string): void {
    this.removePending(id);
    this.changed();
  }

  private insert(message: ChatMessage): boolean {
    const existing = this.bySeq.get(message.seq);
    if (existing) {
      if (existing.prev === undefined && message.prev !== undefined) existing.prev = message.prev;
      return false;
    }
    const key = messageKey(message.user, message.id);
    if (this.keys.has(key)) return false;
    this.bySeq.set(message.seq, message);
    this.keys.set(key, message.seq);
    // Usually the newest: append; otherwise insert in place.
    const last = this.ordered[this.ordered.length - 1];
    if (!last || last.seq < message.seq) {
      this.ordered.push(message);
    } else {
      let lo = 0;
      let hi = this.ordered.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (this.ordered[mid].seq < message.seq) lo = mid + 1;
        else hi = mid;
      }
      this.ordered.splice(lo, 0, message);
    }
    if (message.user.id === this.me.id && this.findPending(message.id)) {
      this.sentHere.add(key);
      this.removePending(message.id);
    }
    return true;
  }

  /** Moves `head` along held messages that follow it. */
  private advance(): void {
    for (let next = this.ahead.get(this.head); next !== undefined; next = this.ahead.get(this.head)) {
      this.ahead.delete(this.head);
      this.head = next;
    }
    for (const [prev, seq] of this.ahead) {
      if (seq <= this.head) this.ahead.delete(prev);
    }
    if (this.gapTarget <= this.head) this.gapTarget = 0;
  }

  private removePending(id: string): void {
    this.pendingList = this.pendingList.filter((p) => p.id !== id);
  }

  private changed(): void {
    this.version += 1;
    this.cachedItems = undefined;
  }
}

/** A history page's message as held: its current state, its reactions by emoji. */
function fromHistory(stored: HistoryMessage, prev: number | undefined): ChatMessage {
  return {
    seq: stored.seq,
    prev,
    id: stored.id,
    user: stored.user,
    body: stored.body,
    ts: stored.ts,
    replyTo: stored.reply_to,
    mentions: stored.mentions,
    edited: stored.edited,
    deleted: stored.deleted,
    reactions: new Map((stored.reactions ?? []).map((r) => [r.emoji, [...r.users]])),
    reactionsSeq: stored.reactions_seq ?? 0,
  };
}
