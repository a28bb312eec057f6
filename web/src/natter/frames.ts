/**
 * Wire protocol v1: the JSON frames a client exchanges with a gateway (docs/protocol.md).
 *
 * The names mirror `natter-proto`'s `frame.rs`; a change there is a protocol version change.
 */

/** A user as other users see them. */
export interface UserRef {
  id: string;
  name: string;
}

/** Frames a client sends. */
export type ClientFrame =
  | { type: "join"; room: string; since?: number }
  | { type: "leave"; room: string }
  | { type: "send"; room: string; id: string; body: string; reply_to?: number }
  | { type: "edit"; room: string; id: string; target: number; body: string }
  | { type: "delete"; room: string; id: string; target: number }
  | { type: "react"; room: string; id: string; target: number; emoji: string; on: boolean }
  | { type: "typing"; room: string; text: string }
  | { type: "ping"; id: string }
  | { type: "refresh"; token: string };

/** A chat message as the gateway delivers it. */
export interface MessageFrame {
  type: "message";
  room: string;
  seq: number;
  prev: number;
  id: string;
  user: UserRef;
  body: string;
  ts: string;
  /** The seq of the message this one answers. */
  reply_to?: number;
  /** The room's members its text mentions (`@name`), as the server resolved them. */
  mentions?: UserRef[];
}

/**
 * An event of the user's own, pushed on every connection of theirs (not kept: a client re-reads its rooms after
 * each `hello`). `read`: their read cursor in a room moved (on any device), with the counts as of now. `rooms`:
 * their rooms changed (a conversation started with them, joined, left, removed, a room deleted, a block).
 */
export type PersonalEvent =
  | { kind: "read"; room: string; read_seq: number; unread: number; mentions: number }
  | { kind: "rooms"; room?: string }
  /** A message mentioning the user was stored (also told to connections not in the room). */
  | { kind: "mentioned"; room: string; seq: number; by: UserRef };

/** A change to an earlier message: an event on the room's chain, with its own `seq` and `prev`. */
export type ChangeFrame =
  | { type: "edited"; room: string; seq: number; prev: number; id: string; user: UserRef; target: number; body: string; ts: string }
  | { type: "deleted"; room: string; seq: number; prev: number; id: string; user: UserRef; target: number; ts: string }
  | {
      type: "reacted";
      room: string;
      seq: number;
      prev: number;
      id: string;
      user: UserRef;
      target: number;
      emoji: string;
      on: boolean;
      ts: string;
    };

/** Frames a gateway sends. */
export type ServerFrame =
  | { type: "hello"; conn: string; gateway: string; user: UserRef; personal_recovered?: boolean }
  | { type: "joined"; room: string; seq: number; recovered: boolean; members: UserRef[] }
  | MessageFrame
  | ChangeFrame
  | { type: "ack"; room: string; id: string; seq: number }
  | { type: "presence"; room: string; joined: UserRef[]; left: UserRef[] }
  | { type: "typing"; room: string; user: UserRef; text: string }
  | { type: "left"; room: string; reason?: LeftReason }
  | { type: "pong"; id: string }
  | { type: "personal"; event: PersonalEvent }
  | { type: "error"; code: string; message: string; ref?: string };

/**
 * Why the gateway took a connection out of a room it did not ask to leave (the `reason` of a `left` frame; absent
 * when the frame answers the client's own `leave`). A client must not rejoin on its own after one of these.
 */
export type LeftReason =
  /** The room was deleted. */
  | "room_deleted"
  /** The user left the room through the API (another tab or device). */
  | "member_left"
  /** The room's owner or a moderator removed the user. */
  | "member_removed"
  /** The room's owner or a moderator banned the user. */
  | "banned"
  /** Checked again after the gateway lost NATS for a while, the user no longer has access. */
  | "access_revoked"
  /** One of a direct conversation's two people blocked the other: closed to both until the block is lifted. */
  | "blocked"
  /** A reason this client does not know yet: treated like the others (out of the room, no rejoin). */
  | (string & {});

/** The subprotocol offered next to the access token (browsers cannot set headers on a WebSocket). */
export const SUBPROTOCOL = "natter.v1";

/** WebSocket close codes the gateway uses, and what a client does about each. */
export const Close = {
  /** Normal closure. */
  Normal: 1000,
  /** A WebSocket protocol fault (a client bug). */
  ProtocolError: 1002,
  /** A text message that is not UTF-8 (a client bug). */
  InvalidData: 1007,
  /** Too many invalid frames: a client bug; reconnecting would repeat it. */
  Policy: 1008,
  /** A message over the size limit: a client bug. */
  TooBig: 1009,
  /** The gateway lost NATS: reconnect, elsewhere. */
  Unavailable: 1011,
  /** The gateway is draining: reconnect at once, to another gateway. */
  Restart: 1012,
  /** The access token expired: refresh it, then reconnect. */
  TokenExpired: 4001,
  /**
   * The session was revoked (logged out elsewhere, or its refresh token was used twice): not a client bug, but
   * no token of this session will be accepted again. Do not reconnect; sign in again.
   */
  SessionRevoked: 4003,
  /** The client read too slowly: reconnect and recover with `since`. */
  SlowConsumer: 4008,
  /** Nothing received for too long: reconnect. */
  Idle: 4009,
} as const;

/** Parses a text frame from a gateway; `undefined` for anything that is not a known frame. */
export function parseServerFrame(text: string): ServerFrame | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof value !== "object" || value === null) return undefined;
  const frame = value as { type?: unknown };
  switch (frame.type) {
    case "hello":
    case "joined":
    case "message":
    case "edited":
    case "deleted":
    case "reacted":
    case "ack":
    case "presence":
    case "typing":
    case "left":
    case "pong":
    case "personal":
    case "error":
      return value as ServerFrame;
    default:
      return undefined;
  }
}

/** Longest client message id the gateway accepts (`A-Z a-z 0-9 _ - . :`). */
export const MAX_CLIENT_ID = 64;

/** A fresh client message id (20 random characters): unique per author, so a resend with the same id is stored once. */
export function newMessageId(): string {
  const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
  const bytes = new Uint8Array(20);
  globalThis.crypto.getRandomValues(bytes);
  let id = "";
  for (const b of bytes) id += alphabet[b % alphabet.length];
  return id;
}
