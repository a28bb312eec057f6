/**
 * What the parts of a client share: the API and the session, the options, the rooms held, which room is open and
 * whether the person sees it, the listeners, and the parts themselves, so that each can hand another what it owns.
 *
 * Each part owns one concept and its slice of every room's record (see rooms.ts); only the owner writes it.
 */

import type { Api } from "./api";
import type { BackoffOptions } from "./backoff";
import type { SocketFactory } from "./connection";
import { Conversations } from "./conversations";
import type { UserRef } from "./frames";
import { History } from "./history";
import { Live } from "./live";
import { Membership } from "./membership";
import { Mentions } from "./mentions";
import { Outbox } from "./outbox";
import { Presence } from "./presence";
import { type Room, Rooms } from "./rooms";
import { Search } from "./search";
import type { Session } from "./session";
import { Unread } from "./unread";

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

/** The options with every default filled in. */
export type Settings = Required<Omit<ClientOptions, "gatewayUrl" | "backoff" | "pingIntervalMs" | "silenceTimeoutMs">> &
  ClientOptions;

/**
 * What the client tells its UI: state changed; an action failed (`error`); or something happened to a room the
 * person is not looking at (`notice`: it was deleted, they were removed from it).
 */
export type ClientEvent =
  | { type: "change" }
  | { type: "error"; message: string }
  | { type: "notice"; room: string; message: string };

export class ClientContext {
  readonly api: Api;
  readonly session: Session;
  readonly options: Settings;
  /** Every room held, and the list's order. */
  readonly rooms = new Rooms();

  /** The live connection: joins, and every frame in and out. */
  readonly live: Live;
  /** The user's messages and changes on their way. */
  readonly outbox: Outbox;
  /** Older pages, gap fills and reloads from the history API. */
  readonly history: History;
  /** Unread counts and read cursors. */
  readonly unread: Unread;
  /** Which rooms the user is in: the API's listing, and joining, leaving and deleting. */
  readonly membership: Membership;
  /** Who is online in each room, drafts. */
  readonly presence: Presence;
  /** Messages found by their words. */
  readonly search: Search;
  /** Conversations started, and the people the user blocks. */
  readonly conversations: Conversations;
  /** Mentions of the user, muted rooms, and the user's own events. */
  readonly mentions: Mentions;

  /** The room on screen. */
  openId: string | undefined;
  /** The room asked to be shown that the API refused to show, and the API's error code (`banned`, …). */
  refused: { room: string; code: string } | undefined;
  /** Whether the page is visible: rooms are marked read only while it is. */
  visible = true;
  /** Whether the open room is scrolled to its newest message. */
  following = true;
  /** Between `start` and `stop`: timers and retries run only then. */
  started = false;
  /** Bumped on every change: views made in an older generation are stale. */
  generation = 0;

  private readonly listeners = new Set<(event: ClientEvent) => void>();

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
    this.live = new Live(this);
    this.outbox = new Outbox(this);
    this.history = new History(this);
    this.unread = new Unread(this);
    this.membership = new Membership(this);
    this.presence = new Presence(this);
    this.search = new Search(this);
    this.conversations = new Conversations(this);
    this.mentions = new Mentions(this);
  }

  /** The signed-in user. */
  get me(): UserRef {
    const user = this.session.user;
    return user ? { id: user.id, name: user.name } : { id: "", name: "" };
  }

  /** A valid access token, for the API. */
  readonly token = () => this.session.accessToken();

  /** Whether `room` is still the one held under its id (not dropped or replaced meanwhile). */
  holds(room: Room): boolean {
    return this.rooms.get(room.info.id) === room;
  }

  /** Stops every timer a room's parts keep (it is dropped, or the client stops). */
  stopTimers(room: Room): void {
    this.presence.stopTimers(room);
    this.unread.stopTimers(room);
    this.membership.stopTimers(room);
    this.history.stopTimers(room);
    this.outbox.stopTimers(room);
    this.live.stopTimers(room);
  }

  /** Listens to changes and errors; returns how to stop. */
  subscribe(listener: (event: ClientEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Something changed: listeners re-read the state. */
  emit(): void {
    this.generation += 1;
    for (const listener of [...this.listeners]) listener({ type: "change" });
  }

  /** An action failed: listeners say so (`what` failed, and why). */
  fail(err: unknown, what?: string): void {
    const message = err instanceof Error ? err.message : String(err);
    for (const listener of [...this.listeners]) {
      listener({ type: "error", message: what ? `${what}: ${message}` : message });
    }
  }

  /** Something happened to a room that is not on screen. */
  tell(room: string, message: string): void {
    for (const listener of [...this.listeners]) listener({ type: "notice", room, message });
  }
}
