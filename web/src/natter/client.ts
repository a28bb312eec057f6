/**
 * The Natter client: a signed-in user's rooms, kept live over one gateway connection.
 *
 * It joins every room the user is a member of (so unread counts move while a room is not open), rejoins them
 * after any reconnect with `since` = the last seq held, fills gaps from the history API, retries the user's own
 * messages until they are acknowledged, and keeps read cursors in the auth API so unread counts follow the user
 * across devices. No DOM: the UI subscribes and reads the state; Node runs it under test.
 */

import { Api, ApiError, type HistoryPage, type Member, type ReadCursor, type RoomInfo } from "./api";
import type { BackoffOptions } from "./backoff";
import { Connection, type ConnectionStatus, type SocketFactory } from "./connection";
import {
  newMessageId,
  type ClientFrame,
  type LeftReason,
  type MessageFrame,
  type ServerFrame,
  type UserRef,
} from "./frames";
import type { Session } from "./session";
import type { ErrorCode } from "./errors";
import { RoomTimeline, type OutgoingChange, type PendingMessage } from "./timeline";

export interface ClientOptions {
  api: Api;
  session: Session;
  socket: SocketFactory;
  /** Connect to this gateway rather than asking the API for the least-loaded one. */
  gatewayUrl?: string;
  /** Messages per history page (the API allows up to 200). */
  historyPage?: number;
  /** Most stored messages held per room; older ones are dropped and reloaded from history when scrolled to. */
  maxHeld?: number;
  /** How often to re-read the room list (unread counts from other devices); 0: never. */
  roomsPollMs?: number;
  /** Least time between two draft updates sent. */
  typingIntervalMs?: number;
  /** How long to wait for an ack before sending again. */
  ackTimeoutMs?: number;
  /** How long a draft stays shown without an update (the gateway clears it after 6 s). */
  draftTtlMs?: number;
  /** Longest message body, in characters (the gateway's `--max-body-chars`). */
  maxBodyChars?: number;
  /** Largest frame the gateway takes, in bytes (its `--max-message-bytes`); a larger one would close the connection. */
  maxFrameBytes?: number;
  /**
   * Most rooms joined live at once on a connection, below the gateway's `--max-rooms-per-connection` (64). The
   * open room always has a place; the user's other rooms take the rest in list order.
   */
  maxLiveRooms?: number;
  backoff?: BackoffOptions;
  pingIntervalMs?: number;
  silenceTimeoutMs?: number;
}

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
  unread: number;
  /** Whether it is joined on the gateway (live). */
  live: boolean;
  loadingOlder: boolean;
  /** Filling a gap from history. */
  filling: boolean;
  /** Something the person should know about this room. */
  notice?: string;
  /**
   * Why the gateway took the user out of this room (`left` with a reason: deleted, left elsewhere, removed by
   * the owner, access revoked): it is no longer joined, not rejoined, and nothing more can be sent to it.
   */
  ended?: LeftReason;
}

/**
 * What the client tells its UI: state changed; an action failed (`error`); or something happened to a room the
 * person is not looking at (`notice`: it was deleted, they were removed from it).
 */
export type ClientEvent =
  | { type: "change" }
  | { type: "error"; message: string }
  | { type: "notice"; room: string; message: string };

interface RoomState {
  info: RoomInfo;
  timeline: RoomTimeline;
  online: Map<string, UserRef>;
  drafts: Map<string, { user: UserRef; text: string; at: number }>;
  ws: "idle" | "joining" | "joined";
  /** The API's `last_seq` when unread counts were last read from it. */
  base: number;
  /** The API's unread count at `base`. */
  serverUnread: number;
  readSeq: number;
  /** The read cursor last sent (or being sent). */
  sentRead: number;
  /** Others' messages after `base`, seen live. */
  liveUnread: Set<number>;
  loadingOlder: boolean;
  filling: boolean;
  notice?: string;
  /** Taken out of the room by the gateway, for this reason: it is not joined again until the person asks. */
  ended?: LeftReason;
  draftTimer?: ReturnType<typeof setTimeout>;
  draftSentAt: number;
  draftQueued?: string;
  draftLast: string;
  readTimer?: ReturnType<typeof setTimeout>;
  /** Failed read-cursor updates in a row (for the retry's backoff). */
  readFailures: number;
  infoTimer?: ReturnType<typeof setTimeout>;
  fillTimer?: ReturnType<typeof setTimeout>;
  /** Older history is not asked for again before this time (after a failure). */
  olderRetryAt: number;
  olderFailures: number;
  /** Failed gap fills in a row. */
  fillFailures?: number;
  /** The user's message on its way to the gateway (one at a time), and its pending resend. */
  inFlight?: string;
  sendTimer?: ReturnType<typeof setTimeout>;
  /** Rate-limit refusals in a row (for the pause's backoff). */
  limited?: number;
  /** A join the gateway could not check, to try again. */
  joinTimer?: ReturnType<typeof setTimeout>;
  /** Bumped by every reload from history, so an overtaken one stops. */
  reloads: number;
  view?: RoomView;
  /** The change generation `view` was made in. */
  viewGeneration: number;
}

/** Errors whose frame is a join (they carry no `ref`): the oldest outstanding join failed. (`rate_limited` without
 * a `ref` answers a join over the gateway's budget, or a leave of a room the gateway had already taken this
 * connection out of, which this client sends only for rooms it holds joined.) */
const JOIN_ERRORS = new Set<ErrorCode>([
  "room_not_found",
  "room_private",
  "too_many_rooms",
  "unavailable",
  "rate_limited",
  "already_joined",
]);

/** What the person reads in a room the gateway took them out of, by the `left` frame's reason. */
const ENDED_NOTICES: Record<string, string> = {
  room_deleted: "This room was deleted.",
  member_left: "You left this room in another window.",
  member_removed: "You were removed from this room by its owner.",
  access_revoked: "You no longer have access to this room.",
};

/** The same, about a room that is not open (`name` is the room's name). */
const ENDED_ALERTS: Record<string, (name: string) => string> = {
  room_deleted: (name) => `The room “${name}” was deleted.`,
  member_removed: (name) => `You were removed from “${name}” by its owner.`,
  access_revoked: (name) => `You no longer have access to “${name}”.`,
};

/** Most attempts at a send that failed on the server's side before it is shown as failed. */
const MAX_SEND_ATTEMPTS = 5;

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

export class NatterClient {
  private readonly api: Api;
  private readonly session: Session;
  private readonly connection: Connection;
  private readonly rooms = new Map<string, RoomState>();
  private order: string[] = [];
  private readonly listeners = new Set<(event: ClientEvent) => void>();
  /**
   * Joins sent and not yet answered, oldest first. The gateway answers a connection's frames in order and a
   * failed join's error names no room, so an error goes to the oldest entry; a room left meanwhile keeps its
   * place (`cancelled`) so the ones after it still match.
   */
  private readonly joinQueue: { room: string; cancelled: boolean }[] = [];
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
  private readonly ackTimers = new Map<string, ReturnType<typeof setTimeout>>();
  private openId: string | undefined;
  private visible = true;
  private following = true;
  private started = false;
  private pollTimer: ReturnType<typeof setInterval> | undefined;
  private draftSweep: ReturnType<typeof setInterval> | undefined;
  private unsubscribeSession: (() => void) | undefined;
  private roomsLoaded = false;
  /** Bumped on every change: views made in an older generation are stale. */
  private generation = 0;
  private readonly options: Required<Omit<ClientOptions, "gatewayUrl" | "backoff" | "pingIntervalMs" | "silenceTimeoutMs">> &
    ClientOptions;

  constructor(options: ClientOptions) {
    this.options = {
      historyPage: 50,
      maxHeld: 3000,
      roomsPollMs: 10_000,
      typingIntervalMs: 150,
      ackTimeoutMs: 10_000,
      draftTtlMs: 6_000,
      maxBodyChars: 4_000,
      maxFrameBytes: 16 * 1024,
      maxLiveRooms: 60,
      ...options,
    };
    this.api = options.api;
    this.session = options.session;
    const token = (fresh: boolean) => (fresh ? this.session.refresh() : this.session.accessToken(60_000));
    this.connection = new Connection({
      socket: options.socket,
      token,
      gatewayUrl: async (avoid) => (options.gatewayUrl ? { url: options.gatewayUrl } : await this.api.gateway(avoid)),
      onHello: () => this.onHello(),
      onFrame: (frame) => this.onFrame(frame),
      onStatus: (status) => this.onStatus(status),
      // A revoked session is a sign-out: the session ends, and its listeners (this client among them) stop.
      onSessionRevoked: (token) => this.session.revoked(token),
      backoff: options.backoff,
      pingIntervalMs: options.pingIntervalMs,
      silenceTimeoutMs: options.silenceTimeoutMs,
    });
  }

  /** The signed-in user. */
  get me(): UserRef {
    const user = this.session.user;
    return user ? { id: user.id, name: user.name } : { id: "", name: "" };
  }

  /** The connection's status. */
  get status(): ConnectionStatus {
    return this.connection.current;
  }

  /** Whether the room list has been read once. */
  get ready(): boolean {
    return this.roomsLoaded;
  }

  /** The rooms, in the API's order (the user's rooms first). */
  roomList(): RoomView[] {
    return this.order.flatMap((id) => {
      const state = this.rooms.get(id);
      return state ? [this.view(state)] : [];
    });
  }

  /** One room, if known. */
  room(id: string): RoomView | undefined {
    const state = this.rooms.get(id);
    return state ? this.view(state) : undefined;
  }

  /** The room being shown. */
  get openRoomId(): string | undefined {
    return this.openId;
  }

  /** The sum of unread counts over the user's rooms. */
  totalUnread(): number {
    let total = 0;
    for (const state of this.rooms.values()) total += this.unread(state);
    return total;
  }

  /** Listens to changes and errors; returns how to stop. */
  subscribe(listener: (event: ClientEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Reads the rooms and connects. */
  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    this.unsubscribeSession = this.session.subscribe((event) => {
      if (event.type === "tokens") this.connection.send({ type: "refresh", token: event.accessToken });
      if (event.type === "signed_out") this.stop();
    });
    this.connection.start();
    if (this.options.roomsPollMs > 0) {
      this.pollTimer = setInterval(() => {
        if (this.visible) void this.refreshRooms().catch(() => undefined);
      }, this.options.roomsPollMs);
    }
    this.draftSweep = setInterval(() => this.expireDrafts(), 1_000);
    await this.refreshRooms().catch((err) => this.fail(err));
  }

  /** Disconnects and stops every timer. */
  stop(): void {
    this.started = false;
    this.connection.stop("signed out");
    clearInterval(this.pollTimer);
    clearInterval(this.draftSweep);
    this.unsubscribeSession?.();
    for (const timer of this.ackTimers.values()) clearTimeout(timer);
    this.ackTimers.clear();
    clearTimeout(this.listTimer);
    for (const state of this.rooms.values()) this.clearTimers(state);
    this.emit();
  }

  /** Skips the wait before the next reconnect attempt. */
  reconnectNow(): void {
    this.connection.reconnectNow();
  }

  /** Whether the page is visible: rooms are marked read only while it is. */
  setVisible(visible: boolean): void {
    const was = this.visible;
    this.visible = visible;
    if (visible && !was) {
      void this.refreshRooms().catch(() => undefined);
      this.markOpenRead();
    }
  }

  /** Whether the open room is scrolled to its newest message: only then is it marked read. */
  setFollowing(following: boolean): void {
    this.following = following;
    if (following) this.markOpenRead();
  }

  /** Shows a room: joins it on the gateway (a public room may be previewed without being a member). */
  async openRoom(id: string | undefined): Promise<void> {
    const previous = this.openId;
    this.openId = id;
    if (previous && previous !== id) {
      const state = this.rooms.get(previous);
      if (state && !state.info.joined) this.leaveLive(state);
      // Kept while it was on screen to show why it ended; no longer listed, it goes now.
      if (state?.ended && !this.order.includes(previous)) this.dropRoom(state);
    }
    if (!id) {
      this.emit();
      return;
    }
    let state = this.rooms.get(id);
    if (!state) {
      try {
        const info = await this.api.room(this.token, id);
        if (this.openId !== id) return;
        // The room list may have brought it meanwhile.
        state = this.rooms.get(id) ?? this.addRoom(info);
      } catch (err) {
        // A room that is gone or closed to this user: the page says so itself; anything else is worth a word.
        if (!(err instanceof ApiError && (err.status === 403 || err.status === 404))) {
          this.fail(err, "cannot open this room");
        }
        this.emit();
        return;
      }
    }
    if (state.ended && previous !== id) {
      // Opened afresh, as the person asked: a public room may be previewed again; a gone one says so on joining.
      state.ended = undefined;
      state.notice = undefined;
    }
    if (state.ws === "idle" && this.liveCount() >= this.options.maxLiveRooms) this.leaveOneBackgroundRoom();
    this.joinLive(state);
    if (state.timeline.messages.length < this.options.historyPage && state.timeline.hasOlder) {
      await this.loadOlder(id);
    }
    this.markOpenRead();
    this.emit();
  }

  /** Loads the page of history before the oldest message held. */
  async loadOlder(id: string): Promise<void> {
    const state = this.rooms.get(id);
    if (!state || state.loadingOlder || !state.timeline.hasOlder || Date.now() < state.olderRetryAt) return;
    state.loadingOlder = true;
    this.emit();
    try {
      const before = state.timeline.floor;
      const page = await this.api.messages(this.token, id, { before, limit: this.options.historyPage });
      state.olderFailures = 0;
      if (this.rooms.get(id) === state && state.timeline.floor === before) {
        state.timeline.prependOlder(page.messages, page.has_more);
      }
    } catch (err) {
      // Not again at once (the list asks whenever it shows its top): wait longer after each failure, and for
      // good when the room is gone or closed to this user.
      state.olderFailures += 1;
      const final = err instanceof ApiError && (err.status === 403 || err.status === 404);
      state.olderRetryAt = final ? Infinity : Date.now() + Math.min(30_000, 1_000 * 2 ** state.olderFailures);
      this.fail(err, "cannot load older messages");
    } finally {
      state.loadingOlder = false;
      this.emit();
    }
  }

  /** Sends a message (a reply to `replyTo`, when given); it shows at once as sending. Returns its client id. */
  send(roomId: string, body: string, replyTo?: number): string | undefined {
    const state = this.rooms.get(roomId);
    const text = body.trim();
    if (!state || !text) return undefined;
    clearTimeout(state.draftTimer);
    state.draftTimer = undefined;
    state.draftQueued = undefined;
    state.draftLast = "";
    return this.enqueue(state, text, { replyTo });
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

  /** Forgets a failed message or change the person gave up on. */
  dismiss(roomId: string, id: string): void {
    const state = this.rooms.get(roomId);
    const pending = state?.timeline.findPending(id);
    if (!state || !pending || pending.state !== "failed") return;
    state.timeline.dismiss(id);
    this.emit();
  }

  /** Queues a change behind the room's messages still to be sent: it goes out in the order written, like them. */
  private change(roomId: string, body: string, change: OutgoingChange): string | undefined {
    const state = this.rooms.get(roomId);
    return state && this.enqueue(state, body, { change });
  }

  /** Adds a message or change to the room's queue, shown at once as sending; returns its client id. */
  private enqueue(state: RoomState, body: string, extra: { replyTo?: number; change?: OutgoingChange }): string {
    const pending = state.timeline.addPending(newMessageId(), body, undefined, extra);
    const length = [...body].length;
    if (length > this.options.maxBodyChars) {
      // Shown, so nothing the person wrote vanishes, but never sent: the gateway would refuse it.
      state.timeline.updatePending(pending.id, {
        state: "failed",
        error: `too long (${length} characters; at most ${this.options.maxBodyChars})`,
      });
    } else if (state.ended) {
      state.timeline.updatePending(pending.id, { state: "failed", error: endedNotice(state.ended) });
    } else {
      this.pump(state);
    }
    this.emit();
    return pending.id;
  }

  /** Sends a failed message again, with the same id (so it is stored once even if the first try was). */
  retry(roomId: string, id: string): void {
    const state = this.rooms.get(roomId);
    // A room the user was taken out of takes nothing more: the message stays failed, with its reason.
    if (!state?.timeline.findPending(id) || state.ended) return;
    state.timeline.updatePending(id, {
      state: "sending",
      error: undefined,
      errorCode: undefined,
      unconfirmed: undefined,
      attempts: 0,
    });
    this.pump(state);
    this.emit();
  }

  /** The person's draft as typed: streamed to the room's other members (throttled), "" clears it. */
  setDraft(roomId: string, typed: string): void {
    const state = this.rooms.get(roomId);
    if (!state || state.ws !== "joined") return;
    // A draft never exceeds what a message may hold.
    const text = [...typed].slice(0, this.options.maxBodyChars).join("");
    if (text === state.draftLast && state.draftQueued === undefined) return;
    const wait = state.draftSentAt + this.options.typingIntervalMs - Date.now();
    if (text === "" || wait <= 0) {
      clearTimeout(state.draftTimer);
      state.draftTimer = undefined;
      state.draftQueued = undefined;
      this.sendDraft(state, text);
      return;
    }
    state.draftQueued = text;
    if (!state.draftTimer) {
      state.draftTimer = setTimeout(() => {
        state.draftTimer = undefined;
        const queued = state.draftQueued;
        state.draftQueued = undefined;
        if (queued !== undefined) this.sendDraft(state, queued);
      }, wait);
    }
  }

  /** Re-reads the room list: membership, names, and unread counts as other devices left them. */
  async refreshRooms(): Promise<void> {
    const asked = ++this.listingsAsked;
    const memberships = this.memberships;
    const list = await this.api.rooms(this.token);
    // An answer overtaken by a newer one, or asked for before a membership change here, is stale: it could drop
    // a room just created or bring back one just left.
    if (asked < this.listingApplied || memberships !== this.memberships) return;
    this.listingApplied = asked;
    const seen = new Set<string>();
    for (const info of list) {
      seen.add(info.id);
      this.addRoom(info);
    }
    this.order = list.map((r) => r.id);
    for (const [id, state] of this.rooms) {
      if (!seen.has(id) && id !== this.openId) this.dropRoom(state);
    }
    this.roomsLoaded = true;
    this.syncLive();
    this.emit();
  }

  /** Creates a room (the user becomes its owner) and returns it. */
  async createRoom(name: string, isPrivate: boolean): Promise<RoomInfo> {
    const info = await this.api.createRoom(this.token, name, isPrivate);
    this.memberships += 1;
    this.addRoom(info);
    await this.refreshRooms().catch(() => undefined);
    return info;
  }

  /** Joins a public room, or a private one with its invite (`ROOM.CODE` or a link). */
  async join(roomOrInvite: string, code?: string): Promise<RoomInfo> {
    const invite = code === undefined ? parseInvite(roomOrInvite) : { room: roomOrInvite, code };
    if (!invite) throw new ApiError(422, "invalid_invite", "that is not an invite code or link");
    const info = await this.api.joinRoom(this.token, invite.room, invite.code);
    this.memberships += 1;
    this.addRoom(info);
    await this.refreshRooms().catch(() => undefined);
    return info;
  }

  /** Leaves a room (members; the owner deletes instead). */
  async leave(id: string): Promise<void> {
    this.leaving.add(id);
    try {
      await this.api.leaveRoom(this.token, id);
    } finally {
      this.leaving.delete(id);
    }
    this.memberships += 1;
    const state = this.rooms.get(id);
    if (state) this.dropRoom(state);
    if (this.openId === id) this.openId = undefined;
    await this.refreshRooms().catch(() => undefined);
  }

  /** Deletes a room (owner only). */
  async remove(id: string): Promise<void> {
    this.leaving.add(id);
    try {
      await this.api.deleteRoom(this.token, id);
    } finally {
      this.leaving.delete(id);
    }
    this.memberships += 1;
    const state = this.rooms.get(id);
    if (state) this.dropRoom(state);
    if (this.openId === id) this.openId = undefined;
    await this.refreshRooms().catch(() => undefined);
  }

  /** A room's members, the owner first, as the API has them now. */
  members(id: string): Promise<Member[]> {
    return this.api.members(this.token, id);
  }

  /** Removes a member from a room the user owns; the room's member count follows from the API. */
  async removeMember(roomId: string, userId: string): Promise<void> {
    await this.api.removeMember(this.token, roomId, userId);
    const state = this.rooms.get(roomId);
    if (state) this.refreshRoomSoon(state);
  }

  // ----------------------------------------------------------------------------------------------------------
  // Connection events

  private onStatus(status: ConnectionStatus): void {
    if (status.state !== "online") {
      for (const state of this.rooms.values()) {
        state.ws = "idle";
        state.drafts.clear();
        // Whatever was on its way is sent again after the rejoin.
        state.inFlight = undefined;
        clearTimeout(state.sendTimer);
        state.sendTimer = undefined;
      }
      for (const timer of this.ackTimers.values()) clearTimeout(timer);
      this.ackTimers.clear();
      this.joinQueue.length = 0;
    }
    this.emit();
  }

  private onHello(): void {
    // A token refreshed while the socket was opening never reached this gateway: hand it over now.
    const token = this.session.currentAccessToken;
    if (token && token !== this.connection.token) this.connection.send({ type: "refresh", token });
    this.syncLive();
  }

  private onFrame(frame: ServerFrame): void {
    switch (frame.type) {
      case "joined": {
        this.answered(frame.room);
        const state = this.rooms.get(frame.room);
        if (!state) return;
        if (state.ended) {
          // A join sent before the user was taken out of the room, answered after: not to be live.
          this.connection.send({ type: "leave", room: frame.room });
          return;
        }
        state.ws = "joined";
        state.online = new Map(frame.members.map((u) => [u.id, u]));
        // With `recovered`, the replayed messages follow this frame, before any live one.
        if (!frame.recovered) void this.reload(state, frame.seq);
        this.pump(state);
        break;
      }
      case "message":
        this.onMessage(frame);
        break;
      case "edited":
      case "deleted":
      case "reacted": {
        const state = this.rooms.get(frame.room);
        if (!state) return;
        state.timeline.receiveChange(frame);
        if (frame.user.id === this.me.id) this.done(state, frame.id);
        if (state.timeline.hasGap) void this.fillGap(state);
        break;
      }
      case "ack": {
        this.clearAckTimer(frame.id);
        const state = this.rooms.get(frame.room);
        if (!state) return;
        state.timeline.ack(frame.id, frame.seq);
        this.done(state, frame.id);
        break;
      }
      case "presence": {
        const state = this.rooms.get(frame.room);
        if (!state) return;
        for (const user of frame.joined ?? []) state.online.set(user.id, user);
        // Someone new may have become a member: the member count comes from the API.
        if (frame.joined?.length && state.info.id === this.openId) this.refreshRoomSoon(state);
        for (const user of frame.left ?? []) {
          state.online.delete(user.id);
          state.drafts.delete(user.id);
        }
        break;
      }
      case "typing": {
        const state = this.rooms.get(frame.room);
        if (!state || frame.user.id === this.me.id) return;
        if (frame.text === "") state.drafts.delete(frame.user.id);
        else state.drafts.set(frame.user.id, { user: frame.user, text: frame.text, at: Date.now() });
        break;
      }
      case "left": {
        const state = this.rooms.get(frame.room);
        if (!state) return;
        if (frame.reason !== undefined && !this.leaving.has(frame.room)) {
          this.ended(state, frame.reason);
          break;
        }
        // The answer to a leave (or the gateway's news of one made here); a rejoin sent since is still on its
        // way and decides.
        const rejoining = this.joinQueue.some((entry) => entry.room === frame.room && !entry.cancelled);
        if (!rejoining) state.ws = "idle";
        break;
      }
      case "error":
        this.onError(frame.code, frame.message, frame.ref);
        break;
      case "pong":
      case "hello":
        return;
    }
    this.emit();
  }

  private onMessage(frame: MessageFrame): void {
    const state = this.rooms.get(frame.room);
    if (!state) return;
    state.drafts.delete(frame.user.id);
    const added = state.timeline.receive(frame);
    // The user's own message in the room's order: stored, even if its ack was lost.
    if (frame.user.id === this.me.id) this.done(state, frame.id);
    if (added && frame.user.id !== this.me.id && frame.seq > Math.max(state.base, state.readSeq)) {
      state.liveUnread.add(frame.seq);
    }
    if (state.timeline.hasGap) void this.fillGap(state);
    if (state.timeline.messages.length > this.options.maxHeld && (this.openId !== state.info.id || this.following)) {
      state.timeline.trim(this.options.maxHeld);
    }
    if (this.openId === state.info.id) this.markOpenRead();
  }

  private onError(code: string, message: string, ref: string | undefined): void {
    if (ref) {
      for (const state of this.rooms.values()) {
        if (state.timeline.findPending(ref)) {
          this.sendRefused(state, ref, code, message);
          return;
        }
      }
    }
    if (!ref && JOIN_ERRORS.has(code as ErrorCode) && this.joinQueue.length) {
      const entry = this.joinQueue.shift() as { room: string; cancelled: boolean };
      const state = this.rooms.get(entry.room);
      if (!state || entry.cancelled) return;
      if (code === "already_joined") {
        state.ws = "joined";
        return;
      }
      state.ws = "idle";
      if (code === "unavailable" || code === "rate_limited") {
        // The gateway could not check access right now, or takes no more joins for a moment: try again shortly,
        // if the room is still wanted then.
        clearTimeout(state.joinTimer);
        state.joinTimer = setTimeout(
          () => {
            state.joinTimer = undefined;
            if (this.started && this.wantedRooms().has(state.info.id)) this.joinLive(state);
          },
          1_000 + Math.random() * 1_000,
        );
        return;
      }
      if (code === "too_many_rooms") {
        state.notice = "Too many rooms are open on this connection: this one is not live.";
        // The open room comes first: make room for it by leaving a background room.
        if (state.info.id === this.openId && this.leaveOneBackgroundRoom()) this.joinLive(state);
        return;
      }
      state.notice =
        code === "room_private" ? "This room is private and you are not a member." : "This room no longer exists.";
      // Nothing written here can be sent any more.
      this.failPending(state, state.notice);
      this.refreshRoomsSoon();
      return;
    }
    if (code === "token_revoked") {
      // The in-band refresh was refused because the session was logged out: no new token will be taken either.
      this.session.revoked(this.connection.token);
      return;
    }
    if (code.startsWith("token_")) {
      // The gateway refused the in-band refresh: reconnect with a newly refreshed token instead.
      this.connection.restartWithFreshToken();
    }
  }

  // ----------------------------------------------------------------------------------------------------------
  // Sending

  /**
   * Sends the room's oldest message still to be stored, unless one is on its way already. One at a time per room:
   * messages are stored in the order they were written, however the gateway refuses and retries them.
   */
  private pump(state: RoomState): void {
    if (state.inFlight !== undefined || state.ws !== "joined" || !this.connection.online) return;
    for (const pending of state.timeline.pending) {
      if (pending.state === "sending" && this.put(state, pending.id)) return;
    }
  }

  /** Puts message `id` on the wire as the room's one in flight; false when it cannot go at all (too large). */
  private put(state: RoomState, id: string, countAttempt = true): boolean {
    const pending = state.timeline.findPending(id);
    if (!pending || pending.state !== "sending") return false;
    if (state.ws !== "joined" || !this.connection.online) {
      // Not live (left, or between connections): the next join sends it.
      this.release(state);
      return true;
    }
    const frame = outgoingFrame(state.info.id, pending);
    if (this.tooLarge(frame)) {
      state.timeline.updatePending(id, { state: "failed", error: "too long to send" });
      return false;
    }
    state.inFlight = id;
    clearTimeout(state.sendTimer);
    state.sendTimer = undefined;
    // A socket that is closing: the reconnect's rejoin sends it again.
    if (!this.connection.send(frame)) return true;
    // Refusals for the rate limit are waited out without limit: they do not use up the attempts.
    if (countAttempt) state.timeline.updatePending(id, { attempts: pending.attempts + 1 });
    this.clearAckTimer(id);
    this.ackTimers.set(
      id,
      setTimeout(() => {
        this.ackTimers.delete(id);
        if (state.inFlight !== id) return;
        const still = state.timeline.findPending(id);
        if (still && still.state === "sending" && still.attempts >= MAX_SEND_ATTEMPTS) {
          state.timeline.updatePending(id, { state: "failed", error: "no answer from the server", unconfirmed: true });
          this.done(state, id);
          this.emit();
        } else if (still && still.state === "sending") {
          this.put(state, id);
        } else {
          this.done(state, id);
        }
      }, this.options.ackTimeoutMs),
    );
    return true;
  }

  /** Message `id` is no longer on its way (stored, or given up on): the next one may go. */
  private done(state: RoomState, id: string): void {
    this.clearAckTimer(id);
    if (state.inFlight !== id) return;
    state.limited = 0;
    state.inFlight = undefined;
    clearTimeout(state.sendTimer);
    state.sendTimer = undefined;
    this.pump(state);
  }

  /** Sends the message in flight again after `delay` ms (it keeps its place: nothing overtakes it). */
  private putLater(state: RoomState, id: string, delay: number, countAttempt = true): void {
    clearTimeout(state.sendTimer);
    state.sendTimer = setTimeout(() => {
      state.sendTimer = undefined;
      if (state.inFlight === id) this.put(state, id, countAttempt);
    }, delay);
  }

  /** Forgets the message in flight without sending the next: the room is not live; its next join resends. */
  private release(state: RoomState): void {
    if (state.inFlight !== undefined) this.clearAckTimer(state.inFlight);
    state.inFlight = undefined;
    clearTimeout(state.sendTimer);
    state.sendTimer = undefined;
  }

  /** Marks every message still to be sent in a room failed (the room is gone or closed to the user). */
  private failPending(state: RoomState, reason: string): void {
    this.release(state);
    for (const pending of state.timeline.pending) {
      if (pending.state === "sending") state.timeline.updatePending(pending.id, { state: "failed", error: reason });
    }
  }

  private sendRefused(state: RoomState, id: string, code: string, message: string): void {
    // Only the message in flight can be refused (the gateway answers in order); anything else is stale.
    if (state.inFlight !== id) return;
    this.clearAckTimer(id);
    const pending = state.timeline.findPending(id);
    if (!pending) return;
    switch (code) {
      case "rate_limited":
      case "overloaded": {
        // Never dropped: wait for the rate limit to refill (or the gateway to catch up), then send it again.
        state.limited = (state.limited ?? 0) + 1;
        const pause = Math.min(8_000, 1_000 * 2 ** Math.min(state.limited - 1, 3)) * (0.75 + Math.random() * 0.5);
        this.putLater(state, id, pause, false);
        return;
      }
      case "not_joined":
        // Sent again once the room is joined (if it is still to be live).
        this.release(state);
        if (state.ws === "joined") state.ws = "idle";
        if (this.wantedRooms().has(state.info.id)) this.joinLive(state);
        return;
      case "publish_failed":
      case "unavailable":
        // publish_failed: the outcome is unknown (it may be stored yet). The same id again settles it: stored at
        // most once, acked with the original seq.
        if (pending.attempts < MAX_SEND_ATTEMPTS) {
          this.putLater(state, id, 500 * 2 ** pending.attempts);
          return;
        }
        if (code === "publish_failed") {
          state.timeline.updatePending(id, { state: "failed", error: "not confirmed by the server", unconfirmed: true });
          this.done(state, id);
          return;
        }
        break;
    }
    state.timeline.updatePending(id, { state: "failed", error: message, errorCode: code });
    this.done(state, id);
  }

  /** Whether a frame is over the gateway's size limit, which would close the connection (1009). */
  private tooLarge(frame: ClientFrame): boolean {
    return new TextEncoder().encode(JSON.stringify(frame)).length > this.options.maxFrameBytes;
  }

  private clearAckTimer(id: string): void {
    const timer = this.ackTimers.get(id);
    if (timer !== undefined) {
      clearTimeout(timer);
      this.ackTimers.delete(id);
    }
  }

  private sendDraft(state: RoomState, text: string): void {
    if (state.ws !== "joined") return;
    const frame = { type: "typing", room: state.info.id, text } as const;
    if (this.tooLarge(frame)) return;
    if (this.connection.send(frame)) {
      state.draftLast = text;
      state.draftSentAt = Date.now();
    }
  }

  // ----------------------------------------------------------------------------------------------------------
  // Recovery

  /** After `recovered: false`: start over from history at the room's current position. */
  private async reload(state: RoomState, seq: number): Promise<void> {
    const reload = ++state.reloads;
    state.timeline.reset(seq);
    state.notice = undefined;
    // The newest page must reach `seq` (a message of this room); the persister may still be writing it.
    for (let attempt = 0; this.started; attempt++) {
      let page: HistoryPage;
      try {
        page = await this.api.messages(this.token, state.info.id, { before: seq + 1, limit: this.options.historyPage });
      } catch (err) {
        this.fail(err, "cannot reload the room's history");
        return;
      }
      if (this.rooms.get(state.info.id) !== state || state.reloads !== reload) return;
      const newest = page.messages[0]?.seq ?? 0;
      if (newest >= seq || attempt >= 10) {
        state.timeline.prependOlder(page.messages, page.has_more);
        if (newest < seq) state.notice = "Some recent messages are still being saved; reload to see them.";
        break;
      }
      await sleep(500);
    }
    // The unread count of what was missed comes from the API.
    this.refreshRoomsSoon();
    this.emit();
  }

  /** A message arrived whose `prev` is not held: fetch what lies between from history. */
  private async fillGap(state: RoomState): Promise<void> {
    // One fill at a time, and none while a failed one waits out its backoff.
    if (state.filling || state.fillTimer || !this.started) return;
    state.filling = true;
    this.emit();
    let idle = 0;
    try {
      while (state.timeline.hasGap && this.rooms.get(state.info.id) === state && this.started) {
        const after = state.timeline.head;
        const page = await this.api.messages(this.token, state.info.id, { after, limit: 200 });
        state.fillFailures = 0;
        const before = state.timeline.head;
        state.timeline.fillAfter(after, page.messages);
        if (!state.timeline.hasGap) break;
        if (state.timeline.head === before) {
          // History has not caught up yet (the persister writes behind the stream): wait a little.
          idle += 1;
          if (idle > 12) {
            state.timeline.skipGap();
            state.notice = "Some messages could not be loaded yet; reload later to see them.";
            break;
          }
          await sleep(Math.min(1_000, 100 * 2 ** idle));
        } else {
          idle = 0;
        }
      }
    } catch (err) {
      if (err instanceof ApiError && !err.transient) {
        // The room is gone or closed to this user: nothing to fill it from.
        state.timeline.skipGap();
        state.notice = "Some messages could not be loaded.";
      } else {
        state.fillFailures = (state.fillFailures ?? 0) + 1;
        if (state.fillFailures === 1) this.fail(err, "cannot load missed messages");
        clearTimeout(state.fillTimer);
        state.fillTimer = setTimeout(
          () => {
            state.fillTimer = undefined;
            if (this.started && this.rooms.get(state.info.id) === state) void this.fillGap(state);
          },
          Math.min(30_000, 1_000 * 2 ** state.fillFailures),
        );
      }
    } finally {
      state.filling = false;
      // What was filled from history is not counted live: the unread count comes from the API.
      if (state.info.id !== this.openId) this.refreshRoomsSoon();
      this.emit();
    }
  }

  // ----------------------------------------------------------------------------------------------------------
  // Rooms on the gateway

  /** The rooms to be live: the open one first, then the user's rooms in list order, up to `maxLiveRooms`. */
  private wantedRooms(): Set<string> {
    const wanted = new Set<string>();
    if (this.openId && this.rooms.has(this.openId)) wanted.add(this.openId);
    for (const id of this.order) {
      if (wanted.size >= this.options.maxLiveRooms) break;
      if (this.rooms.get(id)?.info.joined) wanted.add(id);
    }
    return wanted;
  }

  /** Joins every wanted room not yet joined, and leaves the rest. */
  private syncLive(): void {
    const wanted = this.wantedRooms();
    for (const state of this.rooms.values()) {
      if (!wanted.has(state.info.id)) this.leaveLive(state);
    }
    for (const id of wanted) {
      const state = this.rooms.get(id);
      if (state) this.joinLive(state);
    }
  }

  /** Leaves the last live room that is not open; whether there was one. */
  private leaveOneBackgroundRoom(): boolean {
    const candidates = [...this.order]
      .reverse()
      .map((id) => this.rooms.get(id))
      .filter((state): state is RoomState => !!state && state.info.id !== this.openId && state.ws !== "idle");
    // Rather one with nothing still to send.
    const quiet = candidates.find((state) => !state.timeline.pending.some((p) => p.state === "sending"));
    const leaving = quiet ?? candidates[0];
    if (!leaving) return false;
    this.leaveLive(leaving);
    return true;
  }

  private liveCount(): number {
    let live = 0;
    for (const state of this.rooms.values()) if (state.ws !== "idle") live += 1;
    return live;
  }

  private joinLive(state: RoomState): void {
    if (state.ws !== "idle" || state.ended || !this.connection.online || !this.rooms.has(state.info.id)) return;
    const since = state.timeline.head;
    if (this.connection.send({ type: "join", room: state.info.id, since })) {
      state.ws = "joining";
      this.joinQueue.push({ room: state.info.id, cancelled: false });
    }
  }

  private leaveLive(state: RoomState): void {
    if (state.ws === "idle") return;
    this.release(state);
    this.connection.send({ type: "leave", room: state.info.id });
    for (const entry of this.joinQueue) if (entry.room === state.info.id) entry.cancelled = true;
    state.ws = "idle";
    state.online.clear();
    state.drafts.clear();
  }

  /**
   * The gateway took the user out of a room (`left` with a reason): it is not joined any more and is not joined
   * again by itself, what was still to be sent there fails with the reason, and the room leaves the user's list
   * (deleted or private rooms at once; a public one stays among the public rooms). The open room stays on screen
   * with a notice until the person moves on; another room is dropped with an alert.
   */
  private ended(state: RoomState, reason: LeftReason): void {
    const id = state.info.id;
    const notice = endedNotice(reason);
    state.ended = reason;
    state.ws = "idle";
    state.online.clear();
    state.drafts.clear();
    for (const entry of this.joinQueue) if (entry.room === id) entry.cancelled = true;
    clearTimeout(state.joinTimer);
    state.joinTimer = undefined;
    this.failPending(state, notice);
    // A listing asked for before this could still call the room joined.
    this.memberships += 1;
    const info = state.info;
    state.info = {
      ...info,
      joined: false,
      join_code: undefined,
      member_count: info.joined ? Math.max(0, info.member_count - 1) : info.member_count,
    };
    const gone = reason === "room_deleted" || info.private;
    if (id === this.openId) {
      state.notice = notice;
      if (gone) this.order = this.order.filter((room) => room !== id);
    } else {
      if (gone) this.dropRoom(state);
      const alert = ENDED_ALERTS[reason];
      if (alert) this.tell(id, alert(info.name));
    }
    this.refreshRoomsSoon();
  }

  /** A join of `room` was answered: its entry leaves the queue. */
  private answered(room: string): void {
    const at = this.joinQueue.findIndex((entry) => entry.room === room);
    if (at >= 0) this.joinQueue.splice(at, 1);
  }

  // ----------------------------------------------------------------------------------------------------------
  // Rooms and unread counts

  /** Re-reads one room's details from the API, at most once a second. */
  private refreshRoomSoon(state: RoomState): void {
    if (state.infoTimer) return;
    state.infoTimer = setTimeout(() => {
      state.infoTimer = undefined;
      this.api
        .room(this.token, state.info.id)
        .then((info) => {
          if (this.rooms.get(info.id) !== state) return;
          this.updateInfo(state, info);
          this.emit();
        })
        .catch(() => undefined);
    }, 300);
  }

  /** Starts keeping a room (or returns the one kept already). */
  private addRoom(info: RoomInfo): RoomState {
    const existing = this.rooms.get(info.id);
    if (existing) {
      this.updateInfo(existing, info);
      return existing;
    }
    const state: RoomState = {
      info,
      timeline: new RoomTimeline(this.me, info.last_seq),
      online: new Map(),
      drafts: new Map(),
      ws: "idle",
      base: info.last_seq,
      serverUnread: info.unread,
      readSeq: info.read_seq,
      sentRead: info.read_seq,
      liveUnread: new Set(),
      loadingOlder: false,
      filling: false,
      draftSentAt: 0,
      draftLast: "",
      readFailures: 0,
      olderRetryAt: 0,
      olderFailures: 0,
      reloads: 0,
      viewGeneration: -1,
    };
    this.rooms.set(info.id, state);
    if (!this.order.includes(info.id)) this.order = [...this.order, info.id];
    return state;
  }

  private updateInfo(state: RoomState, info: RoomInfo): void {
    const wasMember = state.info.joined;
    state.info = info;
    if (info.joined && state.ended) {
      // A member again (joined here, or on another device since): live as any other room.
      state.ended = undefined;
      state.notice = undefined;
    }
    this.applyCursor(state, { room: info.id, read_seq: info.read_seq, last_seq: info.last_seq, unread: info.unread });
    if (wasMember && !info.joined && info.id !== this.openId) this.leaveLive(state);
  }

  private applyCursor(state: RoomState, cursor: ReadCursor): void {
    // Read here further than the API knows (an update that failed): tell it again.
    if (state.readSeq > cursor.read_seq && state.info.joined) {
      state.sentRead = Math.min(state.sentRead, cursor.read_seq);
      this.sendReadSoon(state, 300);
    }
    state.readSeq = Math.max(state.readSeq, cursor.read_seq);
    if (cursor.last_seq >= state.base) {
      state.base = cursor.last_seq;
      state.serverUnread = cursor.unread;
      for (const seq of state.liveUnread) if (seq <= state.base) state.liveUnread.delete(seq);
    }
  }

  private unread(state: RoomState): number {
    if (!state.info.joined) return 0;
    let live = 0;
    for (const seq of state.liveUnread) if (seq > state.readSeq) live += 1;
    return (state.readSeq >= state.base ? 0 : state.serverUnread) + live;
  }

  private markOpenRead(): void {
    const state = this.openId ? this.rooms.get(this.openId) : undefined;
    if (!state || !state.info.joined || !this.visible || !this.following) return;
    const seq = Math.max(state.timeline.newestSeq, state.base);
    if (seq <= state.readSeq && this.unread(state) === 0) return;
    state.readSeq = Math.max(state.readSeq, seq);
    state.liveUnread.clear();
    this.sendReadSoon(state, 300);
    this.emit();
  }

  /** Sends the read cursor to the API after `delay` ms, retrying with backoff until it is stored. */
  private sendReadSoon(state: RoomState, delay: number): void {
    if (state.readSeq <= state.sentRead || state.readTimer) return;
    state.readTimer = setTimeout(() => {
      state.readTimer = undefined;
      const target = state.readSeq;
      state.sentRead = target;
      this.api
        .markRead(this.token, state.info.id, target)
        .then((cursor) => {
          state.readFailures = 0;
          this.applyCursor(state, cursor);
          this.emit();
        })
        .catch((err) => {
          // The count here is right already; other devices learn it once the API has it.
          state.sentRead = Math.min(state.sentRead, target - 1);
          state.readFailures += 1;
          const gone = err instanceof ApiError && (err.status === 403 || err.status === 404);
          if (!gone && this.rooms.get(state.info.id) === state && this.started) {
            this.sendReadSoon(state, Math.min(30_000, 1_000 * 2 ** state.readFailures));
          }
        });
    }, delay);
  }

  private dropRoom(state: RoomState): void {
    this.leaveLive(state);
    this.clearTimers(state);
    this.rooms.delete(state.info.id);
    this.order = this.order.filter((id) => id !== state.info.id);
  }

  private clearTimers(state: RoomState): void {
    clearTimeout(state.draftTimer);
    clearTimeout(state.readTimer);
    clearTimeout(state.infoTimer);
    clearTimeout(state.fillTimer);
    clearTimeout(state.sendTimer);
    clearTimeout(state.joinTimer);
    if (state.inFlight !== undefined) this.clearAckTimer(state.inFlight);
    state.draftTimer = state.readTimer = state.infoTimer = state.fillTimer = state.sendTimer = undefined;
    state.joinTimer = undefined;
  }

  /** One room listing soon, however many asked for it (rooms reloading after a reconnect, say). */
  private refreshRoomsSoon(): void {
    if (this.listTimer) return;
    this.listTimer = setTimeout(() => {
      this.listTimer = undefined;
      if (this.started) void this.refreshRooms().catch(() => undefined);
    }, 500);
  }

  private expireDrafts(): void {
    const cutoff = Date.now() - this.options.draftTtlMs;
    let changed = false;
    for (const state of this.rooms.values()) {
      for (const [id, draft] of state.drafts) {
        if (draft.at < cutoff) {
          state.drafts.delete(id);
          changed = true;
        }
      }
    }
    if (changed) this.emit();
  }

  private view(state: RoomState): RoomView {
    if (state.view && state.viewGeneration === this.generation) return state.view;
    state.view = {
      info: state.info,
      timeline: state.timeline,
      online: [...state.online.values()].sort((a, b) => a.name.localeCompare(b.name)),
      drafts: [...state.drafts.values()].map(({ user, text }) => ({ user, text })),
      unread: this.unread(state),
      live: state.ws === "joined",
      loadingOlder: state.loadingOlder,
      filling: state.filling,
      notice: state.notice,
      ended: state.ended,
    };
    state.viewGeneration = this.generation;
    return state.view;
  }

  private readonly token = () => this.session.accessToken();

  private fail(err: unknown, what?: string): void {
    const message = err instanceof Error ? err.message : String(err);
    for (const listener of [...this.listeners]) {
      listener({ type: "error", message: what ? `${what}: ${message}` : message });
    }
  }

  private tell(room: string, message: string): void {
    for (const listener of [...this.listeners]) listener({ type: "notice", room, message });
  }

  private emit(): void {
    this.generation += 1;
    for (const listener of [...this.listeners]) listener({ type: "change" });
  }
}

function endedNotice(reason: LeftReason): string {
  return ENDED_NOTICES[reason] ?? "You are no longer in this room.";
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
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
