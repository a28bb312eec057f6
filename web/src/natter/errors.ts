/**
 * The codes of the gateway's `error` frames, as natter-proto's `ErrorCode` defines them (a Rust test checks that
 * each is here). Token refusals (`token_expired`, …) have codes of their own.
 */
export const ERROR_CODES = [
  "bad_frame",
  "binary_frame",
  "rate_limited",
  "overloaded",
  "invalid_body",
  "not_joined",
  "already_joined",
  "too_many_rooms",
  "room_not_found",
  "room_private",
  "banned",
  "blocked",
  "unavailable",
  "publish_failed",
  "token_wrong_session",
  "token_wrong_user",
  "not_found",
  "not_author",
  "already_deleted",
  "invalid_emoji",
  "too_many_reactions",
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

/** What a person is told when a change to a message is refused. */
export function changeRefusal(code: string, fallback: string): string {
  switch (code) {
    case "not_author":
      return "Only its author can change this message.";
    case "not_found":
      return "That message is not in this room any more.";
    case "already_deleted":
      return "That message was deleted.";
    case "invalid_emoji":
      return "A reaction is one emoji.";
    case "too_many_reactions":
      return "This message has as many different reactions as it can take: add one of those.";
    default:
      return fallback;
  }
}

/** The codes a search (`GET /api/search`) is refused with, besides those of every authenticated call. */
export const SEARCH_ERROR_CODES = [
  "invalid_query",
  "invalid_room_id",
  "room_private",
  "room_not_found",
  "user_not_found",
  "query_too_broad",
  "rate_limited",
] as const;

/** What a person is told when a search is refused (`retryAfter`: seconds, for `rate_limited`). */
export function searchRefusal(code: string, fallback: string, retryAfter?: number): string {
  switch (code) {
    case "invalid_query":
      return "Type one or more words to search for (up to 200 characters).";
    case "invalid_room_id":
    case "room_not_found":
      return "That room is not there any more: search all your rooms instead.";
    case "room_private":
      return "That room is private: only its members can search it.";
    case "user_not_found":
      return "Nobody has that user name: check the name under From.";
    case "query_too_broad":
      return "These words match too many messages to sort in time: add words, or search one room.";
    case "rate_limited":
      return `That is a lot of searches in a minute; try again in ${retryAfter ?? 60} seconds.`;
    default:
      return fallback;
  }
}
