/**
 * The real stack the browser tests run against: `./natter up` on free ports for NATS, PostgreSQL, the auth API
 * (serving the built client) and the persister, plus two gateways started here so tests can kill and restart
 * them. What is running is kept in a state file, so every test process and the teardown see the same stack.
 */

import { spawn } from "node:child_process";
import { openSync, readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export interface GatewayState {
  id: string;
  port: number;
  pid?: number;
}

export interface StackState {
  root: string;
  api: string;
  natsUrl: string;
  /** The file of the NATS users' passwords `natter up` made (`nats_credentials` in its endpoints). */
  natsCredentials: string;
  dataDir: string;
  binDir: string;
  upPid: number;
  gateways: GatewayState[];
}

/** The repository's root (this file is web/e2e/stack.ts). */
export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

function statePath(): string {
  const path = process.env.NATTER_E2E_STATE;
  if (!path) throw new Error("NATTER_E2E_STATE is not set: run the tests with `npx playwright test`");
  return path;
}

export function loadState(): StackState {
  return JSON.parse(readFileSync(statePath(), "utf8")) as StackState;
}

export function saveState(state: StackState): void {
  writeFileSync(statePath(), JSON.stringify(state, null, 2));
}

/** A TCP port nothing listens on right now. */
export async function freePort(): Promise<number> {
  for (;;) {
    const port = 20_000 + Math.floor(Math.random() * 30_000);
    const free = await new Promise<boolean>((resolve) => {
      const server = createServer();
      server.once("error", () => resolve(false));
      server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
    });
    if (free) return port;
  }
}

export async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what}: not within ${timeoutMs} ms`);
}

const ok = async (url: string) => (await fetch(url)).ok;

/** Whether a process exists (and is not a zombie awaiting its parent). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return !/^\S+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
}

/** The password of NATS role `role` (`GATEWAY`, `AUTH_API`, ...) from the stack's credentials file. */
function natsPassword(state: StackState, role: string): string {
  const line = readFileSync(state.natsCredentials, "utf8")
    .split("\n")
    .find((l) => l.startsWith(`NATTER_NATS_${role}_PASSWORD=`));
  if (!line) throw new Error(`no NATS password for ${role} in ${state.natsCredentials}`);
  return line.slice(line.indexOf("=") + 1);
}

/** Starts gateway `index` (0-based) on its port with its id (and `env` on top); returns once it is ready. */
export async function startGateway(state: StackState, index: number, env: Record<string, string> = {}): Promise<void> {
  const gateway = state.gateways[index];
  const log = openSync(join(state.dataDir, `e2e-${gateway.id}.log`), "a");
  const child = spawn(join(state.binDir, "natter-gateway"), [], {
    detached: true,
    stdio: ["ignore", log, log],
    env: {
      ...process.env,
      NATS_URL: state.natsUrl,
      // The gateway's own NATS user (deploy/nats/auth.conf), as `natter up` gives its gateways.
      NATS_USER: "natter-gateway",
      NATS_PASSWORD: natsPassword(state, "GATEWAY"),
      NATTER_GATEWAY_LISTEN: `127.0.0.1:${gateway.port}`,
      NATTER_GATEWAY_ID: gateway.id,
      NATTER_JWKS_URL: `${state.api}/.well-known/jwks.json`,
      NATTER_ALLOWED_ORIGINS: state.api,
      // Fast heartbeats: the API sees load, drains and deaths within a second.
      NATTER_HEARTBEAT_INTERVAL: "250ms",
      NATTER_DRAIN_JITTER: "500ms",
      NATTER_DRAIN_GRACE: "10s",
      RUST_LOG: "info",
      ...env,
    },
  });
  child.unref();
  gateway.pid = child.pid;
  saveState(state);
  await waitFor(`gateway ${gateway.id} ready`, () => ok(`http://127.0.0.1:${gateway.port}/readyz`));
}

/** Sends `signal` to gateway `index` and waits for it to exit. */
export async function stopGateway(state: StackState, index: number, signal: NodeJS.Signals): Promise<void> {
  const gateway = state.gateways[index];
  if (!gateway.pid) return;
  const pid = gateway.pid;
  try {
    process.kill(pid, signal);
  } catch {
    // Gone already.
  }
  await waitFor(`gateway ${gateway.id} exited after ${signal}`, async () => !alive(pid), 20_000);
  gateway.pid = undefined;
  saveState(state);
}

/** The index of the gateway with this id. */
export function gatewayIndex(state: StackState, id: string): number {
  const index = state.gateways.findIndex((g) => g.id === id);
  if (index < 0) throw new Error(`no gateway ${id} in the stack`);
  return index;
}

/** Starts `./natter up --json` with no gateways of its own, on free ports; returns its endpoints line. */
export async function startStack(dataDir: string): Promise<{ pid: number; endpoints: Record<string, unknown> }> {
  const [api, nats, pg, persister, admin] = [await freePort(), await freePort(), await freePort(), await freePort(), await freePort()];
  const log = openSync(join(dataDir, "natter-up.err"), "a");
  const child = spawn(
    join(ROOT, "natter"),
    ["up", "--json", "--gateways", "0", "--api-port", `${api}`, "--nats-port", `${nats}`, "--pg-port", `${pg}`,
      // A free admin port too, so a second stack (another checkout's tests) can run beside this one.
      "--persister-port", `${persister}`, "--admin-port", `${admin}`, "--data-dir", join(dataDir, "data"),
      // `./natter test` builds the services first and compiles the Rust tests meanwhile: a build here would wait
      // for that one to end.
      ...(process.env.NATTER_E2E_NO_BUILD ? ["--no-build"] : [])],
    // Access tokens of 20 s: every test then lives through in-band token refreshes (at 80%, 16 s), and a tab
    // that failed to refresh would be closed with 4001 within the test.
    { detached: true, stdio: ["ignore", "pipe", log], env: { ...process.env, NATTER_ACCESS_TOKEN_TTL: "20s" } },
  );
  child.unref();
  const line = await new Promise<string>((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error("`natter up` printed no endpoints within 10 minutes")), 600_000);
    child.stdout?.on("data", (chunk: Buffer) => {
      out += chunk.toString();
      const newline = out.indexOf("\n");
      if (newline >= 0) {
        clearTimeout(timer);
        resolve(out.slice(0, newline));
      }
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`\`natter up\` exited with ${code}; see ${join(dataDir, "natter-up.err")}`));
    });
  });
  child.stdout?.destroy();
  if (child.pid === undefined) throw new Error("natter up did not start");
  return { pid: child.pid, endpoints: JSON.parse(line) as Record<string, unknown> };
}

/** Restarts every gateway (SIGTERM, so clients are drained), with `env` on top of the usual settings. */
export async function restartGateways(state: StackState, env: Record<string, string> = {}): Promise<void> {
  for (let i = 0; i < state.gateways.length; i++) {
    await stopGateway(state, i, "SIGTERM");
    await startGateway(state, i, env);
  }
}
