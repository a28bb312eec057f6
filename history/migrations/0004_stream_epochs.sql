-- History survives the chat stream being deleted and recreated: each incarnation of the stream is an epoch (its
-- creation time in Unix microseconds), its sequences start again at 1, and rows are keyed by (epoch, seq) so a
-- new epoch's messages never collide with an old one's. `position` (epoch + seq) is the one order across epochs
-- that clients see as `seq` (natter-stream's epoch module). Rows stored before epochs were recorded keep epoch 0:
-- their position is their sequence, before every later epoch.
ALTER TABLE messages ADD COLUMN epoch bigint NOT NULL DEFAULT 0 CHECK (epoch >= 0);
ALTER TABLE messages ADD COLUMN position bigint GENERATED ALWAYS AS (epoch + seq) STORED;
ALTER TABLE messages DROP CONSTRAINT messages_pkey;
ALTER TABLE messages ADD PRIMARY KEY (epoch, seq);
DROP INDEX messages_room_seq_idx;
-- Keyset pagination of one room by position, both ways.
CREATE INDEX messages_room_position_idx ON messages (room_id, position);

ALTER TABLE dead_letters ADD COLUMN epoch bigint NOT NULL DEFAULT 0 CHECK (epoch >= 0);
ALTER TABLE dead_letters DROP CONSTRAINT dead_letters_pkey;
ALTER TABLE dead_letters ADD PRIMARY KEY (epoch, seq);
