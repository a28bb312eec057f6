-- Full-text search of messages: a GIN index of each message's words as it reads now (the persister folds an edit's
-- text into its message's row and empties a deleted one's, so old words are not found). Declared on the partitioned
-- table, it is built on every partition and on each one created later: one index per partition, dropped with it.
-- The 'simple' configuration splits words and lower-cases them without a language's stemming or stop words: chat is
-- written in many languages, and a word is found as it was written.
CREATE INDEX messages_search_idx ON messages USING gin (to_tsvector('simple', body)) WHERE kind = 'message';
