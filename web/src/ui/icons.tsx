/** Small inline icons: drawn as SVG, so they look the same everywhere (no emoji font needed). */

import type { RoomInfo } from "../natter/api";

/** A padlock, for private rooms; `label` names it for screen readers (omit where the text says it already). */
export function LockIcon({ label }: { label?: string }) {
  return (
    <svg
      class="icon"
      viewBox="0 0 16 16"
      width="14"
      height="14"
      role={label ? "img" : undefined}
      aria-label={label}
      aria-hidden={label ? undefined : true}
    >
      <path
        fill="currentColor"
        d="M4.5 7V5a3.5 3.5 0 0 1 7 0v2H12a1 1 0 0 1 1 1v6a1 1 0 0 1-1 1H4a1 1 0 0 1-1-1V8a1 1 0 0 1 1-1zm1.5 0h4V5a2 2 0 0 0-4 0z"
      />
    </svg>
  );
}

/** The room marker: a padlock for private rooms, a hash for public ones. */
export function RoomMark({ private: isPrivate }: { private: boolean }) {
  return isPrivate ? (
    <LockIcon label="private" />
  ) : (
    <span class="hash" aria-hidden="true">
      #
    </span>
  );
}

/** Two people, for group conversations. */
function GroupIcon() {
  return (
    <svg class="icon" viewBox="0 0 16 16" width="14" height="14" aria-hidden="true">
      <path
        fill="currentColor"
        d="M6 7.5a2.75 2.75 0 1 0 0-5.5 2.75 2.75 0 0 0 0 5.5zm5.75 0a2.25 2.25 0 1 0 0-4.5 2.25 2.25 0 0 0 0 4.5zM.5 14c0-2.5 2.4-4.5 5.5-4.5s5.5 2 5.5 4.5zm12 0c0-1.5-.6-2.9-1.6-3.9.3-.1.6-.1.9-.1 2.3 0 3.7 1.6 3.7 4z"
      />
    </svg>
  );
}

/**
 * What a room is, before its name: a hash or a padlock for a room, two people for a group, and for a direct
 * conversation a dot, filled while the other person is online (said in words beside it where it matters).
 */
export function Mark({ room, online }: { room: RoomInfo; online?: boolean }) {
  if (room.kind === "direct") return <span class={online ? "presence online" : "presence"} aria-hidden="true" />;
  if (room.kind === "group") return <GroupIcon />;
  return <RoomMark private={room.private} />;
}

/** A magnifying glass, for the search button (named by the button). */
export function SearchIcon() {
  return (
    <svg class="icon" viewBox="0 0 16 16" width="16" height="16" aria-hidden="true">
      <path
        fill="currentColor"
        d="M6.75 1.5a5.25 5.25 0 0 1 4.2 8.4l3.58 3.57a.75.75 0 1 1-1.06 1.06l-3.57-3.58A5.25 5.25 0 1 1 6.75 1.5zm0 1.5a3.75 3.75 0 1 0 0 7.5 3.75 3.75 0 0 0 0-7.5z"
      />
    </svg>
  );
}
