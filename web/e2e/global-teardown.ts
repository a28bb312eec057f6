/** Stops what the setup (and the tests) started: every gateway, then `./natter up` and all it runs. */

import { existsSync, rmSync } from "node:fs";

import { alive, loadState, waitFor } from "./stack";

export default async function globalTeardown(): Promise<void> {
  // The setup may have failed before the stack was up: then there is nothing to stop.
  if (!process.env.NATTER_E2E_STATE || !existsSync(process.env.NATTER_E2E_STATE)) return;
  const state = loadState();
  for (const gateway of state.gateways) {
    if (gateway.pid && alive(gateway.pid)) process.kill(gateway.pid, "SIGKILL");
  }
  // As Ctrl-C would: SIGINT to natter up's process group, which stops NATS, PostgreSQL and the services.
  try {
    process.kill(-state.upPid, "SIGINT");
  } catch {
    // Gone already.
  }
  await waitFor("natter up stopped", async () => !alive(state.upPid), 30_000).catch(() => {
    try {
      process.kill(-state.upPid, "SIGKILL");
    } catch {
      // Gone.
    }
  });
  if (!process.env.NATTER_E2E_KEEP) rmSync(state.dataDir, { recursive: true, force: true });
}
