/** Changing the password: the current one, the new one twice (compared here), then the API's answer in words. */

import { useState } from "preact/hooks";

import type { Account } from "../natter/account";
import { describe } from "./errors";
import { Outcome, type Result } from "./Outcome";

export function PasswordForm({ account, onChanged }: { account: Account; onChanged: () => void }) {
  const [current, setCurrent] = useState("");
  const [next, setNext] = useState("");
  const [confirm, setConfirm] = useState("");
  const [busy, setBusy] = useState(false);
  const [result, setResult] = useState<Result>();

  const submit = async (event: Event) => {
    event.preventDefault();
    if (next !== confirm) {
      setResult({ text: "The new passwords do not match.", failed: true });
      return;
    }
    setBusy(true);
    setResult(undefined);
    try {
      const ended = await account.changePassword(current, next);
      setCurrent("");
      setNext("");
      setConfirm("");
      const others =
        ended === undefined ? "Your other sessions were signed out."
        : ended === 0 ? "You were not signed in anywhere else."
        : `${ended} other session${ended === 1 ? " was" : "s were"} signed out.`;
      setResult({ text: `Password changed. ${others}`, failed: false });
      onChanged();
    } catch (err) {
      setResult({ text: describe(err), failed: true });
    } finally {
      setBusy(false);
    }
  };

  return (
    <form class="password-form" aria-label="Change password" onSubmit={submit}>
      <PasswordField label="Current password" autocomplete="current-password" value={current} onInput={setCurrent} />
      <PasswordField label="New password" autocomplete="new-password" value={next} onInput={setNext} />
      <PasswordField label="Confirm new password" autocomplete="new-password" value={confirm} onInput={setConfirm} />
      <p class="hint">At least 8 characters. Every other session is signed out; this one stays.</p>
      <button type="submit" class="primary" disabled={busy}>
        {busy ? "Changing…" : "Change password"}
      </button>
      <Outcome result={result} />
    </form>
  );
}

/** One required password input with its label. */
function PasswordField(props: {
  label: string;
  autocomplete: "current-password" | "new-password";
  value: string;
  onInput: (value: string) => void;
}) {
  return (
    <label>
      {props.label}
      <input
        type="password"
        autocomplete={props.autocomplete}
        required
        value={props.value}
        onInput={(e) => props.onInput(e.currentTarget.value)}
      />
    </label>
  );
}
