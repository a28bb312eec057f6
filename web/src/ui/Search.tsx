/**
 * Searching messages: the box in the sidebar, and the results page in the main pane. Each result names its room,
 * its author and its time, shows the words searched for marked, and opens the room at the message.
 */

import { useEffect, useState } from "preact/hooks";

import type { RoomInfo, SearchHit } from "../natter/api";
import { excerpt, highlight, type NatterClient, searchTerms } from "../natter/client";
import { describeSearch } from "./errors";
import { Mark, RoomMark, SearchIcon } from "./icons";
import { formatTime } from "./Message";
import { navigate, type SearchRoute } from "./router";

/** Results asked for at a time. */
const PAGE = 20;

/** The box in the sidebar: Enter (or its button) shows the results, the filters of a search on screen kept. */
export function SearchBox({ current, onSearch }: { current?: SearchRoute; onSearch: (route: SearchRoute) => void }) {
  const [text, setText] = useState(current?.q ?? "");
  useEffect(() => {
    if (current) setText(current.q);
  }, [current?.q]);
  return (
    <form
      role="search"
      class="search-box"
      onSubmit={(event) => {
        event.preventDefault();
        const q = text.trim();
        if (q) onSearch({ q, room: current?.room, author: current?.author });
      }}
    >
      <input
        type="search"
        aria-label="Search messages"
        placeholder="Search messages"
        value={text}
        maxLength={200}
        autocomplete="off"
        onInput={(e) => setText(e.currentTarget.value)}
      />
      <button type="submit" aria-label="Search" title="Search" disabled={!text.trim()}>
        <SearchIcon />
      </button>
    </form>
  );
}

interface Found {
  /** The search these are the results of (its address), and the run that asked. */
  key: string;
  run: number;
  hits: SearchHit[];
  hasMore: boolean;
}

/** The last results shown: going back to them (from a room opened at one) shows them again without asking. */
let kept: Found | undefined;

/**
 * The results of `search`, asked for again whenever `run` changes (the person searched again, even for the same
 * words).
 */
export function SearchPage({ client, search, run }: { client: NatterClient; search: SearchRoute; run: number }) {
  const key = JSON.stringify([search.q, search.room ?? "", search.author ?? ""]);
  const [found, setFound] = useState<Found | undefined>(() => (kept?.key === key && kept.run === run ? kept : undefined));
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string>();
  const terms = searchTerms(search.q);

  const ask = async (offset: number, previous: SearchHit[]) => {
    setBusy(true);
    setError(undefined);
    try {
      const page = await client.search(search.q, { room: search.room, author: search.author, limit: PAGE, offset });
      // Results of a search no longer on screen are dropped.
      if (currentKey !== key) return;
      // A message may move down a page between two asks: each once.
      const seen = new Set(previous.map((hit) => `${hit.room}/${hit.seq}`));
      const hits = [...previous, ...page.results.filter((hit) => !seen.has(`${hit.room}/${hit.seq}`))];
      kept = { key, run, hits, hasMore: page.has_more };
      setFound(kept);
    } catch (err) {
      if (currentKey === key) setError(describeSearch(err));
    } finally {
      if (currentKey === key) setBusy(false);
    }
  };

  useEffect(() => {
    currentKey = key;
    if (kept?.key === key && kept.run === run) {
      setFound(kept);
      return;
    }
    setFound(undefined);
    if (search.q.trim()) void ask(0, []);
  }, [key, run]);
  useEffect(
    () => () => {
      currentKey = undefined;
    },
    [],
  );

  const rooms = client.roomList().filter((room) => room.info.joined || room.info.id === search.room);
  const words = search.q.trim();
  const count = found ? `${found.hits.length}${found.hasMore ? "+" : ""}` : "";
  return (
    <section class="search" aria-labelledby="search-title">
      <header class="room-head">
        <button type="button" class="back" aria-label="Back to rooms" onClick={() => navigate({})}>
          ‹
        </button>
        <div class="room-title">
          <h2 id="search-title">{words ? `Search: ${words}` : "Search"}</h2>
          <p class="room-meta" aria-live="polite">
            {busy && !found
              ? "Searching…"
              : found?.hits.length
                ? `${count} message${count === "1" ? "" : "s"} found`
                : ""}
          </p>
        </div>
      </header>
      <Filters client={client} search={search} rooms={rooms.map((room) => ({ id: room.info.id, name: room.info.name }))} />
      <div class="results-wrap">
        {error && (
          <p class="error search-error" role="alert">
            {error}
          </p>
        )}
        {!words && <p class="empty-results">Type words in the search box to find messages.</p>}
        {found && !found.hits.length && !error && (
          <p class="empty-results">
            No messages found for <q>{words}</q>
            {search.room || search.author ? " with these filters" : " in your rooms"}. Try other words
            {search.room || search.author ? ", or search all your rooms" : ""}.
          </p>
        )}
        {found && found.hits.length > 0 && (
          <ol class="results" aria-label="Messages found">
            {found.hits.map((hit) => (
              <Result
                key={`${hit.room}/${hit.seq}`}
                hit={hit}
                terms={terms}
                room={client.room(hit.room)?.info}
              />
            ))}
          </ol>
        )}
        {found?.hasMore && (
          <button type="button" class="more" disabled={busy} onClick={() => void ask(found.hits.length, found.hits)}>
            {busy ? "Loading…" : "Load more"}
          </button>
        )}
      </div>
    </section>
  );
}

/** The search whose results are on screen: an answer to an older one is not shown. */
let currentKey: string | undefined;

/** Where to search and whose messages: changing them searches again. */
function Filters({
  client,
  search,
  rooms,
}: {
  client: NatterClient;
  search: SearchRoute;
  rooms: { id: string; name: string }[];
}) {
  const [author, setAuthor] = useState(search.author ?? "");
  useEffect(() => setAuthor(search.author ?? ""), [search.author]);
  const go = (room: string | undefined, who: string) =>
    navigate({ search: { q: search.q, room: room || undefined, author: who.trim() || undefined } }, true);
  const name = (id: string) => rooms.find((room) => room.id === id)?.name ?? client.room(id)?.info.name ?? id;
  return (
    <form
      class="search-filters"
      aria-label="Search filters"
      onSubmit={(event) => {
        event.preventDefault();
        go(search.room, author);
      }}
    >
      <label>
        In
        <select value={search.room ?? ""} onChange={(e) => go(e.currentTarget.value, author)}>
          <option value="">All your rooms</option>
          {search.room && !rooms.some((room) => room.id === search.room) && (
            <option value={search.room}>{name(search.room)}</option>
          )}
          {rooms.map((room) => (
            <option key={room.id} value={room.id}>
              {room.name}
            </option>
          ))}
        </select>
      </label>
      <label>
        From
        <input
          value={author}
          placeholder="anyone"
          maxLength={32}
          autocomplete="off"
          onInput={(e) => setAuthor(e.currentTarget.value)}
        />
      </label>
      <button type="submit">Apply</button>
    </form>
  );
}

/** One message found: a link that opens its room at it. */
function Result({ hit, terms, room }: { hit: SearchHit; terms: string[]; room?: RoomInfo }) {
  const href = `/r/${hit.room}?m=${hit.seq}`;
  return (
    <li>
      <a
        class="result"
        href={href}
        onClick={(event) => {
          if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
          event.preventDefault();
          navigate({ room: hit.room, seq: hit.seq });
        }}
      >
        <span class="result-meta">
          <span class="result-room">
            {room ? <Mark room={room} /> : <RoomMark private={false} />}{" "}
            {/* A direct conversation is named after the other person, as the user sees it. */}
            {(room?.kind === "direct" ? room.name : hit.room_name) || hit.room}
          </span>
          <span class="author">{hit.user.name}</span>
          <time dateTime={hit.ts}>{formatTime(hit.ts)}</time>
        </span>
        <span class="result-body">
          {highlight(excerpt(hit.body, terms), terms).map((piece) => (piece.mark ? <mark>{piece.text}</mark> : piece.text))}
          {hit.edited && <span class="edited"> (edited)</span>}
        </span>
      </a>
    </li>
  );
}
