/**
 * Re-renders a component when the client changes: at most once per animation frame while the page is shown,
 * and a few times a second while it is hidden (animation frames stop then, but the tab title's unread count
 * should still move).
 */

import { useEffect, useState } from "preact/hooks";

import type { NatterClient } from "../natter/client";

export function useClient(client: NatterClient): number {
  const [version, setVersion] = useState(0);
  useEffect(() => {
    let scheduled = false;
    let frame = 0;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const render = () => {
      scheduled = false;
      setVersion((v) => v + 1);
    };
    const unsubscribe = client.subscribe((event) => {
      if (event.type !== "change" || scheduled) return;
      scheduled = true;
      if (document.visibilityState === "visible") frame = requestAnimationFrame(render);
      else timer = setTimeout(render, 250);
    });
    return () => {
      unsubscribe();
      cancelAnimationFrame(frame);
      clearTimeout(timer);
    };
  }, [client]);
  return version;
}
