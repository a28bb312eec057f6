/**
 * Searching messages by their words: the API's search over the user's rooms (or one room), and which words of a
 * message found the query matched, so a front-end can mark them.
 *
 * The server matches as PostgreSQL's full-text search with its `simple` configuration does: whole words, in any
 * case, without stemming; `"a phrase"`, `or` and `-word` work as in a web search. {@link searchTerms} and
 * {@link highlight} follow the same rules closely enough to show what was found (a phrase's words are marked
 * wherever they stand).
 */

import { ApiError, type SearchOptions, type SearchPage } from "./api";
import type { ClientContext } from "./context";

/** Longest query the API takes, in characters. */
export const MAX_QUERY_CHARS = 200;

export class Search {
  constructor(private readonly ctx: ClientContext) {}

  /**
   * A page of the messages `query` finds: in every room the user is a member of, or in `options.room`. An empty
   * or overlong query is refused here, as the API would (`invalid_query`), without asking it.
   */
  find(query: string, options: SearchOptions = {}): Promise<SearchPage> {
    const words = query.trim();
    if (!words || [...query].length > MAX_QUERY_CHARS) {
      return Promise.reject(
        new ApiError(400, "invalid_query", `type 1 to ${MAX_QUERY_CHARS} characters of words to search for`),
      );
    }
    const author = options.author?.trim();
    return this.ctx.api.search(this.ctx.token, words, { ...options, author: author || undefined });
  }
}

/** A word as the server's parser cuts them: letters (with their marks) and digits. */
const WORD = /[\p{L}\p{M}\p{N}]+/gu;

/**
 * The words a query looks for, lower-cased, each once: its words and its phrases' words, without the operator
 * `or` and without the words it excludes (`-word`, `-"a phrase"`).
 */
export function searchTerms(query: string): string[] {
  const terms = new Set<string>();
  // A quoted phrase (the closing quote may be missing), or a run of anything but spaces and quotes.
  for (const chunk of query.matchAll(/(-?)"([^"]*)"?|[^\s"]+/g)) {
    const phrase = chunk[2] !== undefined;
    if (phrase ? chunk[1] === "-" : chunk[0].startsWith("-")) continue;
    const text = phrase ? chunk[2] : chunk[0];
    if (!phrase && text.toLowerCase() === "or") continue;
    for (const word of text.matchAll(WORD)) terms.add(word[0].toLowerCase());
  }
  return [...terms];
}

/** A piece of a text: marked when it is one of the words searched for. */
export interface Piece {
  text: string;
  mark: boolean;
}

/** `text` cut into pieces, the words among `terms` (lower-case, as from {@link searchTerms}) marked. */
export function highlight(text: string, terms: readonly string[]): Piece[] {
  const wanted = new Set(terms);
  const pieces: Piece[] = [];
  let last = 0;
  if (wanted.size) {
    for (const word of text.matchAll(WORD)) {
      if (!wanted.has(word[0].toLowerCase())) continue;
      const at = word.index ?? 0;
      if (at > last) pieces.push({ text: text.slice(last, at), mark: false });
      pieces.push({ text: word[0], mark: true });
      last = at + word[0].length;
    }
  }
  if (last < text.length) pieces.push({ text: text.slice(last), mark: false });
  return pieces;
}

/**
 * At most about `max` characters of `text`, around the first word searched for (so a match deep in a long
 * message shows), with "…" where it was cut. A short text is whole.
 */
export function excerpt(text: string, terms: readonly string[], max = 280): string {
  if (text.length <= max) return text;
  let start = 0;
  const pieces = highlight(text, terms);
  const first = pieces.findIndex((piece) => piece.mark);
  if (first > 0) {
    const at = pieces.slice(0, first).reduce((sum, piece) => sum + piece.text.length, 0);
    // A little of what comes before the word, and as much as fits after it.
    start = Math.max(0, Math.min(at - Math.floor(max / 4), text.length - max));
    // Start at a word's beginning when one is near.
    const space = text.slice(start, start + 30).search(/\s/);
    if (start > 0 && space >= 0 && start + space < at) start += space + 1;
  }
  let end = Math.min(text.length, start + max);
  // Never cut between the two halves of a character outside the basic plane.
  if (start > 0 && isLowSurrogate(text.charCodeAt(start))) start += 1;
  if (end < text.length && isLowSurrogate(text.charCodeAt(end))) end -= 1;
  return `${start > 0 ? "…" : ""}${text.slice(start, end).trimEnd()}${end < text.length ? "…" : ""}`;
}

function isLowSurrogate(code: number): boolean {
  return code >= 0xdc00 && code <= 0xdfff;
}
