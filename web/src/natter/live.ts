/**
 * The live connection: the one gateway connection (through {@link Connection}), which rooms are joined on it, and
 * every frame the gateway sends, each kind handled in one place below or handed whole to the part that owns it.
 *
 * Every (re)join carries `since` = the room's head, so after a reconnect the gateway replays what was missed
 * (`recovered: true`) or says it cannot (`recovered: false`: the room reloads from history). At most
 * `maxLiveRooms` rooms are joined at once: the open one first, then the user's rooms in list order.
 *
 * A direct conversation closed by a block is joined like the others unless the user's own block closed it: the
 * gateway answers `blocked` (still closed) or `joined` (the block was lifted: open again).
 */

import { backoffDelay, type BackoffOptions } from "./backoff";
import { Connection, type ConnectionStatus } from "./connection";
import type { ClientContext } from "./context";
import type { ErrorCode } from "./errors";
import type { ClientFrame, LeftReason, MessageFrame, ServerFrame } from "./frames";
import type { Room } from "./rooms";

/** A room's place on the connection (this part's slice of the room). */
export interface LiveState {
  ws: "idle" | "joining" | "joined";
  /** A join the gateway could not check, to try again. */
  joinTimer?: ReturnType<typeof setTimeout>;
  /** A join refused as `banned` was tried once more already (see {@link BANNED_RETRY_MS}). */
  bannedRetried?: boolean;
  /** The user lifted their block of this conversation: a join refused as `blocked` is tried again after this many ms. */
  recheck?: number;
}

/** A new room's: not joined. */
export function liveState(): LiveState {
  return { ws: "idle" };
}

/** Errors whose frame is a join (they carry no `ref`): the oldest outstanding join failed. (`rate_limited` without
 * a `ref` answers a join over the gateway's budget, or a leave of a room the gateway had already taken this
 * connection out of, which this client sends only for rooms it holds joined.) */
const JOIN_ERRORS = new Set<ErrorCode>([
  "room_not_found",
  "room_private",
  "banned",
  "blocked",
  "too_many_rooms",
  "unavailable",
  "rate_limited",
  "already_joined",
]);

/** What the person reads about a room the gateway would not let them join, by its error code. */
const JOIN_REFUSALS: Record<string, string> = {
  room_private: "This room is private and you are not a member.",
  banned: "You are banned from this room.",
};

/**
 * A gateway remembers a refusal for 5 s (its `REFUSED_FOR`): a join refused as `banned` just after the ban was
 * lifted (the API let the user open or join the room) is tried once more after that.
 */
const BANNED_RETRY_MS = 6_000;

/** A join the gateway could not check, or took over its budget: tried again 1 to 2 s later. */
const JOIN_RETRY: BackoffOptions = { first: 1_000, max: 1_000, jitter: [1, 2] };

export class Live {
  private readonly connection: Connection;
  /**
   * Joins sent and not yet answered, oldest first. The gateway answers a connection's frames in order and a
   * failed join's error names no room, so an error goes to the oldest entry; a room left meanwhile keeps its
   * place (`cancelled`) so the ones after it still match.
   */
  private readonly joinQueue: { room: string; cancelled: boolean }[] = [];
  /** The `hello`s seen: every one after the first is a reconnect. */
  private hellos = 0;

  constructor(private readonly ctx: ClientContext) {
    const { api, session, options } = ctx;
    this.connection = new Connection({
      socket: options.socket,
      token: (fresh) => (fresh ? session.refresh() : session.accessToken(60_000)),
      gatewayUrl: async (avoid) => (options.gatewayUrl ? { url: options.gatewayUrl } : await api.gateway(avoid)),
      onHello: () => this.onHello(),
      onFrame: (frame) => this.onFrame(frame),
      onStatus: (status) => this.onStatus(status),
      // A revoked session is a sign-out: the session ends, and its listeners (this client among them) stop.
      onSessionRevoked: (token) => session.revoked(token),
      backoff: options.backoff,
      pingIntervalMs: options.pingIntervalMs,
      silenceTimeoutMs: options.silenceTimeoutMs,
    });
  }

  /** The connection's status. */
  get status(): ConnectionStatus {
    return this.connection.current;
  }

  /** Connects (and keeps reconnecting until {@link stop}). */
  start(): void {
    this.connection.start();
  }

  /** Disconnects for good. */
  stop(): void {
    this.connection.stop("signed out");
  }

  /** Skips the wait before the next reconnect attempt. */
  reconnectNow(): void {
    this.connection.reconnectNow();
  }

  /** Hands a refreshed access token to the gateway (an in-band `refresh`). */
  refreshToken(token: string): void {
    this.connection.send({ type: "refresh", token });
  }

  /** Whether frames can be sent now. */
  get online(): boolean {
    return this.connection.online;
  }

  /** Sends a frame; false when not online. */
  send(frame: ClientFrame): boolean {
    return this.connection.send(frame);
  }

  /** Whether a frame is over the gateway's size limit, which would close the connection (1009). */
  tooLarge(frame: ClientFrame): boolean {
    return new TextEncoder().encode(JSON.stringify(frame)).length > this.ctx.options.maxFrameBytes;
  }

  /** Whether a room is joined on the gateway (its frames arrive, frames may be sent to it). */
  joined(room: Room): boolean {
    return room.live.ws === "joined";
  }

  // ----------------------------------------------------------------------------------------------------------
  // Joins and leaves

  /** The rooms to be live: the open one first, then the user's rooms in list order, up to `maxLiveRooms`. */
  private wantedRooms(): Set<string> {
    const { rooms, openId, options } = this.ctx;
    const wanted = new Set<string>();
    if (openId && rooms.has(openId)) wanted.add(openId);
    for (const id of rooms.order) {
      if (wanted.size >= options.maxLiveRooms) break;
      if (rooms.get(id)?.info.joined) wanted.add(id);
    }
    return wanted;
  }

  /** Joins every wanted room not yet joined, and leaves the rest. */
  sync(): void {
    const wanted = this.wantedRooms();
    for (const room of this.ctx.rooms.all()) {
      if (!wanted.has(room.id)) this.leave(room);
    }
    for (const id of wanted) {
      const room = this.ctx.rooms.get(id);
      if (room) this.join(room);
    }
  }

  /** Joins the room being opened, leaving a background room first when every place is taken. */
  open(room: Room): void {
    if (room.live.ws === "idle" && this.liveCount() >= this.ctx.options.maxLiveRooms) this.leaveOneBackgroundRoom();
    this.join(room);
  }

  /** Leaves the last live room that is not open; whether there was one. */
  private leaveOneBackgroundRoom(): boolean {
    const candidates = [...this.ctx.rooms.order]
      .reverse()
      .map((id) => this.ctx.rooms.get(id))
      .filter((room): room is Room => !!room && room.id !== this.ctx.openId && room.live.ws !== "idle");
    // Rather one with nothing still to send.
    const quiet = candidates.find((room) => !room.timeline.pending.some((p) => p.state === "sending"));
    const leaving = quiet ?? candidates[0];
    if (!leaving) return false;
    this.leave(leaving);
    return true;
  }

  private liveCount(): number {
    let live = 0;
    for (const room of this.ctx.rooms.all()) if (room.live.ws !== "idle") live += 1;
    return live;
  }

  /**
   * Joins a room on the gateway with `since` = its head, unless it is joined (or joining) already, or the user is
   * out of it (a conversation closed by someone else's block is asked about: they may have lifted it).
   */
  join(room: Room): void {
    if (room.live.ws !== "idle" || !this.connection.online || !this.ctx.rooms.has(room.id)) return;
    if (room.ended && (room.ended !== "blocked" || this.ctx.conversations.closedByMe(room))) return;
    const since = room.timeline.head;
    if (this.connection.send({ type: "join", room: room.id, since })) {
      room.live.ws = "joining";
      this.joinQueue.push({ room: room.id, cancelled: false });
    }
  }

  /** Leaves a room on the gateway; what was on its way there is sent again after the next join. */
  leave(room: Room): void {
    if (room.live.ws === "idle") return;
    this.ctx.outbox.release(room);
    this.connection.send({ type: "leave", room: room.id });
    this.cancelJoins(room);
    room.live.ws = "idle";
    this.ctx.presence.clear(room);
  }

  /** The gateway took the user out of a room: it is no longer joined, and a join still pending is void. */
  takenOut(room: Room): void {
    room.live.ws = "idle";
    this.ctx.presence.clear(room);
    this.cancelJoins(room);
    clearTimeout(room.live.joinTimer);
    room.live.joinTimer = undefined;
  }

  /** The gateway says the room is not joined (a send was refused): join it again if it is still to be live. */
  rejoin(room: Room): void {
    if (room.live.ws === "joined") room.live.ws = "idle";
    if (this.wantedRooms().has(room.id)) this.join(room);
  }

  /** Stops the room's wait before a join is tried again. */
  stopTimers(room: Room): void {
    clearTimeout(room.live.joinTimer);
    room.live.joinTimer = undefined;
  }

  private cancelJoins(room: Room): void {
    for (const entry of this.joinQueue) if (entry.room === room.id) entry.cancelled = true;
  }

  /** A join of `room` was answered: its entry leaves the queue. */
  private answered(room: string): void {
    const at = this.joinQueue.findIndex((entry) => entry.room === room);
    if (at >= 0) this.joinQueue.splice(at, 1);
  }

  // ----------------------------------------------------------------------------------------------------------
  // The connection's events

  private onStatus(status: ConnectionStatus): void {
    if (status.state !== "online") {
      for (const room of this.ctx.rooms.all()) {
        room.live.ws = "idle";
        this.ctx.presence.clearDrafts(room);
      }
      // Whatever was on its way is sent again after the rejoin.
      this.ctx.outbox.disconnected();
      this.joinQueue.length = 0;
    }
    this.ctx.emit();
  }

  private onHello(): void {
    // A token refreshed while the socket was opening never reached this gateway: hand it over now.
    const token = this.ctx.session.currentAccessToken;
    if (token && token !== this.connection.token) this.refreshToken(token);
    this.sync();
    // The user's own events are not kept while disconnected: whatever changed meanwhile is read again (the first
    // connection's listing is the one the client starts with).
    if (this.hellos++ > 0) void this.ctx.membership.refresh().catch(() => undefined);
  }

  /** Every frame after `hello`: each kind is handled here, or by the part named. Only news about a room held (or an
   * error) is a change. */
  private onFrame(frame: ServerFrame): void {
    if (frame.type === "pong" || frame.type === "hello") return;
    if (frame.type === "personal") {
      this.ctx.mentions.personal(frame.event);
      this.ctx.emit();
      return;
    }
    if (frame.type === "error") {
      this.onError(frame.code, frame.message, frame.ref);
      this.ctx.emit();
      return;
    }
    const room = this.ctx.rooms.get(frame.room);
    switch (frame.type) {
      case "joined":
        this.answered(frame.room);
        if (!room) return;
        if (room.ended === "blocked") {
          // A conversation closed by a block is open again: the block was lifted.
          this.ctx.membership.reopen(room);
          room.live.recheck = undefined;
        } else if (room.ended) {
          // A join sent before the user was taken out of the room, answered after: not to be live.
          this.connection.send({ type: "leave", room: frame.room });
          return;
        }
        room.live.ws = "joined";
        if (room.live.bannedRetried) {
          // The refusal was a lifted ban still remembered: no longer news.
          room.live.bannedRetried = false;
          if (room.notice === JOIN_REFUSALS.banned) room.notice = undefined;
        }
        this.ctx.presence.joined(room, frame.members);
        // With `recovered`, the replayed messages follow this frame, before any live one.
        if (!frame.recovered) void this.ctx.history.reload(room, frame.seq);
        this.ctx.outbox.pump(room);
        break;
      case "message":
        if (!room) return;
        this.onMessage(room, frame);
        break;
      case "edited":
      case "deleted":
      case "reacted":
        if (!room) return;
        room.timeline.receiveChange(frame);
        if (frame.user.id === this.ctx.me.id) this.ctx.outbox.settled(room, frame.id);
        if (room.timeline.hasGap) void this.ctx.history.fillGap(room);
        break;
      case "ack":
        // Its wait for the ack ends even when the room is no longer held.
        this.ctx.outbox.acked(room, frame.id, frame.seq);
        if (!room) return;
        break;
      case "presence":
        if (!room) return;
        this.ctx.presence.changed(room, frame.joined ?? [], frame.left ?? []);
        break;
      case "typing":
        if (!room || frame.user.id === this.ctx.me.id) return;
        this.ctx.presence.typing(room, frame.user, frame.text);
        break;
      case "left":
        if (!room) return;
        this.onLeft(room, frame.reason);
        break;
    }
    this.ctx.emit();
  }

  private onMessage(room: Room, frame: MessageFrame): void {
    const { ctx } = this;
    const mine = frame.user.id === ctx.me.id;
    ctx.presence.sent(room, frame.user);
    const added = room.timeline.receive(frame);
    // The user's own message in the room's order: stored, even if its ack was lost.
    if (mine) ctx.outbox.settled(room, frame.id);
    if (added && !mine) ctx.unread.arrived(room, frame.seq);
    if (added && !mine) ctx.mentions.arrived(room, frame);
    if (room.timeline.hasGap) void ctx.history.fillGap(room);
    if (room.timeline.messages.length > ctx.options.maxHeld && (ctx.openId !== room.id || ctx.following)) {
      room.timeline.trim(ctx.options.maxHeld);
    }
    if (ctx.openId === room.id) ctx.unread.markOpenRead();
  }

  private onLeft(room: Room, reason: LeftReason | undefined): void {
    if (reason !== undefined && !this.ctx.membership.leavingHere(room.id)) {
      this.ctx.membership.ended(room, reason);
      return;
    }
    // The answer to a leave (or the gateway's news of one made here); a rejoin sent since is still on its way
    // and decides.
    const rejoining = this.joinQueue.some((entry) => entry.room === room.id && !entry.cancelled);
    if (!rejoining) room.live.ws = "idle";
  }

  private onError(code: string, message: string, ref: string | undefined): void {
    if (ref && this.ctx.outbox.refused(ref, code, message)) return;
    if (!ref && JOIN_ERRORS.has(code as ErrorCode) && this.joinQueue.length) {
      this.joinFailed(code);
      return;
    }
    if (code === "token_revoked") {
      // The in-band refresh was refused because the session was logged out: no new token will be taken either.
      this.ctx.session.revoked(this.connection.token);
      return;
    }
    if (code.startsWith("token_")) {
      // The gateway refused the in-band refresh: reconnect with a newly refreshed token instead.
      this.connection.restartWithFreshToken();
    }
  }

  /** The oldest join still unanswered failed with `code`. */
  private joinFailed(code: string): void {
    const entry = this.joinQueue.shift() as { room: string; cancelled: boolean };
    const room = this.ctx.rooms.get(entry.room);
    if (!room || entry.cancelled) return;
    if (code === "already_joined") {
      room.live.ws = "joined";
      return;
    }
    room.live.ws = "idle";
    if (code === "blocked") {
      // A direct conversation one of the two blocked: closed until the block is lifted.
      this.ctx.membership.closed(room, false);
      if (room.live.recheck) {
        this.retryJoin(room, room.live.recheck);
        room.live.recheck = undefined;
      }
      return;
    }
    if (code === "banned" && !room.live.bannedRetried) {
      // The API let the user in, yet the gateway refuses: it may still remember a ban lifted a moment ago. Said
      // meanwhile; tried once more when the gateway has forgotten it.
      room.live.bannedRetried = true;
      room.notice = JOIN_REFUSALS.banned;
      this.retryJoin(room, BANNED_RETRY_MS);
      return;
    }
    if (code === "unavailable" || code === "rate_limited") {
      // The gateway could not check access right now, or takes no more joins for a moment: try again shortly,
      // if the room is still wanted then.
      this.retryJoin(room, backoffDelay(0, JOIN_RETRY));
      return;
    }
    if (code === "too_many_rooms") {
      room.notice = "Too many rooms are open on this connection: this one is not live.";
      // The open room comes first: make room for it by leaving a background room.
      if (room.id === this.ctx.openId && this.leaveOneBackgroundRoom()) this.join(room);
      return;
    }
    room.notice = JOIN_REFUSALS[code] ?? "This room no longer exists.";
    // Nothing written here can be sent any more.
    this.ctx.outbox.failPending(room, room.notice);
    this.ctx.membership.refreshRoomsSoon();
  }

  /** Joins the room again after `delay` ms, if it is still wanted then. */
  private retryJoin(room: Room, delay: number): void {
    clearTimeout(room.live.joinTimer);
    room.live.joinTimer = setTimeout(() => {
      room.live.joinTimer = undefined;
      if (this.ctx.started && this.wantedRooms().has(room.id)) this.join(room);
    }, delay);
  }
}
