/** The connection as a person sees it: connecting, online, reconnecting in N s, offline. */

import { useEffect, useState } from "preact/hooks";

import type { NatterClient } from "../natter/client";

export function StatusLine({ client }: { client: NatterClient }) {
  const status = client.status;
  const [, setNow] = useState(0);
  // A countdown needs a tick while waiting to reconnect.
  useEffect(() => {
    if (status.state !== "reconnecting") return;
    const timer = setInterval(() => setNow(Date.now()), 500);
    return () => clearInterval(timer);
  }, [status.state]);

  let text: string;
  let action = false;
  switch (status.state) {
    case "online":
      text = "Online";
      break;
    case "connecting":
      text = status.attempt === 0 ? "Connecting…" : "Reconnecting…";
      break;
    case "reconnecting": {
      const seconds = Math.max(0, Math.ceil((status.retryAt - Date.now()) / 1000));
      text = seconds > 0 ? `Reconnecting in ${seconds} s` : "Reconnecting…";
      action = seconds > 1;
      break;
    }
    case "offline":
      text = `Offline${status.reason && status.reason !== "not started" ? `: ${status.reason}` : ""}`;
      action = status.reason !== "signed out";
      break;
  }
  return (
    <p
      class={`status ${status.state}`}
      role="status"
      data-state={status.state}
      data-gateway={status.state === "online" ? status.gateway : undefined}
      title={status.state === "online" ? `Connected to gateway ${status.gateway}` : undefined}
    >
      <span class="dot" aria-hidden="true" />
      {text}
      {action && (
        <button type="button" class="link" onClick={() => client.reconnectNow()}>
          Reconnect now
        </button>
      )}
    </p>
  );
}
