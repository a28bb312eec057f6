/**
 * One message of the open room, with what a person can do to it: reply, react, edit and delete (their own; the
 * room's owner and moderators delete any), each a keyboard-reachable button with an accessible name. It shows the
 * message as the room's changes left it (edited, deleted, its reactions), the quote of what it answers, and the
 * state of the person's own message or changes still on their way.
 */

import { useEffect, useRef, useState } from "preact/hooks";

import { mentionsUser, moderates, type NatterClient, type RoomView } from "../natter/client";
import { changeRefusal } from "../natter/errors";
import type { ChatMessage, PendingMessage, TimelineItem } from "../natter/timeline";
import { MentionText } from "./Mentions";

/** The reactions offered first; any single emoji can be typed too. */
export const PALETTE = ["👍", "❤️", "😂", "🎉", "😮", "😢"];

/** Longest message the gateway takes, in characters. */
export const MAX_BODY = 4000;

export function Message({
  item,
  previous,
  newestSent,
  client,
  room,
  onReply,
  onJump,
}: {
  item: TimelineItem;
  previous?: TimelineItem;
  newestSent: boolean;
  client: NatterClient;
  room: RoomView;
  /** The person chose to answer this message. */
  onReply: (seq: number) => void;
  /** The person clicked the quote of the message `seq` this one answers. */
  onJump: (seq: number) => void;
}) {
  const m = item.message;
  const mine = item.kind === "pending" || item.mine;
  const stored = item.kind === "message" ? item.message : undefined;
  const deleted = stored?.deleted !== undefined;
  // Consecutive messages of one author within five minutes share a header.
  const continued =
    previous !== undefined &&
    previous.message.user.id === m.user.id &&
    Date.parse(m.ts) - Date.parse(previous.message.ts) < 5 * 60_000;
  const [editing, setEditing] = useState(false);
  const [confirming, setConfirming] = useState(false);
  const [picking, setPicking] = useState(false);
  const self = useRef<HTMLLIElement>(null);
  /** Focus goes back to the message when what an action opened closes (its button may be gone). */
  const back = () => setTimeout(() => self.current?.focus(), 0);
  const canDelete = stored !== undefined && !deleted && (mine || moderates(room.role)) && !room.ended;
  const canAct = stored !== undefined && !deleted && !room.ended;
  const mentionsMe = !deleted && mentionsUser(stored?.mentions, client.me.id);

  return (
    <li
      class={`message${mine ? " mine" : ""}${continued ? " continued" : ""}${item.kind === "pending" ? ` ${item.message.state}` : ""}${deleted ? " deleted" : ""}${mentionsMe ? " mentions-me" : ""}`}
      data-key={item.key}
      data-seq={stored?.seq}
      tabIndex={-1}
      ref={self}
    >
      {!continued && (
        <div class="meta">
          <span class="author">{m.user.name}</span>{" "}
          <time class="time" dateTime={m.ts}>
            {formatTime(m.ts)}
          </time>
          {mentionsMe && <span class="sr-only"> (mentions you)</span>}
        </div>
      )}
      {m.replyTo !== undefined && <Quote room={room} seq={m.replyTo} onJump={onJump} />}
      {deleted ? (
        <p class="body gone">Message deleted</p>
      ) : editing && stored ? (
        <EditForm
          initial={stored.body}
          onSave={(body) => {
            if (body !== stored.body) client.edit(room.info.id, stored.seq, body);
            setEditing(false);
            back();
          }}
          onCancel={() => {
            setEditing(false);
            back();
          }}
        />
      ) : (
        <p class="body">
          <MentionText text={m.body} mentions={stored?.mentions} me={client.me.id} />
          {mentionsMe && continued && <span class="sr-only"> (mentions you)</span>}
          {stored?.edited && <span class="edited"> (edited)</span>}
        </p>
      )}
      {stored && !deleted && <Reactions client={client} room={room} message={stored} />}
      {canAct && !editing && (
        <div class="actions" role="group" aria-label={`Actions on ${m.user.name}'s message`}>
          <button type="button" aria-label="Reply" title="Reply" onClick={() => onReply(stored.seq)}>
            ↩
          </button>
          <button
            type="button"
            aria-label="React"
            title="React"
            aria-expanded={picking}
            onClick={() => setPicking(!picking)}
          >
            ☺
          </button>
          {mine && (
            <button type="button" aria-label="Edit message" title="Edit" onClick={() => setEditing(true)}>
              ✎
            </button>
          )}
          {canDelete && (
            <button type="button" aria-label="Delete message" title="Delete" onClick={() => setConfirming(true)}>
              🗑
            </button>
          )}
        </div>
      )}
      {picking && stored && (
        <Palette
          onPick={(emoji) => {
            const users = stored.reactions.get(emoji) ?? [];
            client.react(room.info.id, stored.seq, emoji, !users.includes(client.me.id));
            setPicking(false);
            back();
          }}
          onClose={() => {
            setPicking(false);
            back();
          }}
        />
      )}
      {confirming && stored && (
        <span class="confirm" role="group" aria-label="Confirm deleting the message">
          Delete this message for everyone?{" "}
          <button
            type="button"
            class="danger"
            onClick={() => {
              client.deleteMessage(room.info.id, stored.seq);
              setConfirming(false);
              back();
            }}
          >
            Delete
          </button>{" "}
          <button
            type="button"
            class="link"
            onClick={() => {
              setConfirming(false);
              back();
            }}
          >
            Cancel
          </button>
        </span>
      )}
      <Status item={item} newestSent={newestSent} client={client} room={room} />
    </li>
  );
}

/** The message a reply answers: its author and first line; a click goes to it. */
function Quote({ room, seq, onJump }: { room: RoomView; seq: number; onJump: (seq: number) => void }) {
  const original = room.timeline.message(seq);
  if (original?.deleted) return <p class="quote gone">Reply to a deleted message</p>;
  const firstLine = original?.body.split("\n", 1)[0] ?? "";
  return (
    <button
      type="button"
      class="quote"
      aria-label={original ? `Replying to ${original.user.name}: ${firstLine}. Go to the message` : "Go to the message this answers"}
      onClick={() => onJump(seq)}
    >
      {original ? (
        <>
          <span class="author">{original.user.name}</span> <span class="snippet">{firstLine}</span>
        </>
      ) : (
        "Reply to an earlier message"
      )}
    </button>
  );
}

/** A message's reactions: each emoji with its count, pressed when the person is among them; a click toggles. */
function Reactions({ client, room, message }: { client: NatterClient; room: RoomView; message: ChatMessage }) {
  if (message.reactions.size === 0) return null;
  return (
    <ul class="reactions" aria-label="Reactions">
      {[...message.reactions].map(([emoji, users]) => {
        const me = users.includes(client.me.id);
        return (
          <li key={emoji}>
            <button
              type="button"
              class={me ? "reaction me" : "reaction"}
              aria-pressed={me}
              aria-label={`${emoji} ${users.length}`}
              title={me ? "Take back your reaction" : "React too"}
              disabled={room.ended !== undefined}
              onClick={() => client.react(room.info.id, message.seq, emoji, !me)}
            >
              {emoji} {users.length}
            </button>
          </li>
        );
      })}
    </ul>
  );
}

/** The reaction palette, and a field for any other emoji. */
function Palette({ onPick, onClose }: { onPick: (emoji: string) => void; onClose: () => void }) {
  const [other, setOther] = useState("");
  const first = useRef<HTMLButtonElement>(null);
  useEffect(() => first.current?.focus(), []);
  return (
    <div
      class="palette"
      role="group"
      aria-label="Pick a reaction"
      onKeyDown={(e) => {
        if (e.key === "Escape") onClose();
      }}
    >
      {PALETTE.map((emoji, i) => (
        <button key={emoji} ref={i === 0 ? first : undefined} type="button" aria-label={`React with ${emoji}`} onClick={() => onPick(emoji)}>
          {emoji}
        </button>
      ))}
      <form
        onSubmit={(e) => {
          e.preventDefault();
          if (other.trim()) onPick(other.trim());
        }}
      >
        <input aria-label="Any emoji" placeholder="🙂" size={3} maxLength={64} value={other} onInput={(e) => setOther(e.currentTarget.value)} />
      </form>
    </div>
  );
}

function EditForm({ initial, onSave, onCancel }: { initial: string; onSave: (body: string) => void; onCancel: () => void }) {
  const [text, setText] = useState(initial);
  const input = useRef<HTMLTextAreaElement>(null);
  useEffect(() => {
    input.current?.focus();
  }, []);
  const length = [...text].length;
  const save = (e?: Event) => {
    e?.preventDefault();
    if (!text.trim() || length > MAX_BODY) return;
    onSave(text.trim());
  };
  return (
    <form class="edit" onSubmit={save} aria-label="Edit the message">
      <textarea
        ref={input}
        rows={2}
        aria-label="New text"
        value={text}
        onInput={(e) => setText(e.currentTarget.value)}
        onKeyDown={(e) => {
          if (e.key === "Enter" && !e.shiftKey && !e.isComposing) save(e);
          if (e.key === "Escape") onCancel();
        }}
      />
      <button type="submit" class="primary" disabled={!text.trim() || length > MAX_BODY}>
        Save
      </button>{" "}
      <button type="button" class="link" onClick={onCancel}>
        Cancel
      </button>
    </form>
  );
}

/** Where the person's own message, or their changes to a message, stand. */
function Status({
  item,
  newestSent,
  client,
  room,
}: {
  item: TimelineItem;
  newestSent: boolean;
  client: NatterClient;
  room: RoomView;
}) {
  if (item.kind === "message") {
    const failed = item.changes.find((c) => c.state === "failed");
    if (failed) return <ChangeFailed change={failed} client={client} room={room} />;
    if (item.changes.some((c) => c.state !== "failed")) return <span class="state">Saving…</span>;
    return newestSent ? <span class="state">Sent</span> : null;
  }
  const p = item.message;
  if (p.state === "failed" && p.unconfirmed) {
    // The server may have stored it: not "failed", and a retry cannot make a duplicate.
    return (
      <span class="state failed">
        Not confirmed: it may still arrive.{" "}
        <button
          type="button"
          class="link"
          title="Sends it again; it is stored at most once"
          onClick={() => client.retry(room.info.id, p.id)}
        >
          Retry
        </button>
      </span>
    );
  }
  if (p.state === "failed") {
    return (
      <span class="state failed">
        Failed{p.error ? `: ${p.error}` : ""}{" "}
        <button type="button" class="link" onClick={() => client.retry(room.info.id, p.id)}>
          Retry
        </button>
      </span>
    );
  }
  if (p.state === "sending") return <span class="state">Sending…</span>;
  return newestSent ? <span class="state">Sent</span> : null;
}

function ChangeFailed({ change, client, room }: { change: PendingMessage; client: NatterClient; room: RoomView }) {
  const what = change.change?.kind === "delete" ? "Not deleted" : change.change?.kind === "react" ? "Reaction not saved" : "Edit not saved";
  return (
    <span class="state failed" role="status">
      {what}: {changeRefusal(change.errorCode ?? "", change.error ?? "no answer from the server")}{" "}
      <button type="button" class="link" onClick={() => client.retry(room.info.id, change.id)}>
        Retry
      </button>{" "}
      <button type="button" class="link" onClick={() => client.dismiss(room.info.id, change.id)}>
        Dismiss
      </button>
    </span>
  );
}

/** Web addresses in a message, made into links; everything else stays plain text. */
const URL_PATTERN = /\bhttps?:\/\/[^\s<>"']+[^\s<>"'.,;:!?)\]]/g;

export function Linked({ text }: { text: string }) {
  const parts: preact.ComponentChild[] = [];
  let last = 0;
  for (const match of text.matchAll(URL_PATTERN)) {
    const at = match.index ?? 0;
    if (at > last) parts.push(text.slice(last, at));
    // Only http(s) can match, so no other scheme (javascript:, data:) ever becomes a link.
    parts.push(
      <a href={match[0]} target="_blank" rel="noopener noreferrer nofollow">
        {match[0]}
      </a>,
    );
    last = at + match[0].length;
  }
  if (last === 0) return <>{text}</>;
  if (last < text.length) parts.push(text.slice(last));
  return <>{parts}</>;
}

export function formatTime(ts: string): string {
  const date = new Date(ts);
  if (Number.isNaN(date.getTime())) return "";
  const time = date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  const today = new Date();
  if (date.toDateString() === today.toDateString()) return time;
  return `${date.toLocaleDateString([], { month: "short", day: "numeric" })} ${time}`;
}
