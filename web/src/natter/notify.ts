/**
 * When a message that arrived is worth a system notification, and what it says. No DOM: the page decides whether
 * it may show one (the permission) and shows it.
 */

import type { RoomKind } from "./api";

/** What is known about a message that arrived, for deciding. */
export interface NotifyCase {
  /** Whether the page is hidden (another tab, minimised). */
  hidden: boolean;
  /** The room's kind (absent: a room). */
  kind?: RoomKind;
  /** Whether the user muted the room. */
  muted: boolean;
  /** Whether the message mentions the user. */
  mentionsMe: boolean;
  /** Whether the user wrote it (on another device). */
  mine?: boolean;
}

/**
 * Whether to notify: only while the page is hidden, never for the user's own messages; a message mentioning the
 * user always; any message in a direct or group conversation unless it is muted.
 */
export function shouldNotify(c: NotifyCase): boolean {
  if (!c.hidden || c.mine) return false;
  if (c.mentionsMe) return true;
  if (c.muted) return false;
  return c.kind === "direct" || c.kind === "group";
}

/** A notification's title, text and tag (one per room: a newer one replaces the one before). */
export function notificationText(
  arrival: { room: string; roomName: string; kind?: RoomKind; user: { name: string }; body: string; mentionsMe: boolean },
  maxBody = 160,
): { title: string; body: string; tag: string } {
  const title =
    arrival.kind === "direct"
      ? arrival.user.name
      : arrival.mentionsMe
        ? `${arrival.user.name} mentioned you in ${arrival.roomName}`
        : `${arrival.user.name} in ${arrival.roomName}`;
  const chars = [...arrival.body];
  const body = chars.length > maxBody ? `${chars.slice(0, maxBody - 1).join("")}…` : arrival.body;
  return { title, body, tag: `natter:${arrival.room}` };
}
