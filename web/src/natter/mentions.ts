/**
 * Mentions: which messages name the user (the server resolves them: a message's `mentions` lists the room's members
 * its text names as `@name`), each room's count of unread ones, muted rooms, and the user's own events pushed on
 * every connection of theirs (`personal`: a read cursor moved on another device, their rooms changed).
 *
 * A room's mention count is the API's (as of the last listing or read cursor answer, while the cursor is below the
 * API's `last_seq`) plus the messages mentioning the user seen live since, above the cursor: like unread counts.
 */

import type { MentionHit, MentionsPage, ReadCursor, RoomInfo } from "./api";
import type { ClientContext } from "./context";
import type { MessageFrame, PersonalEvent, UserRef } from "./frames";
import type { Room } from "./rooms";

/** A room's mention count (this part's slice, kept by room). */
interface MentionState {
  /** The room details the count was last read from. */
  info?: RoomInfo;
  /** The API's `last_seq` when the count was last read from it. */
  base: number;
  /** The API's count of unread messages mentioning the user, at `base`. */
  server: number;
  /** Messages mentioning the user seen live after `base`. */
  live: Set<number>;
}

/** A message that arrived live, for whoever shows notifications. */
export interface Arrival {
  room: string;
  roomName: string;
  kind: RoomInfo["kind"];
  muted: boolean;
  seq: number;
  user: UserRef;
  body: string;
  ts: string;
  /** Whether it mentions the user. */
  mentionsMe: boolean;
}

/** Whether a message's `mentions` name the user. */
export function mentionsUser(mentions: readonly UserRef[] | undefined, me: string): boolean {
  return !!me && !!mentions?.some((user) => user.id === me);
}

/** A piece of a message's text: plain, or an `@name` of someone it mentions. */
export interface MentionPiece {
  text: string;
  /** The user this `@name` mentions. */
  user?: UserRef;
}

/**
 * A message's text cut into plain pieces and the `@name`s of the users it mentions (an `@` at the start of a word,
 * the name matched without regard to case and ending where a name cannot go on). Only the names the server listed
 * are marked: the text alone decides nothing.
 */
export function mentionPieces(text: string, mentions: readonly UserRef[] | undefined): MentionPiece[] {
  if (!mentions?.length || !text.includes("@")) return text ? [{ text }] : [];
  const byName = new Map(mentions.map((user) => [user.name.toLowerCase(), user]));
  const pieces: MentionPiece[] = [];
  let last = 0;
  for (const match of text.matchAll(/(^|[^\p{L}\p{N}_@])@([\p{L}\p{N}_.-]+)/gu)) {
    let name = match[2];
    let user = byName.get(name.toLowerCase());
    // A name followed by a full stop or a dash ("@bob."): the longest name listed wins.
    while (!user && /[.-]$/.test(name)) {
      name = name.slice(0, -1);
      user = byName.get(name.toLowerCase());
    }
    if (!user) continue;
    const at = (match.index ?? 0) + match[1].length;
    if (at > last) pieces.push({ text: text.slice(last, at) });
    pieces.push({ text: text.slice(at, at + 1 + name.length), user });
    last = at + 1 + name.length;
  }
  if (last < text.length) pieces.push({ text: text.slice(last) });
  return pieces;
}

/**
 * The `@` being typed at the caret: where it starts and what follows it, or undefined when the caret is not in an
 * `@word` at the start of a word.
 */
export function mentionQuery(text: string, caret: number): { start: number; query: string } | undefined {
  const before = text.slice(0, caret);
  const match = /(^|[^\p{L}\p{N}_@])@([\p{L}\p{N}_.-]{0,32})$/u.exec(before);
  if (!match) return undefined;
  return { start: (match.index ?? 0) + match[1].length, query: match[2] };
}

/** The members a typed `@query` offers: names starting with it first, then names containing it; not the user. */
export function mentionCandidates<T extends UserRef>(members: readonly T[], query: string, me: string, limit = 8): T[] {
  const q = query.toLowerCase();
  const others = members.filter((member) => member.id !== me);
  const starts = others.filter((member) => member.name.toLowerCase().startsWith(q));
  const contains = others.filter((member) => !member.name.toLowerCase().startsWith(q) && member.name.toLowerCase().includes(q));
  const byName = (a: T, b: T) => a.name.localeCompare(b.name);
  return [...starts.sort(byName), ...contains.sort(byName)].slice(0, limit);
}

/** The text with the `@query` at `start` replaced by `@name `, and where the caret goes. */
export function insertMention(text: string, start: number, caret: number, name: string): { text: string; caret: number } {
  const inserted = `@${name} `;
  const rest = text.slice(caret).replace(/^[\p{L}\p{N}_.-]*/u, "").replace(/^ /, "");
  return { text: text.slice(0, start) + inserted + rest, caret: start + inserted.length };
}

/**
 * The badges a room shows: its unread count (none in a muted room) and its count of unread mentions (always).
 */
export function roomBadges(unread: number, mentions: number, muted: boolean): { unread: number; mentions: number } {
  return { unread: muted ? 0 : unread, mentions };
}

/** What a room adds to the page's unread count: its unread messages, a muted room's mentions only. */
export function countedUnread(unread: number, mentions: number, muted: boolean): number {
  return muted ? mentions : unread;
}

export class Mentions {
  private readonly state = new WeakMap<Room, MentionState>();
  private readonly arrivals = new Set<(arrival: Arrival) => void>();

  constructor(private readonly ctx: ClientContext) {}

  private of(room: Room): MentionState {
    let state = this.state.get(room);
    if (!state) {
      state = { base: 0, server: 0, live: new Set() };
      this.state.set(room, state);
    }
    // Details read again from the API (a listing, a join): their count as of their `last_seq`.
    if (state.info !== room.info) {
      state.info = room.info;
      this.applyCount(state, room.info.last_seq, room.info.mentions ?? 0);
    }
    return state;
  }

  private applyCount(state: MentionState, lastSeq: number, count: number): void {
    if (lastSeq < state.base) return;
    state.base = lastSeq;
    state.server = count;
    for (const seq of state.live) if (seq <= lastSeq) state.live.delete(seq);
  }

  /** A room's count of unread messages mentioning the user. */
  count(room: Room): number {
    if (!room.info.joined) return 0;
    const state = this.of(room);
    const readSeq = room.unread.readSeq;
    let live = 0;
    for (const seq of state.live) if (seq > readSeq) live += 1;
    return (readSeq >= state.base ? 0 : state.server) + live;
  }

  /** Whether the room is muted. */
  muted(room: Room): boolean {
    return room.info.muted === true;
  }

  /** The API's read cursor answer for a room, with its mention count. */
  apply(room: Room, cursor: ReadCursor): void {
    if (cursor.mentions === undefined) return;
    this.applyCount(this.of(room), cursor.last_seq, cursor.mentions);
  }

  /** Someone else's message arrived live (new here): counted when it mentions the user, and told to listeners. */
  arrived(room: Room, frame: MessageFrame): void {
    const me = this.ctx.me.id;
    const mentionsMe = mentionsUser(frame.mentions, me);
    const state = this.of(room);
    if (mentionsMe && frame.seq > Math.max(state.base, room.unread.readSeq)) state.live.add(frame.seq);
    const arrival: Arrival = {
      room: room.id,
      roomName: room.info.name,
      kind: room.info.kind,
      muted: this.muted(room),
      seq: frame.seq,
      user: frame.user,
      body: frame.body,
      ts: frame.ts,
      mentionsMe,
    };
    for (const listener of [...this.arrivals]) listener(arrival);
  }

  /** Listens to others' messages arriving live; returns how to stop. */
  onArrival(listener: (arrival: Arrival) => void): () => void {
    this.arrivals.add(listener);
    return () => this.arrivals.delete(listener);
  }

  /** An event of the user's own, pushed on every connection of theirs. */
  personal(event: PersonalEvent): void {
    const { ctx } = this;
    if (event.kind === "read") {
      const room = ctx.rooms.get(event.room);
      if (!room) return;
      // The counts are the API's as of now: past everything seen here.
      const lastSeq = Math.max(room.unread.base, room.timeline.newestSeq, event.read_seq);
      ctx.unread.apply(room, { room: room.id, read_seq: event.read_seq, last_seq: lastSeq, unread: event.unread });
      this.applyCount(this.of(room), lastSeq, event.mentions);
    } else if (event.kind === "rooms") {
      void ctx.membership.refresh().catch(() => undefined);
    } else if (event.kind === "mentioned") {
      const room = ctx.rooms.get(event.room);
      // A room not known here yet (just joined elsewhere): its listing brings its count.
      if (!room) return void ctx.membership.refresh().catch(() => undefined);
      // Counted once, whether the message frame or this event comes first.
      const state = this.of(room);
      if (event.seq > Math.max(state.base, room.unread.readSeq)) state.live.add(event.seq);
      ctx.emit();
    }
  }

  /** Mutes a room, or unmutes it: its details follow. */
  async setMuted(id: string, muted: boolean): Promise<void> {
    const { ctx } = this;
    const info = await ctx.api.mute(ctx.token, id, muted);
    const room = ctx.rooms.get(id);
    if (room) {
      room.info = { ...room.info, muted: info.muted };
      const state = this.state.get(room);
      if (state) state.info = room.info;
    }
    ctx.emit();
  }

  /** A page of the messages mentioning the user across their rooms, newest first (`before` a seq pages on). */
  page(before?: number, limit?: number): Promise<MentionsPage> {
    return this.ctx.api.mentions(this.ctx.token, { before, limit });
  }
}

export type { MentionHit, MentionsPage };
