/**
 * An open room or conversation: its header (invite, members, leave, delete; a direct conversation's block, a
 * group's leave), its members (a *Message* button beside each other member; in a room, the owner appoints
 * moderators, and the owner and moderators remove and ban members, and lift bans), who is online, the messages,
 * live drafts and the composer (or why there is none: out of the room, a conversation closed by a block).
 */

import { useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";

import { ApiError, type Ban, type Member } from "../natter/api";
import { inviteCode, memberActions, moderates, type NatterClient, peerOnline, type RoomView } from "../natter/client";
import { describe } from "./errors";
import { Mark } from "./icons";
import { MuteButton, useMentionPicker } from "./Mentions";
import { MAX_BODY, Message } from "./Message";
import { navigate } from "./router";

/** Most messages in the DOM at once: a room with thousands stays fast. */
export const WINDOW = 150;
/** How far the window moves when the person scrolls past its edge. */
const STEP = 50;

export function RoomPane({
  client,
  room,
  onError,
  jump,
  onJumped,
}: {
  client: NatterClient;
  room: RoomView;
  onError: (text: string) => void;
  /** A message to bring into view and highlight once the room shows (a search result's seq). */
  jump?: number;
  /** The jump is done: whether the message was found. */
  onJumped?: (found: boolean) => void;
}) {
  const [showInvite, setShowInvite] = useState(false);
  /** An action asked to be confirmed: deleting the room, leaving the group, blocking the other person. */
  const [confirm, setConfirm] = useState<"delete" | "leave" | "block">();
  const [showPeople, setShowPeople] = useState(false);
  const [showMembers, setShowMembers] = useState(false);
  /** The message the person is answering, if any. */
  const [replyTo, setReplyTo] = useState<number | undefined>(undefined);
  const me = client.me;
  const kind = room.info.kind ?? "room";
  const peer = room.info.peer;
  const online = peerOnline(room);
  /** The user blocks the other person of this direct conversation. */
  const blocking = !!peer && client.blocked(peer.id);
  // A room the user was taken out of offers nothing but a way back; a conversation has no owner's powers.
  const owner = kind === "room" && room.info.owner_id === me.id && !room.ended;
  const code = kind === "room" ? inviteCode(room.info) : undefined;
  useEffect(() => {
    setShowInvite(false);
    setConfirm(undefined);
    setShowMembers(false);
    setReplyTo(undefined);
  }, [room.info.id]);

  const act = async (work: () => Promise<unknown>, after?: () => void) => {
    try {
      await work();
      after?.();
    } catch (err) {
      onError(describe(err));
    }
  };

  return (
    <section class="room" aria-labelledby="room-title">
      <header class="room-head">
        <button type="button" class="back" aria-label="Back to rooms" onClick={() => navigate({})}>
          ‹
        </button>
        <div class="room-title">
          <h2 id="room-title">
            <Mark room={room.info} online={online} /> {room.info.name}
          </h2>
          <p class="room-meta">
            <span>{kind === "room" ? (room.info.private ? "Private" : "Public") : KIND_NAMES[kind]}</span>
            {kind === "direct" ? (
              <span>{room.ended ? "Closed" : online ? "Online" : "Offline"}</span>
            ) : (
              <>
                <span>
                  {room.ended ? (
                    members(room.info.member_count)
                  ) : (
                    <button
                      type="button"
                      class="link"
                      aria-expanded={showMembers}
                      aria-controls="member-list"
                      onClick={() => setShowMembers(!showMembers)}
                    >
                      {members(room.info.member_count)}
                    </button>
                  )}
                </span>
                <span>
                  <button
                    type="button"
                    class="link"
                    aria-expanded={showPeople}
                    aria-controls="online-list"
                    onClick={() => setShowPeople(!showPeople)}
                  >
                    {room.online.length} online
                  </button>
                </span>
              </>
            )}
          </p>
        </div>
        <div class="room-actions">
          <MuteButton client={client} room={room} onError={onError} />
          {owner && code && (
            <button type="button" aria-expanded={showInvite} onClick={() => setShowInvite(!showInvite)}>
              Invite
            </button>
          )}
          {kind === "room" && room.info.joined && !owner && !room.ended && (
            <button type="button" onClick={() => act(() => client.leave(room.info.id), () => navigate({}))}>
              Leave room
            </button>
          )}
          {confirm ? (
            <span class="confirm" role="group" aria-label={`Confirm ${CONFIRMING[confirm]}`}>
              {confirm === "block" && peer && (
                <span class="confirm-text">Block {peer.name}? Neither of you can write here until you unblock them.</span>
              )}
              <button
                type="button"
                class="danger"
                onClick={() =>
                  confirm === "block"
                    ? act(() => client.block(peer?.id ?? ""), () => setConfirm(undefined))
                    : act(
                        () => (confirm === "delete" ? client.remove(room.info.id) : client.leave(room.info.id)),
                        () => navigate({}),
                      )
                }
              >
                {confirm === "delete" ? "Delete for everyone" : confirm === "leave" ? "Leave for good" : "Block"}
              </button>
              <button type="button" onClick={() => setConfirm(undefined)}>
                Cancel
              </button>
            </span>
          ) : owner ? (
            <button type="button" class="danger" onClick={() => setConfirm("delete")}>
              Delete room
            </button>
          ) : kind === "group" && room.info.joined && !room.ended ? (
            <button type="button" onClick={() => setConfirm("leave")}>
              Leave group
            </button>
          ) : (
            kind === "direct" &&
            peer &&
            !blocking && (
              <button type="button" class="danger" onClick={() => setConfirm("block")}>
                Block
              </button>
            )
          )}
        </div>
      </header>
      {showInvite && code && <InvitePanel client={client} roomId={room.info.id} code={code} />}
      {showMembers && !room.ended && (
        <MembersPanel client={client} room={room} onClose={() => setShowMembers(false)} />
      )}
      {room.notice && !room.ended && <p class="notice">{room.notice}</p>}
      <div class="room-body">
        <MessageList client={client} room={room} onReply={setReplyTo} jump={jump} onJumped={onJumped} />
        <aside id="online-list" class={showPeople ? "people shown" : "people"} aria-label={`Online in ${room.info.name}`}>
          <h3>Online</h3>
          <button type="button" class="close-people" aria-label="Close the online list" onClick={() => setShowPeople(false)}>
            ×
          </button>
          <ul>
            {room.online.map((u) => (
              <li key={u.id}>
                <span class="dot" aria-hidden="true" />
                {u.name}
                {u.id === me.id ? " (you)" : ""}
              </li>
            ))}
          </ul>
        </aside>
      </div>
      {room.ended === "blocked" ? (
        <div class="composer ended-bar">
          {blocking && peer ? (
            <>
              <p aria-live="polite">You blocked {peer.name}.</p>
              <button type="button" class="primary" onClick={() => act(() => client.unblock(peer.id))}>
                Unblock
              </button>
            </>
          ) : (
            <p aria-live="polite">This conversation is closed.</p>
          )}
        </div>
      ) : room.ended ? (
        <div class="composer ended-bar">
          <p aria-live="polite">{room.notice}</p>
          {room.ended === "member_left" && !room.info.private && (
            <button type="button" onClick={() => act(() => client.join(room.info.id))}>
              Join again
            </button>
          )}
          <button type="button" class="primary" onClick={() => navigate({})}>
            Back to rooms
          </button>
        </div>
      ) : room.info.joined ? (
        <Composer client={client} room={room} replyTo={replyTo} onReplyDone={() => setReplyTo(undefined)} />
      ) : (
        <div class="composer join-bar">
          <p>You are previewing this public room.</p>
          <button type="button" class="primary" onClick={() => act(() => client.join(room.info.id))}>
            Join room
          </button>
        </div>
      )}
    </section>
  );
}

/** What each confirmation is about, for its group's name. */
const CONFIRMING = { delete: "deletion", leave: "leaving the group", block: "blocking" };

/** What a conversation is called in its header. */
const KIND_NAMES: Record<string, string> = { direct: "Direct message", group: "Group" };

function members(count: number): string {
  return `${count} member${count === 1 ? "" : "s"}`;
}

/** What the member list asks to be confirmed: removing or banning one member. */
interface Confirming {
  id: string;
  act: "remove" | "ban";
}

/** How a member's role reads beside their name (a plain member's says nothing). */
const ROLE_NAMES: Record<string, string> = { owner: "owner", moderator: "moderator" };

/**
 * The room's members from the API, each with their role. Beside every other member the owner has *Make moderator*
 * (or *Remove moderator*), *Remove* and *Ban*; a moderator has *Remove* and *Ban* beside plain members. Removing
 * and banning are confirmed first. Below, for the owner and moderators, the users banned from the room.
 */
function MembersPanel({ client, room, onClose }: { client: NatterClient; room: RoomView; onClose: () => void }) {
  const [list, setList] = useState<Member[]>();
  const [error, setError] = useState<string>();
  const [confirming, setConfirming] = useState<Confirming>();
  const [busy, setBusy] = useState(false);
  /** Bans made here: the ban list is read again after each. */
  const [banned, setBanned] = useState(0);
  const me = client.me;
  const id = room.info.id;
  // Nobody moderates a conversation.
  const conversation = room.info.kind === "group" || room.info.kind === "direct";
  const moderator = !conversation && moderates(room.role);

  // Read again when the count moves (someone joined, left, was removed or banned).
  useEffect(() => {
    let current = true;
    client.members(id).then(
      (members) => current && setList(members),
      (err) => current && setError(`Cannot list the members: ${describe(err)}`),
    );
    return () => {
      current = false;
    };
  }, [id, room.info.member_count]);

  /** Does `work`; a refusal is said in the list as "Could not `what`: why". */
  const run = async (what: string, work: () => Promise<void>) => {
    setBusy(true);
    setError(undefined);
    try {
      await work();
      setConfirming(undefined);
    } catch (err) {
      setError(`Could not ${what}: ${describe(err)}`);
    } finally {
      setBusy(false);
    }
  };
  const without = (member: Member) => setList((members) => members?.filter((m) => m.id !== member.id));

  const remove = (member: Member) =>
    run(`remove ${member.name}`, async () => {
      await client.removeMember(id, member.id);
      without(member);
    });
  const ban = (member: Member) =>
    run(`ban ${member.name}`, async () => {
      await client.ban(id, member.id);
      without(member);
      setBanned((n) => n + 1);
    });
  const setRole = (member: Member, role: "moderator" | "member") =>
    run(role === "moderator" ? `make ${member.name} a moderator` : `remove ${member.name} as moderator`, async () => {
      const changed = await client.setRole(id, member.id, role);
      setList((members) => members?.map((m) => (m.id === changed.id ? { ...m, role: changed.role } : m)));
    });
  const write = (member: Member) =>
    run(`write to ${member.name}`, async () => {
      const conversation = await client.startDirect(member.name);
      navigate({ room: conversation.id });
    });
  const ask = (member: Member, act: Confirming["act"]) => {
    setError(undefined);
    setConfirming({ id: member.id, act });
  };

  return (
    <section id="member-list" class="members" aria-label={`Members of ${room.info.name}`}>
      <div class="members-head">
        <h3>Members</h3>
        <button type="button" class="link" aria-label="Close the member list" onClick={onClose}>
          ×
        </button>
      </div>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      {list === undefined ? (
        !error && <p class="hint">Loading members…</p>
      ) : (
        <ul>
          {list.map((member) => {
            const can = memberActions(conversation ? undefined : room.role, member, me.id);
            const other = member.id !== me.id;
            const asked = confirming?.id === member.id ? confirming.act : undefined;
            return (
              <li key={member.id}>
                <span class="member-name">
                  {member.name}
                  {ROLE_NAMES[member.role] && (
                    <>
                      {" "}
                      <span class={`role ${member.role}`}>{ROLE_NAMES[member.role]}</span>
                    </>
                  )}
                  {member.id === me.id ? " (you)" : ""}
                </span>
                {asked === "remove" ? (
                  <span class="confirm" role="group" aria-label={`Confirm removing ${member.name}`}>
                    <button type="button" class="danger" disabled={busy} onClick={() => void remove(member)}>
                      Remove from room
                    </button>
                    <button type="button" disabled={busy} onClick={() => setConfirming(undefined)}>
                      Cancel
                    </button>
                  </span>
                ) : asked === "ban" ? (
                  <span class="confirm" role="group" aria-label={`Confirm banning ${member.name}`}>
                    <span class="confirm-text">
                      Ban {member.name}? They cannot join or read this room until the ban is lifted.
                    </span>
                    <button type="button" class="danger" disabled={busy} onClick={() => void ban(member)}>
                      Ban from room
                    </button>
                    <button type="button" disabled={busy} onClick={() => setConfirming(undefined)}>
                      Cancel
                    </button>
                  </span>
                ) : (
                  (can.role || can.remove || can.ban || other) && (
                    <span class="member-actions">
                      {other && (
                        <button
                          type="button"
                          class="link"
                          disabled={busy}
                          aria-label={`Message ${member.name}`}
                          onClick={() => void write(member)}
                        >
                          Message
                        </button>
                      )}
                      {can.role &&
                        (member.role === "moderator" ? (
                          <button
                            type="button"
                            class="link"
                            disabled={busy}
                            aria-label={`Remove moderator role from ${member.name}`}
                            onClick={() => void setRole(member, "member")}
                          >
                            Remove moderator
                          </button>
                        ) : (
                          <button
                            type="button"
                            class="link"
                            disabled={busy}
                            aria-label={`Make ${member.name} a moderator`}
                            onClick={() => void setRole(member, "moderator")}
                          >
                            Make moderator
                          </button>
                        ))}
                      {can.remove && (
                        <button
                          type="button"
                          class="link danger"
                          aria-label={`Remove ${member.name}`}
                          onClick={() => ask(member, "remove")}
                        >
                          Remove
                        </button>
                      )}
                      {can.ban && (
                        <button
                          type="button"
                          class="link danger"
                          aria-label={`Ban ${member.name}`}
                          onClick={() => ask(member, "ban")}
                        >
                          Ban
                        </button>
                      )}
                    </span>
                  )
                )}
              </li>
            );
          })}
        </ul>
      )}
      {moderator && (
        <>
          <p class="hint">
            A removed member can join again: a public room as anyone can, a private one with its invite code. A banned
            user cannot, until the ban is lifted.
          </p>
          <BanList client={client} room={room} changes={`${banned}:${room.info.member_count}`} />
        </>
      )}
    </section>
  );
}

/** The users banned from the room, behind a disclosure (the owner and moderators): *Unban* beside each. */
function BanList({ client, room, changes }: { client: NatterClient; room: RoomView; changes: string }) {
  const [open, setOpen] = useState(false);
  const [bans, setBans] = useState<Ban[]>();
  const [error, setError] = useState<string>();
  const [busy, setBusy] = useState(false);
  const id = room.info.id;

  // Read when opened, and again after a ban or a change in the members.
  useEffect(() => {
    if (!open) return;
    let current = true;
    client.bans(id).then(
      (list) => {
        if (!current) return;
        setBans(list);
        setError(undefined);
      },
      (err) => current && setError(`Cannot list the banned users: ${describe(err)}`),
    );
    return () => {
      current = false;
    };
  }, [open, id, changes]);

  const unban = async (ban: Ban) => {
    setBusy(true);
    setError(undefined);
    try {
      await client.unban(id, ban.id);
      setBans((list) => list?.filter((b) => b.id !== ban.id));
    } catch (err) {
      // Lifted meanwhile (by someone else): no longer listed, and said so.
      if (err instanceof ApiError && err.code === "ban_not_found") setBans((list) => list?.filter((b) => b.id !== ban.id));
      setError(`Could not unban ${ban.name}: ${describe(err)}`);
    } finally {
      setBusy(false);
    }
  };

  return (
    <div class="bans">
      <button type="button" class="link" aria-expanded={open} aria-controls="ban-list" onClick={() => setOpen(!open)}>
        Banned users<span aria-hidden="true">{open ? " ▴" : " ▾"}</span>
      </button>
      {open && (
        <section id="ban-list" aria-label={`Banned from ${room.info.name}`}>
          {error && (
            <p class="error" role="alert">
              {error}
            </p>
          )}
          {bans === undefined ? (
            !error && <p class="hint">Loading banned users…</p>
          ) : bans.length === 0 ? (
            <p class="hint">Nobody is banned from this room.</p>
          ) : (
            <ul>
              {bans.map((ban) => (
                <li key={ban.id}>
                  <span class="member-name">
                    {ban.name}{" "}
                    <span class="hint">
                      banned{ban.banned_by ? ` by ${ban.banned_by}` : ""}{" "}
                      <time dateTime={ban.banned_at}>{when(ban.banned_at)}</time>
                    </span>
                  </span>
                  <button
                    type="button"
                    class="link"
                    disabled={busy}
                    aria-label={`Unban ${ban.name}`}
                    onClick={() => void unban(ban)}
                  >
                    Unban
                  </button>
                </li>
              ))}
            </ul>
          )}
        </section>
      )}
    </div>
  );
}

/** A moment in the person's own words: the time today, else the date and time. */
function when(iso: string): string {
  const at = new Date(iso);
  if (Number.isNaN(at.getTime())) return "";
  const today = at.toDateString() === new Date().toDateString();
  return today
    ? at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
    : at.toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
}

function InvitePanel({ client, roomId, code }: { client: NatterClient; roomId: string; code: string }) {
  const [copied, setCopied] = useState(false);
  const [renewing, setRenewing] = useState(false);
  const [failed, setFailed] = useState<string>();
  const input = useRef<HTMLInputElement>(null);
  const renew = async () => {
    setRenewing(true);
    setFailed(undefined);
    try {
      await client.newJoinCode(roomId);
      setCopied(false);
    } catch (err) {
      setFailed(err instanceof Error ? err.message : String(err));
    } finally {
      setRenewing(false);
    }
  };
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(code);
      setCopied(true);
    } catch {
      // No clipboard access: select the code so the person can copy it themselves.
      input.current?.select();
    }
  };
  return (
    <div class="invite">
      <label>
        Invite code
        <input ref={input} readOnly value={code} onFocus={(e) => e.currentTarget.select()} />
      </label>
      <button type="button" onClick={copy}>
        {copied ? "Copied" : "Copy invite code"}
      </button>
      <button type="button" onClick={renew} disabled={renewing}>
        New invite code
      </button>
      {failed && <p role="alert">{failed}</p>}
      <p class="hint">Anyone with this code can join. Share it privately; a new code stops the old one working.</p>
    </div>
  );
}

/** The messages, a bounded window of them in the DOM, older ones loaded on scrolling up. */
function MessageList({
  client,
  room,
  onReply,
  jump,
  onJumped,
}: {
  client: NatterClient;
  room: RoomView;
  onReply: (seq: number) => void;
  jump?: number;
  onJumped?: (found: boolean) => void;
}) {
  const list = useRef<HTMLDivElement>(null);
  /** A message to bring into view and focus after the next render (a reply's original). */
  const jumping = useRef<string | null>(null);
  /** The key of the first message shown when the person has scrolled away from the newest; null: following. */
  const [top, setTop] = useState<string | null>(null);
  const anchor = useRef<{ key: string; offset: number } | null>(null);
  const items = room.timeline.items();
  const total = items.length;

  // Pinned: the person scrolled away from the newest message, and the window starts at `top`.
  const pinnedAt = top === null ? -1 : items.findIndex((item) => item.key === top);
  const pinned = pinnedAt >= 0;
  const start = pinned ? pinnedAt : Math.max(0, total - WINDOW);
  const end = Math.min(total, start + WINDOW);
  const shown = items.slice(start, end);
  // "Sent" shows on the newest of the user's stored messages only, as a receipt, not on every one.
  let newestSent: string | undefined;
  for (let i = items.length - 1; i >= 0; i--) {
    const item = items[i];
    if (item.kind === "pending" ? item.message.state === "sent" : item.sent) {
      newestSent = item.key;
      break;
    }
    if (item.kind === "message" && item.mine) break;
  }

  useEffect(() => {
    setTop(null);
    anchor.current = null;
  }, [room.info.id]);

  useEffect(() => client.setFollowing(!pinned), [pinned, client]);

  const remember = () => {
    const el = list.current;
    if (!el) return;
    for (const child of el.querySelectorAll<HTMLElement>("li[data-key]")) {
      if (child.offsetTop + child.offsetHeight > el.scrollTop) {
        anchor.current = { key: child.dataset.key ?? "", offset: child.offsetTop - el.scrollTop };
        return;
      }
    }
  };

  const overflows = () => {
    const el = list.current;
    return el !== null && el.scrollHeight > el.clientHeight + 4;
  };

  const atTop = () => {
    if (start > 0) {
      setTop(items[Math.max(0, start - STEP)].key);
    } else if (room.timeline.hasOlder && !room.loadingOlder) {
      // Pin the window first, so the older page shows above what is on screen.
      if (!pinned && overflows() && items.length) setTop(items[0].key);
      void client.loadOlder(room.info.id);
    }
  };

  // After each render: stick to the newest message when following, else keep the same message where it was.
  useLayoutEffect(() => {
    const el = list.current;
    if (!el) return;
    if (!pinned) {
      el.scrollTop = el.scrollHeight;
    } else if (anchor.current) {
      const node = el.querySelector<HTMLElement>(`li[data-key="${CSS.escape(anchor.current.key)}"]`);
      if (node) el.scrollTop = node.offsetTop - anchor.current.offset;
    }
    if (jumping.current) {
      const node = el.querySelector<HTMLElement>(`li[data-key="${CSS.escape(jumping.current)}"]`);
      if (node) {
        el.scrollTop = Math.max(0, node.offsetTop - 48);
        node.focus({ preventScroll: true });
        node.classList.add("highlight");
        setTimeout(() => node.classList.remove("highlight"), 2_000);
        jumping.current = null;
      }
    }
    remember();
    // At the top after a page arrived (a short room, a tall screen, or scrolled all the way): keep going.
    if (el.scrollTop < 40 && !room.loadingOlder && (pinned || !overflows())) atTop();
  });

  const onScroll = () => {
    const el = list.current;
    if (!el) return;
    remember();
    if (el.scrollTop < 120) {
      atTop();
      return;
    }
    const fromBottom = el.scrollHeight - el.scrollTop - el.clientHeight;
    if (fromBottom < 40) {
      if (end >= total) setTop(null);
      else setTop(items[Math.min(total - WINDOW, start + STEP)]?.key ?? null);
    } else if (!pinned && fromBottom > 80 && shown.length) {
      // Scrolled up, even a little: hold the view still rather than snap back to the newest on the next render.
      setTop(shown[0].key);
    }
  };

  const newest = () => {
    setTop(null);
    anchor.current = null;
  };

  /**
   * Brings message `seq` into view, loading older history until it is held (or the room's start is reached);
   * whether it is there.
   */
  const jumpTo = async (seq: number): Promise<boolean> => {
    for (let page = 0; page < 50 && !room.timeline.message(seq) && room.timeline.hasOlder; page++) {
      const floor = room.timeline.floor;
      await client.loadOlder(room.info.id);
      if (room.timeline.floor === floor && !room.timeline.message(seq)) await new Promise((r) => setTimeout(r, 300));
    }
    const target = room.timeline.items().find((item) => item.kind === "message" && item.message.seq === seq);
    if (!target) return false;
    jumping.current = target.key;
    anchor.current = null;
    setTop(target.key);
    return true;
  };

  // A message asked for by the address (a search result): brought into view once the room shows.
  useEffect(() => {
    if (jump === undefined) return;
    let current = true;
    void jumpTo(jump).then((found) => current && onJumped?.(found));
    return () => {
      current = false;
    };
  }, [room.info.id, jump]);

  return (
    <div class="messages-wrap">
      <div
        ref={list}
        class="messages"
        role="log"
        aria-label={`Messages in ${room.info.name}`}
        tabIndex={0}
        onScroll={onScroll}
      >
        <p class="history-edge">
          {room.loadingOlder
            ? "Loading older messages…"
            : start === 0 && !room.timeline.hasOlder
              ? room.info.kind === "direct"
                ? `This is the beginning of your conversation with ${room.info.name}.`
                : `This is the beginning of ${room.info.name}.`
              : ""}
        </p>
        <ul>
          {shown.map((item, i) => (
            <Message
              key={item.key}
              item={item}
              previous={i > 0 ? shown[i - 1] : items[start - 1]}
              newestSent={item.key === newestSent}
              client={client}
              room={room}
              onReply={onReply}
              onJump={(seq) => void jumpTo(seq)}
            />
          ))}
          {end >= total &&
            room.drafts.map((draft) => (
              <li key={`draft:${draft.user.id}`} class="message draft" aria-label={`${draft.user.name} is typing`}>
                <div class="meta">
                  <span class="author">{draft.user.name}</span> <span class="time">typing…</span>
                </div>
                <p class="body">{draft.text}</p>
              </li>
            ))}
        </ul>
        {room.filling && <p class="filling">Loading missed messages…</p>}
      </div>
      {pinned && (
        <button type="button" class="jump" onClick={newest}>
          Jump to newest
        </button>
      )}
    </div>
  );
}

function Composer({
  client,
  room,
  replyTo,
  onReplyDone,
}: {
  client: NatterClient;
  room: RoomView;
  replyTo?: number;
  onReplyDone: () => void;
}) {
  const [text, setText] = useState("");
  const input = useRef<HTMLTextAreaElement>(null);
  const picker = useMentionPicker(client, room, text, setText, input);
  useEffect(() => {
    setText("");
    if (matchMedia("(min-width: 720px)").matches) input.current?.focus();
  }, [room.info.id]);

  const length = [...text].length;
  const send = (event?: Event) => {
    event?.preventDefault();
    // Enter reaches here even while the Send button is disabled.
    if (!text.trim() || length > MAX_BODY) return;
    client.send(room.info.id, text, replyTo);
    setText("");
    picker.close();
    onReplyDone();
    input.current?.focus();
  };
  useEffect(() => {
    if (replyTo !== undefined) input.current?.focus();
  }, [replyTo]);
  const answering = replyTo === undefined ? undefined : room.timeline.message(replyTo);
  return (
    <form class="composer" onSubmit={send} aria-label="Write a message">
      {replyTo !== undefined && (
        <p class="replying">
          Replying to {answering ? <strong>{answering.user.name}</strong> : "a message"}
          {answering && !answering.deleted && <span class="snippet">: {answering.body.split("\n", 1)[0]}</span>}{" "}
          <button type="button" class="link" aria-label="Cancel the reply" onClick={onReplyDone}>
            Cancel
          </button>
        </p>
      )}
      {picker.list}
      <textarea
        ref={input}
        {...picker.inputProps}
        rows={1}
        aria-label={`Message ${room.info.name}`}
        placeholder={`Message ${room.info.name}`}
        value={text}
        maxLength={MAX_BODY * 2}
        onInput={(e) => {
          const value = e.currentTarget.value;
          setText(value);
          client.setDraft(room.info.id, value.trim() ? value : "");
          picker.update(value, e.currentTarget.selectionStart);
        }}
        onKeyDown={(e) => {
          if (picker.keyDown(e)) return;
          if (e.key === "Enter" && !e.shiftKey && !e.isComposing) send(e);
          if (e.key === "Escape" && replyTo !== undefined) onReplyDone();
        }}
      />
      {length > MAX_BODY && <span class="too-long">{length - MAX_BODY} characters too long</span>}
      <button type="submit" class="primary" disabled={!text.trim() || length > MAX_BODY}>
        Send
      </button>
    </form>
  );
}
