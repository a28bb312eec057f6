/**
 * The signed-in page: rooms and the search box on the side, the open room (or search results) in the middle, the
 * connection's status always shown.
 */

import { useEffect, useMemo, useRef, useState } from "preact/hooks";

import { Account } from "../natter/account";
import type { Api } from "../natter/api";
import type { NatterClient, RoomView } from "../natter/client";
import type { Session } from "../natter/session";
import { AccountDialog } from "./Account";
import { describe, sentence } from "./errors";
import { RoomMark } from "./icons";
import { RoomPane } from "./Room";
import { navigate, useRoute } from "./router";
import { SearchBox, SearchPage } from "./Search";
import { StatusLine } from "./Status";
import { useClient } from "./useClient";

export function Chat({ api, client, session }: { api: Api; client: NatterClient; session: Session }) {
  useClient(client);
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
    const place = route.search ? "Search" : open;
    document.title = `${total ? `(${total}) ` : ""}${place ? `${place} · ` : ""}Natter`;
  });

  const open = route.room && !route.code ? client.room(route.room) : undefined;
  return (
    <div class={open || route.search ? "chat room-open" : "chat"}>
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
        <RoomList client={client} openId={open?.info.id} />
        <RoomForms client={client} onError={alert} />
        <footer class="account">
          <span>
            Signed in as <strong>{session.user?.name}</strong>
            {session.user?.guest ? " (guest)" : ""}
          </span>
          <span class="account-actions">
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
        {route.search ? (
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
            <p>Pick a room on the left, create one, or join one with an invite code.</p>
          </div>
        )}
      </main>
      {showAccount && (
        <AccountDialog account={account} guest={session.user?.guest ?? false} onClose={() => setShowAccount(false)} />
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
  const rooms = client.roomList();
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

function RoomLink({ room, open }: { room: RoomView; open: boolean }) {
  const href = `/r/${room.info.id}`;
  const unread = room.unread > 999 ? "999+" : String(room.unread);
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
          <RoomMark private={room.info.private} /> {room.info.name}
        </span>
        {room.unread > 0 && (
          <span class="badge" aria-label={`${unread} unread`}>
            {unread}
          </span>
        )}
      </a>
    </li>
  );
}

function RoomForms({ client, onError }: { client: NatterClient; onError: (text: string) => void }) {
  const [name, setName] = useState("");
  const [isPrivate, setPrivate] = useState(false);
  const [invite, setInvite] = useState("");
  const [busy, setBusy] = useState(false);
  const createBox = useRef<HTMLDetailsElement>(null);
  const joinBox = useRef<HTMLDetailsElement>(null);

  const create = async (event: Event) => {
    event.preventDefault();
    setBusy(true);
    try {
      const room = await client.createRoom(name.trim(), isPrivate);
      setName("");
      setPrivate(false);
      if (createBox.current) createBox.current.open = false;
      navigate({ room: room.id });
    } catch (err) {
      onError(describe(err));
    } finally {
      setBusy(false);
    }
  };

  const join = async (event: Event) => {
    event.preventDefault();
    setBusy(true);
    try {
      const room = await client.join(invite);
      setInvite("");
      if (joinBox.current) joinBox.current.open = false;
      navigate({ room: room.id });
    } catch (err) {
      onError(describe(err));
    } finally {
      setBusy(false);
    }
  };

  return (
    <div class="room-forms">
      <details ref={createBox}>
        <summary>New room</summary>
        <form onSubmit={create} aria-label="New room">
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
          <button type="submit" disabled={busy || !name.trim()}>
            Create room
          </button>
        </form>
      </details>
      <details ref={joinBox}>
        <summary>Join with a code</summary>
        <form onSubmit={join} aria-label="Join a private room">
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
          <button type="submit" disabled={busy || !invite.trim()}>
            Join
          </button>
        </form>
      </details>
    </div>
  );
}
