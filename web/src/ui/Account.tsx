/**
 * The Account dialog: the user's sessions (signed-in devices), ending the others, changing the password, and the
 * people the user blocks, each with Unblock.
 * A modal `<dialog>`: focus stays inside, Escape closes it, and it fits a phone's width.
 */

import { useEffect, useRef, useState } from "preact/hooks";

import type { Account } from "../natter/account";
import type { SessionInfo } from "../natter/api";
import type { NatterClient } from "../natter/client";
import { describe } from "./errors";
import { Outcome, type Result } from "./Outcome";
import { PasswordForm } from "./PasswordForm";
import { ago, deviceName } from "./sessionWords";

type Listing = { state: "loading" } | { state: "failed"; error: string } | { state: "ready"; sessions: SessionInfo[] };

export function AccountDialog({
  account,
  client,
  guest,
  onClose,
}: {
  account: Account;
  client: NatterClient;
  guest: boolean;
  onClose: () => void;
}) {
  const dialog = useRef<HTMLDialogElement>(null);
  const [listing, setListing] = useState<Listing>({ state: "loading" });

  const load = () =>
    account.sessions().then(
      (sessions) => setListing({ state: "ready", sessions }),
      (err) => setListing({ state: "failed", error: describe(err) }),
    );

  useEffect(() => {
    dialog.current?.showModal();
    void load();
  }, []);

  return (
    <dialog ref={dialog} class="account-dialog" aria-labelledby="account-title" onClose={onClose}>
      <header class="dialog-head">
        <h2 id="account-title">Account</h2>
        <button type="button" class="close" aria-label="Close account" onClick={() => dialog.current?.close()}>
          ×
        </button>
      </header>
      <section aria-labelledby="sessions-title">
        <h3 id="sessions-title">Where you are signed in</h3>
        {listing.state === "loading" && <p class="hint">Loading sessions…</p>}
        {listing.state === "failed" && (
          <p class="error" role="alert">
            {listing.error}{" "}
            <button type="button" class="link" onClick={() => void load()}>
              Try again
            </button>
          </p>
        )}
        {listing.state === "ready" && <SessionList account={account} sessions={listing.sessions} onEnded={load} />}
      </section>
      <BlockedList client={client} />
      <section aria-labelledby="password-title">
        <h3 id="password-title">Password</h3>
        {guest ? (
          <p class="hint">You are signed in as a guest: a guest account has no password to change.</p>
        ) : (
          <PasswordForm account={account} onChanged={load} />
        )}
      </section>
    </dialog>
  );
}

/** The people the user blocks, the latest first, each with Unblock (their conversation opens again). */
function BlockedList({ client }: { client: NatterClient }) {
  const [error, setError] = useState<string | undefined>();
  const [busy, setBusy] = useState<string | undefined>();
  const blocks = client.blocks();
  const unblock = (id: string) => {
    setBusy(id);
    setError(undefined);
    client.unblock(id).then(
      () => setBusy(undefined),
      (err) => {
        setBusy(undefined);
        setError(describe(err));
      },
    );
  };
  return (
    <section aria-labelledby="blocked-title">
      <h3 id="blocked-title">People you block</h3>
      {blocks.length === 0 ? (
        <p class="hint">You block no one.</p>
      ) : (
        <ul class="blocked-list">
          {blocks.map((b) => (
            <li key={b.id}>
              <span class="name">{b.name}</span> <span class="hint">since {ago(b.since)}</span>{" "}
              <button type="button" disabled={busy === b.id} onClick={() => unblock(b.id)}>
                Unblock {b.name}
              </button>
            </li>
          ))}
        </ul>
      )}
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
    </section>
  );
}

function SessionList({
  account,
  sessions,
  onEnded,
}: {
  account: Account;
  sessions: SessionInfo[];
  onEnded: () => Promise<void>;
}) {
  const [pending, setPending] = useState<string>();
  const [result, setResult] = useState<Result>();
  const others = sessions.filter((s) => !s.current).length;

  const act = async (key: string, work: () => Promise<string>) => {
    setPending(key);
    setResult(undefined);
    try {
      setResult({ text: await work(), failed: false });
      await onEnded();
    } catch (err) {
      setResult({ text: describe(err), failed: true });
    } finally {
      setPending(undefined);
    }
  };

  return (
    <>
      <ul class="sessions">
        {sessions.map((s) => {
          const device = deviceName(s.user_agent);
          return (
            <li key={s.id}>
              <span class="session-what">
                <strong>{device}</strong>
                {s.current && <span class="tag">This device</span>}
                <span class="hint" title={s.user_agent ?? undefined}>
                  {s.address ?? "unknown address"} · active {ago(s.last_used_at)}
                </span>
              </span>
              {!s.current && (
                <button
                  type="button"
                  class="danger"
                  disabled={pending !== undefined}
                  aria-label={`End session on ${device}`}
                  onClick={() => act(s.id, () => account.end(s.id).then(() => `Signed out ${device}.`))}
                >
                  {pending === s.id ? "Ending…" : "End"}
                </button>
              )}
            </li>
          );
        })}
      </ul>
      {others > 0 && (
        <button
          type="button"
          class="danger"
          disabled={pending !== undefined}
          onClick={() => act("others", () => account.endOthers().then((n) => `Signed out ${plural(n)}.`))}
        >
          {pending === "others" ? "Logging out…" : "Log out everywhere else"}
        </button>
      )}
      {others === 0 && <p class="hint">You are not signed in anywhere else.</p>}
      <Outcome result={result} />
    </>
  );
}

/** "1 other session", "3 other sessions". */
function plural(n: number): string {
  return `${n} other session${n === 1 ? "" : "s"}`;
}
