/** Signed out: the sign-in page. Signed in: the chat, with one live client for the session. */

import { useEffect, useState } from "preact/hooks";

import type { Api } from "../natter/api";
import { NatterClient } from "../natter/client";
import type { Session, SignOutReason } from "../natter/session";
import { browserSocket } from "./browser";
import { Chat } from "./Chat";
import { Login } from "./Login";

const ENDED: Record<SignOutReason, string> = {
  expired: "Your session has ended. Sign in again.",
  elsewhere: "You signed out in another tab.",
  revoked: "You were signed out: this session was ended (logged out elsewhere). Sign in again.",
  logout: "",
};

export function App({ api, session }: { api: Api; session: Session }) {
  const [user, setUser] = useState(session.user);
  const [notice, setNotice] = useState<string>();
  const [client, setClient] = useState<NatterClient>();

  useEffect(
    () =>
      session.subscribe((event) => {
        if (event.type === "signed_out") {
          setNotice(ENDED[event.reason] || undefined);
          setUser(undefined);
        } else {
          setUser(session.user);
        }
      }),
    [session],
  );

  useEffect(() => {
    if (!user) {
      setClient(undefined);
      return;
    }
    const live = new NatterClient({ api, session, socket: browserSocket });
    setClient(live);
    void live.start();
    const visibility = () => live.setVisible(document.visibilityState === "visible");
    const online = () => live.reconnectNow();
    visibility();
    document.addEventListener("visibilitychange", visibility);
    addEventListener("online", online);
    addEventListener("focus", visibility);
    return () => {
      document.removeEventListener("visibilitychange", visibility);
      removeEventListener("online", online);
      removeEventListener("focus", visibility);
      live.stop();
    };
  }, [user?.id]);

  if (!user) {
    return (
      <Login
        api={api}
        notice={notice}
        onSignedIn={(tokens) => {
          setNotice(undefined);
          session.begin(tokens);
        }}
      />
    );
  }
  if (!client) return null;
  return <Chat api={api} client={client} session={session} />;
}
