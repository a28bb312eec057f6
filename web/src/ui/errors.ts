/** What a person reads when an action fails: the API's message, or plainer words for the common cases. */

import { ApiError } from "../natter/api";
import { searchRefusal } from "../natter/errors";

/** A person-readable reason for a failed action. */
export function describe(err: unknown): string {
  if (err instanceof ApiError) {
    switch (err.code) {
      case "invalid_join_code":
        return "That invite code is not valid for this room.";
      case "room_not_found":
        return "There is no such room (it may have been deleted).";
      case "invalid_invite":
        return "Paste an invite code (room.code) or an invite link.";
      case "not_room_owner":
        return "Only the room's owner can do that.";
      case "not_room_moderator":
        return "Only the room's owner or a moderator can do that.";
      case "banned":
        return "You are banned from this room.";
      case "owner_cannot_be_removed":
        return "The owner cannot be removed from their room; delete the room instead.";
      case "owner_cannot_be_banned":
        return "The owner cannot be banned from their room.";
      case "cannot_moderate_yourself":
        return "You cannot do that to yourself; leave the room instead.";
      case "ban_not_found":
        return "They are not banned from this room any more.";
      case "member_not_found":
        return "They are not a member of this room any more.";
      case "blocked":
        // The API names the person ("you blocked NAME; …", "NAME does not take messages from you"): kept as written.
        return blockedText(err.message);
      case "user_not_found": {
        const name = /'(.+)'/.exec(err.message)?.[1];
        return name ? `Nobody is called “${name}”: check the user name.` : "Nobody has that user name.";
      }
      case "cannot_message_yourself":
        return "That is you: write to someone else.";
      case "invalid_members":
        return "A group is you and 2 to 7 other people, each named once.";
      case "direct_cannot_be_left":
        return "A direct conversation cannot be left; block the person instead.";
      case "block_not_found":
        return "They are not blocked any more.";
      case "cannot_block_yourself":
        return "You cannot block yourself.";
      case "not_a_room":
        return "Only a room can do that, not a conversation.";
      case "wrong_password":
        return "The current password is not right.";
      case "no_password":
        return "A guest account has no password to change.";
      case "session_not_found":
        return "That session has already ended.";
      case "not_found":
        // An endpoint this server does not have (yet): an older API than the page.
        return "The server cannot do that yet.";
      case "rate_limited":
        return `Too many attempts; try again in ${err.retryAfter ?? 60} seconds.`;
      case "network":
        return "Cannot reach the server; check your connection and try again.";
      default:
        return sentence(err.message);
    }
  }
  return sentence(err instanceof Error ? err.message : String(err));
}

/** A refusal for a block: the API's words, beginning with a capital only where they begin with "you". */
function blockedText(message: string): string {
  const text = message.trim().replace(/^you\b/, "You");
  if (!text) return "One of you blocked the other.";
  return /[.!?]$/.test(text) ? text : `${text}.`;
}

/** A person-readable reason for a failed search. */
export function describeSearch(err: unknown): string {
  return err instanceof ApiError ? searchRefusal(err.code, describe(err), err.retryAfter) : describe(err);
}

/** The API's messages are lower-case clauses ("the name 'ana' is already taken"): shown as a sentence. */
export function sentence(text: string): string {
  const trimmed = text.trim();
  if (!trimmed) return "Something went wrong; try again.";
  const capital = trimmed[0].toUpperCase() + trimmed.slice(1);
  return /[.!?]$/.test(capital) ? capital : `${capital}.`;
}
