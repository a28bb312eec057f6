-- Mentions: the room's members a message mentions (`@name`), as the auth API resolved them when a gateway accepted
-- the message: a JSON array of {"id","name"}, NULL when it mentions nobody. Indexed (on every partition) for "the
-- messages that mention me": `mentions @> '[{"id":"…"}]'`.
ALTER TABLE messages ADD COLUMN mentions jsonb;
CREATE INDEX messages_mentions_idx ON messages USING gin (mentions jsonb_path_ops) WHERE mentions IS NOT NULL;
