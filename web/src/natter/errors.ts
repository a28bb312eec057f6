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
