/**
 * The signed-in page: rooms, direct messages and the search box on the side, the open room or conversation (or
 * search results) in the middle, the connection's status always shown.
 */

import type { ComponentChildren } from "preact";
import { useEffect, useMemo, useRef, useState } from "preact/hooks";

import { Account } from "../natter/account";
import type { Api } from "../natter/api";
import { isConversation, type NatterClient, parseNames, peerOnline, type RoomView } from "../natter/client";
import type { Session } from "../natter/session";
import { AccountDialog } from "./Account";
import { describe, sentence } from "./errors";
import { Mark } from "./icons";
import { RoomPane } from "./Room";
import { navigate, useRoute } from "./router";
import { MentionBadge, MentionsLink, MentionsPage, NotificationsButton, useNotifications } from "./Mentions";
import { SearchBox, SearchPage } from "./Search";
import { StatusLine } from "./Status";
import { useClient } from "./useClient";

export function Chat({ api, client, session }: { api: Api; client: NatterClient; session: Session }) {
  useClient(client);
  useNotifications(client);
  const account = useMemo(() => new Account(api, session), [api, session]);
  const [showAccount, setShowAccount] = useState(false);
  const route = useRoute();
  const [alerts, setAlerts] = useState<{ id: number; text: string }[]>([]);
  const alertId = useRef(0);
  /** Bumped by every search the person asks for, so the same words asked again search again. */
  const [searches, setSearches] = useState(0);

  const alert = (text: string) => {
    const id = ++alertId.current;
    setAlerts((list) => [...list.slice(-2), { id, text }]);
    setTimeout(() => setAlerts((list) => list.filter((a) => a.id !== id)), 6_000);
  };

  useEffect(
    () =>
      client.subscribe((event) => {
        if (event.type === "error") alert(sentence(event.message));
        // Something happened to a room not on screen (deleted, the user removed from it): worth a word.
        else if (event.type === "notice") alert(event.message);
      }),
    [client],
  );

  // An invite link (/r/ROOM?code=…) joins, then opens the room.
  useEffect(() => {
    if (!route.room || !route.code || !client.ready) return;
    const room = route.room;
    client
      .join(room, route.code)
      .then(() => navigate({ room }, true))
      .catch((err) => {
        alert(describe(err));
        navigate({}, true);
      });
  }, [route.room, route.code, client.ready]);

  useEffect(() => {
    if (route.code) return;
    void client.openRoom(route.room);
  }, [route.room, route.code]);

  const total = client.totalUnread();
  useEffect(() => {
    const open = route.room ? client.room(route.room)?.info.name : undefined;
    const place = route.mentions ? "Mentions" : route.search ? "Search" : open;
    document.title = `${total ? `(${total}) ` : ""}${place ? `${place} · ` : ""}Natter`;
  });

  const open = route.room && !route.code ? client.room(route.room) : undefined;
  return (
    <div class={open || route.search || route.mentions ? "chat room-open" : "chat"}>
      <aside class="sidebar" aria-label="Rooms and account">
        <header class="sidebar-head">
          <h1 class="brand small">
            <img src="/favicon.svg" alt="" width="24" height="24" /> Natter
          </h1>
          <StatusLine client={client} />
        </header>
        <SearchBox
          current={route.search}
          onSearch={(search) => {
            setSearches((n) => n + 1);
            navigate({ search });
          }}
        />
        <MentionsLink client={client} current={!!route.mentions} />
        <RoomList client={client} openId={open?.info.id} />
        <RoomForms client={client} onError={alert} />
        <DirectList client={client} openId={open?.info.id} />
        <ConversationForms client={client} onError={alert} />
        <footer class="account">
          <span>
            Signed in as <strong>{session.user?.name}</strong>
            {session.user?.guest ? " (guest)" : ""}
          </span>
          <span class="account-actions">
            <NotificationsButton />
            <button type="button" class="link" aria-haspopup="dialog" onClick={() => setShowAccount(true)}>
              Account
            </button>
            <button type="button" class="link" onClick={() => void session.logout()}>
              Log out
            </button>
          </span>
        </footer>
      </aside>
      <main class="main">
        {route.mentions ? (
          <MentionsPage client={client} />
        ) : route.search ? (
          <SearchPage client={client} search={route.search} run={searches} />
        ) : open ? (
          <RoomPane
            client={client}
            room={open}
            onError={alert}
            jump={route.seq}
            onJumped={(found) => {
              // Read once: the address becomes the room's own, so Back returns to the results.
              navigate({ room: open.info.id }, true);
              if (!found) alert("That message is not in this room any more.");
            }}
          />
        ) : route.room && !route.code && client.ready ? (
          <div class="empty">
            {client.refusal(route.room) === "banned" ? (
              <>
                <h2>You are banned from this room</h2>
                <p>Its owner or a moderator banned you: you cannot read or join it unless they lift the ban.</p>
              </>
            ) : (
              <>
                <h2>This room is not available</h2>
                <p>It may have been deleted, or it is private and you have not been invited.</p>
              </>
            )}
            <button type="button" onClick={() => navigate({})}>
              Back to rooms
            </button>
          </div>
        ) : (
          <div class="empty welcome">
            <h2>Welcome, {session.user?.name}</h2>
            <p>Pick a room or a conversation on the left, create a room, or write to someone.</p>
          </div>
        )}
      </main>
      {showAccount && (
        <AccountDialog
          account={account}
          client={client}
          guest={session.user?.guest ?? false}
          onClose={() => setShowAccount(false)}
        />
      )}
      <div class="alerts" role="alert" aria-live="assertive">
        {alerts.map((a) => (
          <p key={a.id}>{a.text}</p>
        ))}
      </div>
    </div>
  );
}

function RoomList({ client, openId }: { client: NatterClient; openId?: string }) {
  const rooms = client.roomList().filter((room) => !isConversation(room.info));
  const mine = rooms.filter((r) => r.info.joined);
  const others = rooms.filter((r) => !r.info.joined);
  return (
    <nav class="rooms" aria-label="Rooms">
      <h2>Your rooms</h2>
      {client.ready && !mine.length && <p class="hint">No rooms yet: create one or join one below.</p>}
      <ul>
        {mine.map((room) => (
          <RoomLink room={room} open={room.info.id === openId} />
        ))}
      </ul>
      {others.length > 0 && (
        <>
          <h2>Public rooms</h2>
          <ul>
            {others.map((room) => (
              <RoomLink room={room} open={room.info.id === openId} />
            ))}
          </ul>
        </>
      )}
    </nav>
  );
}

/** The user's direct and group conversations, apart from the rooms. */
function DirectList({ client, openId }: { client: NatterClient; openId?: string }) {
  const conversations = client.roomList().filter((room) => isConversation(room.info));
  return (
    <nav class="rooms" aria-label="Direct messages">
      <h2>Direct messages</h2>
      {client.ready && !conversations.length && <p class="hint">Nobody yet: write to someone below.</p>}
      <ul>
        {conversations.map((room) => (
          <RoomLink room={room} open={room.info.id === openId} />
        ))}
      </ul>
    </nav>
  );
}

function RoomLink({ room, open }: { room: RoomView; open: boolean }) {
  const href = `/r/${room.info.id}`;
  const unread = room.unread > 999 ? "999+" : String(room.unread);
  const online = peerOnline(room);
  return (
    <li key={room.info.id}>
      <a
        href={href}
        class={open ? "room-link open" : room.unread ? "room-link unread" : "room-link"}
        aria-current={open ? "page" : undefined}
        onClick={(event) => {
          event.preventDefault();
          navigate({ room: room.info.id });
        }}
      >
        <span class="room-name">
          <Mark room={room.info} online={online} /> {room.info.name}
          {online && <span class="sr-only"> (online)</span>}
        </span>
        {room.unread > 0 && (
          <span class="badge" aria-label={`${unread} unread`}>
            {unread}
          </span>
        )}
        <MentionBadge room={room} />
      </a>
    </li>
  );
}

/** New room, and join with a code. */
function RoomForms({ client, onError }: { client: NatterClient; onError: (text: string) => void }) {
  const [name, setName] = useState("");
  const [isPrivate, setPrivate] = useState(false);
  const [invite, setInvite] = useState("");
  return (
    <div class="room-forms">
      <SideForm
        title="New room"
        label="New room"
        action="Create room"
        ready={!!name.trim()}
        onError={onError}
        submit={async () => {
          const room = await client.createRoom(name.trim(), isPrivate);
          setName("");
          setPrivate(false);
          navigate({ room: room.id });
        }}
      >
        <label>
          Room name
          <input
            value={name}
            required
            maxLength={64}
            placeholder="e.g. General"
            onInput={(e) => setName(e.currentTarget.value)}
          />
        </label>
        <label class="check">
          <input type="checkbox" checked={isPrivate} onChange={(e) => setPrivate(e.currentTarget.checked)} />
          Private (invite only)
        </label>
      </SideForm>
      <SideForm
        title="Join with a code"
        label="Join a private room"
        action="Join"
        ready={!!invite.trim()}
        onError={onError}
        submit={async () => {
          const room = await client.join(invite);
          setInvite("");
          navigate({ room: room.id });
        }}
      >
        <label>
          Invite code or link
          <input
            value={invite}
            required
            placeholder="room.code"
            autocomplete="off"
            onInput={(e) => setInvite(e.currentTarget.value)}
          />
        </label>
      </SideForm>
    </div>
  );
}

/** New message (a direct conversation, by the other person's user name), and new group. */
function ConversationForms({ client, onError }: { client: NatterClient; onError: (text: string) => void }) {
  const [to, setTo] = useState("");
  const [people, setPeople] = useState("");
  const [groupName, setGroupName] = useState("");
  const names = parseNames(people, client.me.name);
  return (
    <div class="room-forms">
      <SideForm
        title="New message"
        label="New message"
        action="Start conversation"
        ready={!!to.trim()}
        onError={onError}
        submit={async () => {
          const room = await client.startDirect(to.trim().replace(/^@/, ""));
          setTo("");
          navigate({ room: room.id });
        }}
      >
        <label>
          To (user name)
          <input
            value={to}
            required
            maxLength={64}
            placeholder="e.g. sam"
            autocomplete="off"
            onInput={(e) => setTo(e.currentTarget.value)}
          />
        </label>
      </SideForm>
      <SideForm
        title="New group"
        label="New group"
        action="Create group"
        ready={names.length >= 2}
        onError={onError}
        submit={async () => {
          const room = await client.startGroup(names, groupName);
          setPeople("");
          setGroupName("");
          navigate({ room: room.id });
        }}
      >
        <label>
          People (2 to 7 user names)
          <input
            value={people}
            required
            placeholder="e.g. sam, kim"
            autocomplete="off"
            onInput={(e) => setPeople(e.currentTarget.value)}
          />
        </label>
        <label>
          Group name (optional)
          <input value={groupName} maxLength={64} onInput={(e) => setGroupName(e.currentTarget.value)} />
        </label>
      </SideForm>
    </div>
  );
}

/** A form behind a disclosure in the sidebar: closed again once its work is done; a refusal is said in an alert. */
function SideForm({
  title,
  label,
  action,
  ready,
  submit,
  onError,
  children,
}: {
  title: string;
  label: string;
  action: string;
  ready: boolean;
  submit: () => Promise<void>;
  onError: (text: string) => void;
  children: ComponentChildren;
}) {
  const [busy, setBusy] = useState(false);
  const box = useRef<HTMLDetailsElement>(null);
  const run = async (event: Event) => {
    event.preventDefault();
    setBusy(true);
    try {
      await submit();
      if (box.current) box.current.open = false;
    } catch (err) {
      onError(describe(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <details ref={box}>
      <summary>{title}</summary>
      <form onSubmit={run} aria-label={label}>
        {children}
        <button type="submit" disabled={busy || !ready}>
          {action}
        </button>
      </form>
    </details>
  );
}
