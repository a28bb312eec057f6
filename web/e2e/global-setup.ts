/** Brings the stack up once for every test: `./natter up` plus two gateways. */

import { chmodSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { freePort, ROOT, saveState, startGateway, startStack, type StackState } from "./stack";

export default async function globalSetup(): Promise<void> {
  const dataDir = mkdtempSync(join(tmpdir(), "natter-e2e-"));
  // PostgreSQL runs as its own user and must reach its data directory.
  chmodSync(dataDir, 0o755);
  process.env.NATTER_E2E_STATE = join(dataDir, "stack.json");
  const { pid, endpoints } = await startStack(dataDir);
  const api = String(endpoints.api);
  const state: StackState = {
    root: ROOT,
    api,
    natsUrl: String(endpoints.nats_url),
    natsCredentials: String(endpoints.nats_credentials),
    dataDir,
    binDir: process.env.NATTER_BIN_DIR ?? join(ROOT, "target", "debug"),
    upPid: pid,
    gateways: [
      { id: "gw-a", port: await freePort() },
      { id: "gw-b", port: await freePort() },
    ],
  };
  saveState(state);
  process.env.NATTER_E2E_API = api;
  for (let i = 0; i < state.gateways.length; i++) await startGateway(state, i);
}
