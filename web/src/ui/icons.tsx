/** Small inline icons: drawn as SVG, so they look the same everywhere (no emoji font needed). */

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
