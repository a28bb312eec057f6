/**
 * One WebSocket to a gateway at a time, kept up: assignment, the token, `hello`, liveness pings, and reconnects
 * with jittered backoff, each close code handled as docs/protocol.md says.
 *
 * It knows nothing of rooms: the client above it rejoins them when a new `hello` arrives.
 */

import { backoffDelay, DEFAULT_BACKOFF, type BackoffOptions } from "./backoff";
import { Close, parseServerFrame, SUBPROTOCOL, type ClientFrame, type ServerFrame, type UserRef } from "./frames";

/** The part of the WebSocket API used here; the browser's `WebSocket` and test doubles both fit. */
export interface SocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
}

/** Opens a socket (in browsers: `(url, protocols) => new WebSocket(url, protocols)`). */
export type SocketFactory = (url: string, protocols: string[]) => SocketLike;

/** The connection as a person experiences it. */
export type ConnectionStatus =
  | { state: "connecting"; attempt: number }
  | { state: "online"; gateway: string; conn: string }
  | { state: "reconnecting"; attempt: number; retryAt: number; reason: string }
  | { state: "offline"; reason: string };

/** The `hello` of a new connection. */
export interface Hello {
  conn: string;
  gateway: string;
  user: UserRef;
}

export interface ConnectionOptions {
  socket: SocketFactory;
  /** A gateway to connect to (its URL, and its id when known), passing over the ids in `avoid` where possible. */
  gatewayUrl: (avoid: string[]) => Promise<{ url: string; id?: string }>;
  /** A valid access token; `fresh` asks for a newly refreshed one (after 4001). */
  token: (fresh: boolean) => Promise<string>;
  /** Every frame after `hello`. */
  onFrame: (frame: ServerFrame) => void;
  /** A connection is up and greeted: time to (re)join rooms. */
  onHello: (hello: Hello) => void;
  onStatus: (status: ConnectionStatus) => void;
  /**
   * The gateway closed with 4003: the session of `token` (the one the socket was opened with) was revoked. The
   * connection has stopped for good; the owner of the session signs out.
   */
  onSessionRevoked?: (token: string | undefined) => void;
  backoff?: BackoffOptions;
  /** How long to wait for `hello` after asking for a socket (ms). */
  helloTimeoutMs?: number;
  /** How often to ping the gateway (ms). */
  pingIntervalMs?: number;
  /** A connection that has received nothing for this long is presumed dead (ms). */
  silenceTimeoutMs?: number;
}

/** A reconnect that need not wait (a restart, a new token): within 250 ms, spread so that a gateway's clients do not
 * all come back in the same instant. */
const PROMPT_RETRY: BackoffOptions = { first: 250, max: 250, jitter: [0, 1] };

/** Close codes after which reconnecting would only repeat the problem (a client bug). 4003 stops too, but is no bug. */
const FATAL = new Set<number>([Close.ProtocolError, Close.InvalidData, Close.Policy, Close.TooBig]);

export class Connection {
  private socket: SocketLike | undefined;
  private status: ConnectionStatus = { state: "offline", reason: "not started" };
  private attempt = 0;
  /** Bumped for every socket, so callbacks of an abandoned one are ignored. */
  private generation = 0;
  /** The gateway of the current (or last) connection: greeted, or only assigned. */
  private gateway: string | undefined;
  /** The access token the current socket was opened with. */
  private openedWith: string | undefined;
  private lastRestart = 0;
  private readonly avoid = new Set<string>();
  private freshToken = false;
  private failuresBeforeHello = 0;
  private running = false;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private helloTimer: ReturnType<typeof setTimeout> | undefined;
  private pingTimer: ReturnType<typeof setInterval> | undefined;
  private lastHeard = 0;
  private pings = 0;

  constructor(private readonly options: ConnectionOptions) {}

  /** The current status. */
  get current(): ConnectionStatus {
    return this.status;
  }

  /** The access token the current connection was opened with. */
  get token(): string | undefined {
    return this.openedWith;
  }

  /** Whether frames can be sent now (greeted and open). */
  get online(): boolean {
    return this.status.state === "online";
  }

  /** Starts connecting (and keeps reconnecting until {@link stop}). */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.attempt = 0;
    void this.connect();
  }

  /** Closes the connection for good (sign-out, page close). */
  stop(reason = "stopped"): void {
    this.running = false;
    clearTimeout(this.retryTimer);
    this.abandon(Close.Normal, "client closing");
    this.setStatus({ state: "offline", reason });
  }

  /** Skips the wait of a pending retry (the network came back, or the person asked). */
  reconnectNow(): void {
    if (!this.running) {
      this.running = true;
    } else if (this.status.state !== "reconnecting" && this.status.state !== "offline") {
      return;
    }
    clearTimeout(this.retryTimer);
    this.attempt = 0;
    void this.connect();
  }

  /**
   * Drops the connection and reconnects at once with a newly refreshed token (the gateway refused an in-band
   * refresh): at most once every 30 s, so a token the gateway keeps refusing cannot make a loop.
   */
  restartWithFreshToken(): void {
    if (!this.running || Date.now() - this.lastRestart < 30_000) return;
    this.lastRestart = Date.now();
    this.abandon(Close.Normal, "reconnecting with a new token");
    this.freshToken = true;
    this.retry("renewing the access token", true);
  }

  /** Sends a frame; false when not online (the caller keeps it for after the reconnect). */
  send(frame: ClientFrame): boolean {
    if (!this.online || !this.socket) return false;
    try {
      this.socket.send(JSON.stringify(frame));
      return true;
    } catch {
      return false;
    }
  }

  private async connect(): Promise<void> {
    const generation = ++this.generation;
    this.setStatus({ state: "connecting", attempt: this.attempt });
    let url: string;
    let token: string;
    try {
      token = await this.options.token(this.freshToken);
      this.freshToken = false;
      const assigned = await this.options.gatewayUrl([...this.avoid]);
      url = assigned.url;
      // Known before `hello`, so a gateway that refuses or never answers is passed over next time too.
      this.gateway = assigned.id;
    } catch (err) {
      if (generation !== this.generation) return;
      this.retry(describe(err), false);
      return;
    }
    if (generation !== this.generation || !this.running) return;
    let socket: SocketLike;
    try {
      socket = this.options.socket(url, [SUBPROTOCOL, token]);
    } catch (err) {
      this.retry(describe(err), false);
      return;
    }
    this.socket = socket;
    this.openedWith = token;
    this.helloTimer = setTimeout(() => {
      if (generation === this.generation) this.lost(0, "the gateway did not answer");
    }, this.options.helloTimeoutMs ?? 10_000);
    socket.onmessage = (event) => {
      if (generation !== this.generation || typeof event.data !== "string") return;
      this.lastHeard = Date.now();
      const frame = parseServerFrame(event.data);
      if (!frame) return;
      if (frame.type === "hello") {
        this.greeted(frame);
        return;
      }
      this.options.onFrame(frame);
    };
    socket.onclose = (event) => {
      if (generation === this.generation) this.lost(event.code, event.reason);
    };
    socket.onerror = () => {
      // A close event always follows; it decides what happens next.
    };
  }

  private greeted(hello: Hello): void {
    clearTimeout(this.helloTimer);
    this.attempt = 0;
    this.failuresBeforeHello = 0;
    this.avoid.clear();
    this.gateway = hello.gateway;
    this.setStatus({ state: "online", gateway: hello.gateway, conn: hello.conn });
    this.startPings();
    this.options.onHello(hello);
  }

  /** The socket ended (or is given up on); decides how to come back. */
  private lost(code: number, reason: string): void {
    const wasOnline = this.status.state === "online";
    this.abandon(4000, "presumed dead");
    if (!this.running) return;
    if (!wasOnline) this.failuresBeforeHello += 1;
    if (FATAL.has(code)) {
      this.running = false;
      this.setStatus({ state: "offline", reason: `disconnected by the server: ${reason || code}` });
      return;
    }
    if (code === Close.SessionRevoked) {
      // No token of this session will be accepted again: reconnecting would only be refused.
      this.running = false;
      clearTimeout(this.retryTimer);
      this.setStatus({ state: "offline", reason: "the session was ended" });
      this.options.onSessionRevoked?.(this.openedWith);
      return;
    }
    if (code === Close.TokenExpired) {
      this.freshToken = true;
      this.retry("the access token expired", true);
      return;
    }
    // Whatever else happened, prefer another gateway next time: this one is going away, overloaded or gone.
    if (this.gateway) this.avoid.add(this.gateway);
    // Refused before `hello` twice in a row: the token may be stale (keys rotated, clock skew); get a new one,
    // once per streak of failures rather than on every attempt of an outage.
    if (this.failuresBeforeHello === 2) this.freshToken = true;
    if (code === Close.Restart) {
      this.retry("the gateway is restarting", true);
      return;
    }
    this.retry(reason || (wasOnline ? "connection lost" : "cannot connect"), false);
  }

  private retry(reason: string, immediately: boolean): void {
    if (!this.running) return;
    clearTimeout(this.retryTimer);
    const delay = immediately
      ? backoffDelay(0, PROMPT_RETRY)
      : backoffDelay(this.attempt, this.options.backoff ?? DEFAULT_BACKOFF);
    this.attempt += 1;
    this.setStatus({ state: "reconnecting", attempt: this.attempt, retryAt: Date.now() + delay, reason });
    this.retryTimer = setTimeout(() => void this.connect(), delay);
  }

  /** Drops the current socket without waiting for its close event. */
  private abandon(code: number, reason: string): void {
    this.generation += 1;
    clearTimeout(this.helloTimer);
    clearInterval(this.pingTimer);
    const socket = this.socket;
    this.socket = undefined;
    if (!socket) return;
    socket.onopen = socket.onmessage = socket.onclose = socket.onerror = null;
    try {
      if (socket.readyState <= 1) socket.close(code, reason);
    } catch {
      // Closing a socket that is already gone.
    }
  }

  private startPings(): void {
    clearInterval(this.pingTimer);
    const interval = this.options.pingIntervalMs ?? 20_000;
    const silence = this.options.silenceTimeoutMs ?? 45_000;
    this.lastHeard = Date.now();
    this.pingTimer = setInterval(() => {
      if (Date.now() - this.lastHeard > silence) {
        this.lost(0, "the gateway stopped answering");
        return;
      }
      this.send({ type: "ping", id: `p${++this.pings}` });
    }, interval);
  }

  private setStatus(status: ConnectionStatus): void {
    this.status = status;
    this.options.onStatus(status);
  }
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
