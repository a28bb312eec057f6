/** Signing in: with an account, a new account, or as a guest by name. */

import { useState } from "preact/hooks";

import type { Api, TokenResponse } from "../natter/api";
import { describe } from "./errors";

type Mode = "login" | "register" | "guest";

const TITLES: Record<Mode, string> = { login: "Sign in", register: "Create account", guest: "Guest" };
const MODES = Object.keys(TITLES) as Mode[];

export function Login({
  api,
  notice,
  onSignedIn,
}: {
  api: Api;
  notice?: string;
  onSignedIn: (tokens: TokenResponse) => void;
}) {
  const [mode, setMode] = useState<Mode>("login");
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState<string>();
  const [busy, setBusy] = useState(false);

  const choose = (m: Mode) => {
    setMode(m);
    setError(undefined);
  };

  const onTabKey = (event: KeyboardEvent) => {
    const index = MODES.indexOf(mode);
    const count = MODES.length;
    const next = { ArrowRight: (index + 1) % count, ArrowLeft: (index + count - 1) % count, Home: 0, End: count - 1 }[
      event.key
    ];
    if (next === undefined) return;
    event.preventDefault();
    choose(MODES[next]);
    document.getElementById(`tab-${MODES[next]}`)?.focus();
  };

  const submit = async (event: Event) => {
    event.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      const name = username.trim();
      const tokens =
        mode === "login"
          ? await api.login(name, password)
          : mode === "register"
            ? await api.register(name, password)
            : await api.guest(name);
      onSignedIn(tokens);
    } catch (err) {
      setError(describe(err));
    } finally {
      setBusy(false);
    }
  };

  return (
    <main class="login">
      <div class="login-card">
        <h1 class="brand">
          <img src="/favicon.svg" alt="" width="36" height="36" /> Natter
        </h1>
        <p class="tagline">Real-time chat that never loses a message.</p>
        {notice && <p class="notice">{notice}</p>}
        <div role="tablist" aria-label="How to sign in" class="tabs" onKeyDown={onTabKey}>
          {MODES.map((m) => (
            <button
              type="button"
              role="tab"
              id={`tab-${m}`}
              aria-selected={mode === m}
              aria-controls="signin-panel"
              // Roving focus, as the ARIA tabs pattern has it: Tab enters the selected tab, arrows move between.
              tabIndex={mode === m ? 0 : -1}
              class={mode === m ? "tab active" : "tab"}
              onClick={() => choose(m)}
            >
              {TITLES[m]}
            </button>
          ))}
        </div>
        <div id="signin-panel" role="tabpanel" aria-labelledby={`tab-${mode}`}>
          <form onSubmit={submit}>
            <label>
              {mode === "guest" ? "Your name" : "User name"}
              <input
                name="username"
                autocomplete="username"
                required
                minLength={3}
                maxLength={32}
                pattern="[A-Za-z0-9][A-Za-z0-9_\-]*"
                title="3 to 32 letters, digits, _ or -, starting with a letter or digit"
                value={username}
                onInput={(e) => setUsername(e.currentTarget.value)}
              />
            </label>
            {mode !== "guest" && (
              <label>
                Password
                <input
                  type="password"
                  name="password"
                  autocomplete={mode === "login" ? "current-password" : "new-password"}
                  required
                  minLength={mode === "register" ? 8 : 1}
                  value={password}
                  onInput={(e) => setPassword(e.currentTarget.value)}
                />
              </label>
            )}
            {mode === "guest" && <p class="hint">Guests need no password; the name is yours until you sign out.</p>}
            {error && (
              <p class="error" role="alert">
                {error}
              </p>
            )}
            <button type="submit" class="primary" disabled={busy}>
              {mode === "login" ? "Sign in" : mode === "register" ? "Create account" : "Continue as guest"}
            </button>
          </form>
        </div>
      </div>
    </main>
  );
}
