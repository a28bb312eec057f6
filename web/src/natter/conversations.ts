/**
 * Conversations between people and blocking: starting a direct conversation (by the other person's name) or a
 * group, and the people the user blocks (`GET /api/blocks`, read at the start, when the page is shown again, and
 * after each block or unblock).
 *
 * A conversation is a private room with a `kind` (`direct` or `group`): it is listed, joined, read and written like
 * any room. While one of a direct conversation's two people blocks the other, it is closed to both (membership.ts
 * `closed`): still listed and readable, but not live. The blocker's client does not ask the gateway about it again
 * until the user lifts the block; the other's asks with each join of its rooms (every room listing), so it opens
 * again by itself once the block is lifted.
 */

import { ApiError, type Blocked, type RoomInfo } from "./api";
import type { ClientContext } from "./context";
import type { Room, RoomView } from "./rooms";

/** Whether a room is a conversation between people (direct or group) rather than a room. */
export function isConversation(info: RoomInfo): boolean {
  return info.kind === "direct" || info.kind === "group";
}

/** Whether the other person of a direct conversation is online in it (their client has it joined). */
export function peerOnline(room: RoomView): boolean {
  const peer = room.info.peer;
  return !!peer && room.online.some((user) => user.id === peer.id);
}

/**
 * The user names typed for a group ("bob, cyd dan", "@bob"): split on commas and spaces, each once (names compare
 * without case), without the user's own.
 */
export function parseNames(text: string, me = ""): string[] {
  const seen = new Set([me.toLowerCase()]);
  const names: string[] = [];
  for (const raw of text.split(/[\s,;]+/)) {
    const name = raw.replace(/^@/, "");
    const key = name.toLowerCase();
    if (!name || seen.has(key)) continue;
    seen.add(key);
    names.push(name);
  }
  return names;
}

/** A block lifted here and refused at once by a gateway not told yet: asked again this much later. */
const UNBLOCK_RECHECK_MS = 1_500;

export class Conversations {
  private list: Blocked[] = [];
  /** Users being blocked from here: the gateway's `left` for their conversation is no news. */
  private readonly blocking = new Set<string>();

  constructor(private readonly ctx: ClientContext) {}

  /** The people the user blocks, the latest first. */
  get blocks(): readonly Blocked[] {
    return this.list;
  }

  /** Whether the user blocks `userId` (or is blocking them now). */
  blocked(userId: string): boolean {
    return this.blocking.has(userId) || this.list.some((b) => b.id === userId);
  }

  /** Whether a direct conversation is closed by the user's own block (so only the user can open it again). */
  closedByMe(room: Room): boolean {
    const peer = room.info.peer;
    return room.info.kind === "direct" && !!peer && this.blocked(peer.id);
  }

  /** Re-reads the user's blocks. An API without blocks blocks no one. */
  async loadBlocks(): Promise<void> {
    try {
      this.list = await this.ctx.api.blocks(this.ctx.token);
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 404)) throw err;
      this.list = [];
    }
    this.ctx.emit();
  }

  /** The direct conversation with the user named `name` (started now, or the one the two have), kept and joined. */
  async direct(name: string): Promise<RoomInfo> {
    const info = await this.ctx.api.startDirect(this.ctx.token, name.trim());
    const room = await this.ctx.membership.added(info);
    // The API let them write to each other: a conversation closed by a block is open again.
    if (room.ended === "blocked") this.ctx.live.join(room);
    return info;
  }

  /** A new group of the user and 2 to 7 others (by user name), named `name` or after its people. */
  async group(members: string[], name?: string): Promise<RoomInfo> {
    const info = await this.ctx.api.startGroup(this.ctx.token, members, name?.trim() || undefined);
    await this.ctx.membership.added(info);
    return info;
  }

  /** Blocks a user: their direct conversation with the user closes for both, at once here. */
  async block(userId: string): Promise<void> {
    const { ctx } = this;
    this.blocking.add(userId);
    try {
      await ctx.api.block(ctx.token, userId);
      const known = this.directWith(userId)?.info.peer;
      if (!this.list.some((b) => b.id === userId)) {
        this.list = [{ id: userId, name: known?.name ?? "", since: new Date().toISOString() }, ...this.list];
      }
    } finally {
      this.blocking.delete(userId);
    }
    const room = this.directWith(userId);
    // Closed here without waiting for the gateway to say so (it does, to both).
    if (room) ctx.membership.closed(room, false);
    ctx.emit();
    await this.loadBlocks().catch(() => undefined);
  }

  /**
   * Lifts the user's block: their direct conversation is joined again, which opens it unless the other person
   * blocks the user too. A block lifted already (elsewhere) is refused with `block_not_found`, and opens it too.
   */
  async unblock(userId: string): Promise<void> {
    const { ctx } = this;
    try {
      await ctx.api.unblock(ctx.token, userId);
    } catch (err) {
      if (!(err instanceof ApiError && err.code === "block_not_found")) throw err;
      this.lifted(userId);
      throw err;
    }
    this.lifted(userId);
    await this.loadBlocks().catch(() => undefined);
  }

  /** The user's block of `userId` is gone: their conversation is asked for again. */
  private lifted(userId: string): void {
    const { ctx } = this;
    this.list = this.list.filter((b) => b.id !== userId);
    const room = this.directWith(userId);
    if (room?.ended === "blocked") {
      // A gateway may hear of the lifted block a moment after this join: refused, it is asked once more.
      room.live.recheck = UNBLOCK_RECHECK_MS;
      ctx.live.join(room);
    }
    ctx.emit();
  }

  /** The direct conversation held with `userId`, if any. */
  private directWith(userId: string): Room | undefined {
    for (const room of this.ctx.rooms.all()) {
      if (room.info.kind === "direct" && room.info.peer?.id === userId) return room;
    }
    return undefined;
  }
}
