/**
 * The Natter client: a signed-in user's rooms, kept live over one gateway connection.
 *
 * It joins every room the user is a member of (so unread counts move while a room is not open), rejoins them
 * after any reconnect with `since` = the last seq held, fills gaps from the history API, retries the user's own
 * messages until they are acknowledged, and keeps read cursors in the auth API so unread counts follow the user
 * across devices. No DOM: the UI subscribes and reads the state; Node runs it under test.
 *
 * This class is the front a UI holds; each concept lives in a part of its own, reached through the context they
 * share (context.ts): the live connection and every frame it brings (live.ts), pending sends and changes
 * (outbox.ts), history (history.ts), unread counts (unread.ts), memberships and the room list (membership.ts),
 * presence and drafts (presence.ts), search (search.ts), conversations and blocks (conversations.ts), and each
 * room's record (rooms.ts).
 */

import { ApiError, type Ban, type Blocked, type Member, type RoomInfo, type SearchOptions, type SearchPage } from "./api";
import type { ConnectionStatus } from "./connection";
import { ClientContext, type ClientEvent, type ClientOptions } from "./context";
import type { UserRef } from "./frames";
import { roleIn } from "./membership";
import { type Arrival, type MentionsPage, roomBadges } from "./mentions";
import type { Room, RoomView } from "./rooms";

export type { ClientEvent, ClientOptions } from "./context";
export { isConversation, parseNames, peerOnline } from "./conversations";
export { inviteCode, memberActions, moderates, parseInvite, roleIn } from "./membership";
export type { MemberActions } from "./membership";
export { excerpt, highlight, searchTerms } from "./search";
export { countedUnread, insertMention, mentionCandidates, mentionPieces, mentionQuery, mentionsUser, roomBadges } from "./mentions";
export type { Arrival, MentionPiece } from "./mentions";
export type { Piece } from "./search";
export type { Draft, RoomView } from "./rooms";

export class NatterClient {
  private readonly ctx: ClientContext;
  private unsubscribeSession: (() => void) | undefined;

  constructor(options: ClientOptions) {
    this.ctx = new ClientContext(options);
  }

  /** The signed-in user. */
  get me(): UserRef {
    return this.ctx.me;
  }

  /** The connection's status. */
  get status(): ConnectionStatus {
    return this.ctx.live.status;
  }

  /** Whether the room list has been read once. */
  get ready(): boolean {
    return this.ctx.membership.ready;
  }

  /** The rooms, in the API's order (the user's rooms first). */
  roomList(): RoomView[] {
    return this.ctx.rooms.order.flatMap((id) => {
      const room = this.ctx.rooms.get(id);
      return room ? [this.view(room)] : [];
    });
  }

  /** One room, if known. */
  room(id: string): RoomView | undefined {
    const room = this.ctx.rooms.get(id);
    return room ? this.view(room) : undefined;
  }

  /** The room being shown. */
  get openRoomId(): string | undefined {
    return this.ctx.openId;
  }

  /**
   * Why the room `id`, asked to be shown, could not be: the API's error code (`banned`, `room_private`,
   * `room_not_found`, …), or undefined when it was shown or is still being asked for.
   */
  refusal(id: string): string | undefined {
    const refused = this.ctx.refused;
    return refused?.room === id ? refused.code : undefined;
  }

  /** The sum of unread counts over the user's rooms. */
  totalUnread(): number {
    return this.ctx.unread.total();
  }

  /** Listens to changes and errors; returns how to stop. */
  subscribe(listener: (event: ClientEvent) => void): () => void {
    return this.ctx.subscribe(listener);
  }

  /** Reads the rooms and connects. */
  async start(): Promise<void> {
    const { ctx } = this;
    if (ctx.started) return;
    ctx.started = true;
    this.unsubscribeSession = ctx.session.subscribe((event) => {
      if (event.type === "tokens") ctx.live.refreshToken(event.accessToken);
      if (event.type === "signed_out") this.stop();
    });
    ctx.live.start();
    ctx.membership.start();
    ctx.presence.start();
    void ctx.conversations.loadBlocks().catch(() => undefined);
    await ctx.membership.refresh().catch((err) => ctx.fail(err));
  }

  /** Disconnects and stops every timer. */
  stop(): void {
    const { ctx } = this;
    ctx.started = false;
    ctx.live.stop();
    ctx.membership.stop();
    ctx.presence.stop();
    this.unsubscribeSession?.();
    ctx.outbox.stop();
    for (const room of ctx.rooms.all()) ctx.stopTimers(room);
    ctx.emit();
  }

  /** Skips the wait before the next reconnect attempt. */
  reconnectNow(): void {
    this.ctx.live.reconnectNow();
  }

  /** Whether the page is visible: rooms are marked read only while it is. */
  setVisible(visible: boolean): void {
    const { ctx } = this;
    const was = ctx.visible;
    ctx.visible = visible;
    if (visible && !was) {
      void ctx.membership.refresh().catch(() => undefined);
      void ctx.conversations.loadBlocks().catch(() => undefined);
      ctx.unread.markOpenRead();
    }
  }

  /** Whether the open room is scrolled to its newest message: only then is it marked read. */
  setFollowing(following: boolean): void {
    this.ctx.following = following;
    if (following) this.ctx.unread.markOpenRead();
  }

  /** Shows a room: joins it on the gateway (a public room may be previewed without being a member). */
  async openRoom(id: string | undefined): Promise<void> {
    const { ctx } = this;
    const previous = ctx.openId;
    ctx.openId = id;
    if (ctx.refused?.room !== id) ctx.refused = undefined;
    if (previous && previous !== id) {
      const room = ctx.rooms.get(previous);
      if (room && !room.info.joined) ctx.live.leave(room);
      // Kept while it was on screen to show why it ended; no longer listed, it goes now.
      if (room?.ended && !ctx.rooms.listed(previous)) ctx.membership.drop(room);
    }
    if (!id) {
      ctx.emit();
      return;
    }
    let room = ctx.rooms.get(id);
    if (!room) {
      try {
        const info = await ctx.api.room(ctx.token, id);
        if (ctx.openId !== id) return;
        ctx.refused = undefined;
        // The room list may have brought it meanwhile.
        room = ctx.rooms.get(id) ?? ctx.membership.keep(info);
      } catch (err) {
        if (ctx.openId === id && err instanceof ApiError) ctx.refused = { room: id, code: err.code };
        // A room that is gone or closed to this user: the page says so itself; anything else is worth a word.
        if (!(err instanceof ApiError && (err.status === 403 || err.status === 404))) {
          ctx.fail(err, "cannot open this room");
        }
        ctx.emit();
        return;
      }
    }
    // (A conversation closed by a block stays closed until a join says otherwise.)
    if (room.ended && room.ended !== "blocked" && previous !== id) ctx.membership.reopen(room);
    ctx.live.open(room);
    if (room.timeline.messages.length < ctx.options.historyPage && room.timeline.hasOlder) {
      await ctx.history.loadOlder(id);
    }
    ctx.unread.markOpenRead();
    ctx.emit();
  }

  /** Loads the page of history before the oldest message held. */
  loadOlder(id: string): Promise<void> {
    return this.ctx.history.loadOlder(id);
  }

  /** Sends a message (a reply to `replyTo`, when given); it shows at once as sending. Returns its client id. */
  send(roomId: string, body: string, replyTo?: number): string | undefined {
    return this.ctx.outbox.send(roomId, body, replyTo);
  }

  /** Replaces the text of one of the user's messages. Returns the change's client id. */
  edit(roomId: string, target: number, body: string): string | undefined {
    return this.ctx.outbox.edit(roomId, target, body);
  }

  /** Deletes a message (the user's own, or any in a room the user owns or moderates). */
  deleteMessage(roomId: string, target: number): string | undefined {
    return this.ctx.outbox.deleteMessage(roomId, target);
  }

  /** Adds the user's reaction with `emoji` to a message, or takes it back (`on: false`). */
  react(roomId: string, target: number, emoji: string, on: boolean): string | undefined {
    return this.ctx.outbox.react(roomId, target, emoji, on);
  }

  /** Forgets a failed message or change the person gave up on. */
  dismiss(roomId: string, id: string): void {
    this.ctx.outbox.dismiss(roomId, id);
  }

  /** Sends a failed message again, with the same id (so it is stored once even if the first try was). */
  retry(roomId: string, id: string): void {
    this.ctx.outbox.retry(roomId, id);
  }

  /** The person's draft as typed: streamed to the room's other members (throttled), "" clears it. */
  setDraft(roomId: string, typed: string): void {
    this.ctx.presence.setDraft(roomId, typed);
  }

  /** Re-reads the room list: membership, names, and unread counts as other devices left them. */
  refreshRooms(): Promise<void> {
    return this.ctx.membership.refresh();
  }

  /** Creates a room (the user becomes its owner) and returns it. */
  createRoom(name: string, isPrivate: boolean): Promise<RoomInfo> {
    return this.ctx.membership.create(name, isPrivate);
  }

  /** Joins a public room, or a private one with its invite (`ROOM.CODE` or a link). */
  join(roomOrInvite: string, code?: string): Promise<RoomInfo> {
    return this.ctx.membership.join(roomOrInvite, code);
  }

  /** Leaves a room (members; the owner deletes instead). */
  leave(id: string): Promise<void> {
    return this.ctx.membership.leave(id);
  }

  /** Gives a private room a new join code (owner only): invites made of the old one stop working. */
  newJoinCode(id: string): Promise<RoomInfo> {
    return this.ctx.membership.newJoinCode(id);
  }

  /** Deletes a room (owner only). */
  remove(id: string): Promise<void> {
    return this.ctx.membership.remove(id);
  }

  /** A room's members, the owner first, as the API has them now (the user's own role there follows). */
  members(id: string): Promise<Member[]> {
    return this.ctx.membership.members(id);
  }

  /**
   * Removes a member from a room the user owns or moderates (a moderator: plain members only); the room's member
   * count follows from the API.
   */
  removeMember(roomId: string, userId: string): Promise<void> {
    return this.ctx.membership.removeMember(roomId, userId);
  }

  /** Makes a member a moderator, or a moderator a member again (owner only); the member with the new role. */
  setRole(roomId: string, userId: string, role: "moderator" | "member"): Promise<Member> {
    return this.ctx.membership.setRole(roomId, userId, role);
  }

  /**
   * Bans a user from a room the user owns or moderates (a moderator: not the owner or another moderator): they
   * are taken out and kept out until the ban is lifted.
   */
  ban(roomId: string, userId: string): Promise<void> {
    return this.ctx.membership.ban(roomId, userId);
  }

  /** The users banned from a room (for its owner and moderators). */
  bans(roomId: string): Promise<Ban[]> {
    return this.ctx.membership.bans(roomId);
  }

  /** Lifts a ban from a room the user owns or moderates. */
  unban(roomId: string, userId: string): Promise<void> {
    return this.ctx.membership.unban(roomId, userId);
  }

  /**
   * The direct conversation with the user named `name`: started now, or the one the two have (the same two people
   * always share one). Refused with `blocked` while either blocks the other.
   */
  startDirect(name: string): Promise<RoomInfo> {
    return this.ctx.conversations.direct(name);
  }

  /** Starts a group conversation of the user and 2 to 7 others, by user name; named `name` or after its people. */
  startGroup(members: string[], name?: string): Promise<RoomInfo> {
    return this.ctx.conversations.group(members, name);
  }

  /** The people the user blocks, the latest first. */
  blocks(): readonly Blocked[] {
    return this.ctx.conversations.blocks;
  }

  /** Whether the user blocks `userId`. */
  blocked(userId: string): boolean {
    return this.ctx.conversations.blocked(userId);
  }

  /** Blocks a user (by id): their direct conversation with the user closes for both until the block is lifted. */
  block(userId: string): Promise<void> {
    return this.ctx.conversations.block(userId);
  }

  /** Lifts the user's block of `userId`: their direct conversation opens again (unless they block the user). */
  unblock(userId: string): Promise<void> {
    return this.ctx.conversations.unblock(userId);
  }

  /**
   * Messages found by their words (web-search syntax: all words, `"a phrase"`, `or`, `-word`), as they read now:
   * in every room the user is a member of, or in `options.room`; the best matches first. `options.offset` pages.
   */
  search(query: string, options?: SearchOptions): Promise<SearchPage> {
    return this.ctx.search.find(query, options);
  }

  /** Mutes a room for the user (no unread count, no notification but for mentions), or unmutes it. */
  setMuted(id: string, muted: boolean): Promise<void> {
    return this.ctx.mentions.setMuted(id, muted);
  }

  /** A page of the messages mentioning the user across their rooms, newest first; `before` a seq pages on. */
  mentionsPage(before?: number, limit?: number): Promise<MentionsPage> {
    return this.ctx.mentions.page(before, limit);
  }

  /** Listens to others' messages arriving live (for notifications); returns how to stop. */
  onArrival(listener: (arrival: Arrival) => void): () => void {
    return this.ctx.mentions.onArrival(listener);
  }

  /** A room as the UI shows it: made once per change, so an unchanged room is the same object. */
  private view(room: Room): RoomView {
    const { ctx } = this;
    if (room.view && room.viewGeneration === ctx.generation) return room.view;
    room.view = {
      info: room.info,
      timeline: room.timeline,
      online: ctx.presence.online(room),
      drafts: ctx.presence.drafts(room),
      ...roomBadges(ctx.unread.count(room), ctx.mentions.count(room), ctx.mentions.muted(room)),
      muted: ctx.mentions.muted(room),
      live: ctx.live.joined(room),
      loadingOlder: room.history.loadingOlder,
      filling: room.history.filling,
      notice: room.notice,
      role: room.ended ? undefined : roleIn(room.info, ctx.me.id),
      ended: room.ended,
    };
    room.viewGeneration = ctx.generation;
    return room.view;
  }
}
