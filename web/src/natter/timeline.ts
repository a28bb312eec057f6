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
import type { MessageFrame, UserRef } from "./frames";

/** A stored message. */
export interface ChatMessage {
  seq: number;
  /** The previous message's seq in the room, when known (0: none). */
  prev?: number;
  id: string;
  user: UserRef;
  body: string;
  ts: string;
}

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
  /**
   * For `failed`: the server never said whether it stored the message (`publish_failed`, or no answer at all),
   * so it may still arrive. Sending it again with the same id stores it at most once.
   */
  unconfirmed?: boolean;
  /** Transmissions so far. */
  attempts: number;
}

/** What the UI lists: stored messages in order, then the user's pending ones. */
export type TimelineItem =
  | { kind: "message"; message: ChatMessage; key: string; mine: boolean; sent: boolean }
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
    };
    const added = this.insert(message);
    if (frame.seq > this.head) {
      if (frame.prev <= this.head) {
        this.head = frame.seq;
      } else {
        this.ahead.set(frame.prev, frame.seq);
        this.gapTarget = Math.max(this.gapTarget, frame.prev);
      }
      this.advance();
    }
    this.changed();
    return added;
  }

  /**
   * A history page of messages after `after` (oldest first), fetched to fill a gap above `head`. Consecutive
   * messages of one page follow each other in the room, so each one's `prev` is known.
   */
  fillAfter(after: number, page: HistoryMessage[]): number {
    let prev = after;
    let added = 0;
    for (const stored of page) {
      const message = { ...stored, prev };
      if (this.insert(message)) added += 1;
      if (message.seq > this.head && prev <= this.head) this.head = message.seq;
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
      if (this.insert({ ...stored, prev })) added += 1;
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

  /** Adds one of the user's own messages, shown at once as sending. */
  addPending(id: string, body: string, now: Date = new Date()): PendingMessage {
    const pending: PendingMessage = { id, user: this.me, body, ts: now.toISOString(), state: "sending", attempts: 0 };
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
    if (this.keys.has(key)) {
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
    const items: TimelineItem[] = this.ordered.map((message) => {
      const key = messageKey(message.user, message.id);
      return { kind: "message", message, key, mine: message.user.id === this.me.id, sent: this.sentHere.has(key) };
    });
    for (const pending of this.pendingList) items.push({ kind: "pending", message: pending, key: messageKey(pending.user, pending.id) });
    this.cachedItems = items;
    return items;
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
