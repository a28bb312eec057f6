/**
 * Mentions: a message's `@name`s shown marked, the `@` picker of the composer, the room's mute switch, the
 * sidebar's mention badge and link, the page of messages mentioning the user, and system notifications (asked for
 * by a button, shown while the page is hidden).
 */

import type { JSX } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";

import type { MentionHit, Member } from "../natter/api";
import {
  insertMention,
  mentionCandidates,
  mentionPieces,
  mentionQuery,
  type NatterClient,
  type RoomView,
} from "../natter/client";
import type { UserRef } from "../natter/frames";
import { notificationText, shouldNotify } from "../natter/notify";
import { describe } from "./errors";
import { Mark, RoomMark } from "./icons";
import { formatTime, Linked } from "./Message";
import { navigate } from "./router";

/** A message's text, the `@name`s of the users it mentions marked (the user's own more strongly). */
export function MentionText({ text, mentions, me }: { text: string; mentions?: UserRef[]; me: string }) {
  if (!mentions?.length) return <Linked text={text} />;
  return (
    <>
      {mentionPieces(text, mentions).map((piece, i) =>
        piece.user ? (
          <span key={i} class={piece.user.id === me ? "mention me" : "mention"}>
            {piece.text}
          </span>
        ) : (
          <Linked key={i} text={piece.text} />
        ),
      )}
    </>
  );
}

/** The members offered by the `@` picker: read once per room when first needed. */
const memberCache = new Map<string, UserRef[]>();

/**
 * The composer's `@` picker: typing `@` at the start of a word lists the room's members whose names match what
 * follows (arrows move, Enter or Tab picks, Escape closes), and picking one puts `@name ` in the text.
 */
export function useMentionPicker(
  client: NatterClient,
  room: RoomView,
  text: string,
  setText: (text: string) => void,
  input: { current: HTMLTextAreaElement | null },
) {
  const [at, setAt] = useState<{ start: number; query: string; caret: number }>();
  const [active, setActive] = useState(0);
  const [members, setMembers] = useState<UserRef[]>(() => memberCache.get(room.info.id) ?? []);
  const id = room.info.id;
  useEffect(() => {
    setAt(undefined);
    setMembers(memberCache.get(id) ?? []);
  }, [id]);
  useEffect(() => {
    if (!at || memberCache.has(id)) return;
    let current = true;
    client.members(id).then(
      (list: Member[]) => {
        const users = list.map((m) => ({ id: m.id, name: m.name }));
        memberCache.set(id, users);
        if (current) setMembers(users);
      },
      () => undefined,
    );
    return () => {
      current = false;
    };
  }, [at !== undefined, id]);

  // Whoever is online counts too (a member who joined since the list was read).
  const known = [...members, ...room.online.filter((u) => !members.some((m) => m.id === u.id))];
  const options = at ? mentionCandidates(known, at.query, client.me.id) : [];
  const open = at !== undefined && options.length > 0;
  const listId = `mention-options-${id}`;

  const update = (value: string, caret: number | null) => {
    const found = caret === null ? undefined : mentionQuery(value, caret);
    setAt(found && { ...found, caret: caret ?? value.length });
    setActive(0);
  };

  const pick = (user: UserRef) => {
    if (!at) return;
    const next = insertMention(text, at.start, at.caret, user.name);
    setText(next.text);
    client.setDraft(id, next.text);
    setAt(undefined);
    setTimeout(() => {
      const el = input.current;
      if (!el) return;
      el.focus();
      el.setSelectionRange(next.caret, next.caret);
    }, 0);
  };

  /** Handles a key for the picker; whether it did (the composer then does nothing more with it). */
  const keyDown = (e: JSX.TargetedKeyboardEvent<HTMLTextAreaElement>): boolean => {
    if (!open) return false;
    if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      e.preventDefault();
      const step = e.key === "ArrowDown" ? 1 : -1;
      setActive((i) => (i + step + options.length) % options.length);
      return true;
    }
    if ((e.key === "Enter" && !e.shiftKey && !e.isComposing) || e.key === "Tab") {
      e.preventDefault();
      pick(options[Math.min(active, options.length - 1)]);
      return true;
    }
    if (e.key === "Escape") {
      e.preventDefault();
      setAt(undefined);
      return true;
    }
    return false;
  };

  // The text stays a textbox (a combobox role would hide it as one); the list it controls is named here.
  const inputProps = {
    "aria-autocomplete": "list" as const,
    "aria-controls": open ? listId : undefined,
    "aria-activedescendant": open ? `${listId}-${Math.min(active, options.length - 1)}` : undefined,
  };

  const list = open ? (
    <ul id={listId} class="mention-options" role="listbox" aria-label="Mention someone">
      {options.map((user, i) => (
        <li
          key={user.id}
          id={`${listId}-${i}`}
          role="option"
          aria-selected={i === Math.min(active, options.length - 1)}
          class={i === Math.min(active, options.length - 1) ? "active" : undefined}
          onMouseDown={(e) => {
            // Keeps the focus in the text while picking.
            e.preventDefault();
            pick(user);
          }}
        >
          @{user.name}
        </li>
      ))}
    </ul>
  ) : null;

  return { update, keyDown, inputProps, list, close: () => setAt(undefined) };
}

/** The open room's switch between muted and not. */
export function MuteButton({ client, room, onError }: { client: NatterClient; room: RoomView; onError: (text: string) => void }) {
  const [busy, setBusy] = useState(false);
  if (!room.info.joined || room.ended) return null;
  return (
    <button
      type="button"
      aria-pressed={room.muted}
      disabled={busy}
      title={room.muted ? "Unread messages and notifications are back" : "No unread count or notification, except when you are mentioned"}
      onClick={() => {
        setBusy(true);
        client
          .setMuted(room.info.id, !room.muted)
          .catch((err) => onError(describe(err)))
          .finally(() => setBusy(false));
      }}
    >
      {room.muted ? "Unmute" : "Mute"}
    </button>
  );
}

/** A room link's muted mark and mention badge. */
export function MentionBadge({ room }: { room: RoomView }) {
  const count = room.mentions > 99 ? "99+" : String(room.mentions);
  return (
    <>
      {room.muted && (
        <span class="muted-mark" title="Muted" role="img" aria-label="muted">
          <MutedIcon />
        </span>
      )}
      {room.mentions > 0 && (
        <span class="badge mention-badge" aria-label={`${count} mention${room.mentions === 1 ? "" : "s"}`}>
          @{count}
        </span>
      )}
    </>
  );
}

function MutedIcon() {
  return (
    <svg viewBox="0 0 16 16" width="14" height="14" aria-hidden="true" focusable="false">
      <path
        fill="currentColor"
        d="M8 1.5a4 4 0 0 0-4 4v2.7L2.6 10.6a.7.7 0 0 0 .6 1.1h9.6a.7.7 0 0 0 .6-1.1L12 8.2V5.5a4 4 0 0 0-4-4Zm-1.8 11.2a1.9 1.9 0 0 0 3.6 0Z"
      />
      <path stroke="currentColor" stroke-width="1.6" stroke-linecap="round" d="M2 2l12 12" />
    </svg>
  );
}

/** The sidebar's link to the messages mentioning the user, with how many are unread. */
export function MentionsLink({ client, current }: { client: NatterClient; current: boolean }) {
  const unread = client.roomList().reduce((sum, room) => sum + room.mentions, 0);
  return (
    <nav class="mentions-nav" aria-label="Mentions">
      <a
        href="/mentions"
        class={current ? "room-link open" : "room-link"}
        aria-current={current ? "page" : undefined}
        onClick={(event) => {
          if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
          event.preventDefault();
          navigate({ mentions: true });
        }}
      >
        <span class="room-name">
          <span class="mark" aria-hidden="true">
            @
          </span>{" "}
          Mentions
        </span>
        {unread > 0 && (
          <span class="badge mention-badge" aria-label={`${unread} unread`}>
            @{unread > 99 ? "99+" : unread}
          </span>
        )}
      </a>
    </nav>
  );
}

/** Mentions asked for at a time. */
const PAGE = 20;

/** The messages mentioning the user, newest first, each opening its room at it. */
export function MentionsPage({ client }: { client: NatterClient }) {
  const [hits, setHits] = useState<MentionHit[]>();
  const [hasMore, setHasMore] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string>();
  const alive = useRef(true);

  const ask = async (previous: MentionHit[]) => {
    setBusy(true);
    setError(undefined);
    try {
      const last = previous[previous.length - 1];
      const page = await client.mentionsPage(last?.seq, PAGE);
      if (!alive.current) return;
      const seen = new Set(previous.map((hit) => `${hit.room}/${hit.seq}`));
      setHits([...previous, ...page.mentions.filter((hit) => !seen.has(`${hit.room}/${hit.seq}`))]);
      setHasMore(page.has_more);
    } catch (err) {
      if (alive.current) setError(`Cannot list your mentions: ${describe(err)}`);
    } finally {
      if (alive.current) setBusy(false);
    }
  };

  useEffect(() => {
    alive.current = true;
    void ask([]);
    return () => {
      alive.current = false;
    };
  }, []);

  return (
    <section class="search mentions-page" aria-labelledby="mentions-title">
      <header class="room-head">
        <button type="button" class="back" aria-label="Back to rooms" onClick={() => navigate({})}>
          ‹
        </button>
        <div class="room-title">
          <h2 id="mentions-title">Mentions</h2>
          <p class="room-meta" aria-live="polite">
            {busy && !hits ? "Loading…" : hits?.length ? `Messages that mention you` : ""}
          </p>
        </div>
      </header>
      <div class="results-wrap">
        {error && (
          <p class="error search-error" role="alert">
            {error}
          </p>
        )}
        {hits && !hits.length && !error && <p class="empty-results">Nobody has mentioned you yet.</p>}
        {hits && hits.length > 0 && (
          <ol class="results" aria-label="Messages that mention you">
            {hits.map((hit) => {
              const room = client.room(hit.room)?.info;
              return (
                <li key={`${hit.room}/${hit.seq}`}>
                  <a
                    class="result"
                    href={`/r/${hit.room}?m=${hit.seq}`}
                    onClick={(event) => {
                      if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
                      event.preventDefault();
                      navigate({ room: hit.room, seq: hit.seq });
                    }}
                  >
                    <span class="result-meta">
                      <span class="result-room">
                        {room ? <Mark room={room} /> : <RoomMark private={false} />}{" "}
                        {(room?.kind === "direct" ? room.name : hit.room_name) || hit.room}
                      </span>
                      <span class="author">{hit.user.name}</span>
                      <time dateTime={hit.ts}>{formatTime(hit.ts)}</time>
                    </span>
                    <span class="result-body">
                      {mentionPieces(hit.body, [client.me]).map((piece, i) =>
                        piece.user ? (
                          <span key={i} class="mention me">
                            {piece.text}
                          </span>
                        ) : (
                          piece.text
                        ),
                      )}
                    </span>
                  </a>
                </li>
              );
            })}
          </ol>
        )}
        {hasMore && hits && (
          <button type="button" class="more" disabled={busy} onClick={() => void ask(hits)}>
            {busy ? "Loading…" : "Load more"}
          </button>
        )}
      </div>
    </section>
  );
}

/** A message older than this when it arrives (replayed after a reconnect) shows no notification. */
const STALE_MS = 5 * 60_000;

/** Whether this browser has notifications at all. */
function supported(): boolean {
  return typeof window !== "undefined" && "Notification" in window;
}

/**
 * Shows a system notification, while the page is hidden, for a message mentioning the user or any message in a
 * direct or group conversation (none for a muted room, but for a mention). Clicking it brings the page forward at
 * the message.
 */
export function useNotifications(client: NatterClient): void {
  useEffect(
    () =>
      client.onArrival((arrival) => {
        if (!supported() || Notification.permission !== "granted") return;
        // Messages replayed after a long time offline are old news.
        if (Date.now() - Date.parse(arrival.ts) > STALE_MS) return;
        const hidden = document.visibilityState === "hidden";
        if (!shouldNotify({ hidden, kind: arrival.kind, muted: arrival.muted, mentionsMe: arrival.mentionsMe })) return;
        const { title, body, tag } = notificationText(arrival);
        try {
          const shown = new Notification(title, { body, tag });
          shown.onclick = () => {
            window.focus();
            navigate({ room: arrival.room, seq: arrival.seq });
            shown.close();
          };
        } catch {
          // Some browsers take notifications from a service worker only: none then.
        }
      }),
    [client],
  );
}

/** The button that asks for the permission to notify (a click: browsers refuse to ask otherwise). */
export function NotificationsButton() {
  const [permission, setPermission] = useState(() => (supported() ? Notification.permission : "denied"));
  if (!supported() || permission === "granted") return null;
  if (permission === "denied") return null;
  return (
    <button
      type="button"
      class="link"
      onClick={() => {
        void Promise.resolve(Notification.requestPermission()).then(
          (answer) => setPermission(answer),
          () => undefined,
        );
      }}
    >
      Enable notifications
    </button>
  );
}
