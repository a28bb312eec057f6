/**
 * The Natter protocol client: a small SDK for any front-end (no DOM).
 *
 * ```ts
 * const api = new Api("https://chat.example.com");
 * const session = new Session(api, new MemorySessionStore());
 * session.begin(await api.login("alice", "correct horse"));
 * const client = new NatterClient({ api, session, socket: (url, protocols) => new WebSocket(url, protocols) });
 * client.subscribe(() => render(client.roomList()));
 * await client.start();
 * ```
 */

export { Account } from "./account";
export { Api, ApiError } from "./api";
export type { MentionHit, MentionsPage } from "./api";
export type { Ban, Blocked, GatewayAssignment, HistoryMessage, HistoryPage, Member, ReadCursor, RoomInfo, RoomKind, RoomRole, SearchHit, SearchOptions, SearchPage, SessionInfo, TokenResponse } from "./api";
export { backoffDelay, DEFAULT_BACKOFF, NO_JITTER } from "./backoff";
export type { BackoffOptions } from "./backoff";
export {
  excerpt,
  highlight,
  inviteCode,
  isConversation,
  memberActions,
  moderates,
  NatterClient,
  parseInvite,
  parseNames,
  peerOnline,
  roleIn,
  searchTerms,
} from "./client";
export type { ClientEvent, ClientOptions, Draft, MemberActions, Piece, RoomView } from "./client";
export { Connection } from "./connection";
export type { ConnectionOptions, ConnectionStatus, Hello, SocketFactory, SocketLike } from "./connection";
export { Close, newMessageId, parseServerFrame, SUBPROTOCOL } from "./frames";
export type { ClientFrame, LeftReason, MessageFrame, ServerFrame, UserRef } from "./frames";
export { MemorySessionStore, Session } from "./session";
export type { SessionStore, SignOutReason, StoredSession } from "./session";
export { messageKey, RoomTimeline } from "./timeline";
export type { ChatMessage, PendingMessage, SendState, TimelineItem } from "./timeline";
