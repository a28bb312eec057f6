-- `messages` partitioned by day of `sent_at`, so that history older than the retention (`--history-retention`)
-- goes a whole partition at a time (a DROP TABLE), never as a huge DELETE. The persister creates each day's
-- partition ahead of time (`natter_history::maintain`); rows outside every day's partition (a clock far off, or
-- days the job did not run) land in `messages_default`. The key keeps (epoch, seq) unique together with
-- `sent_at`, which a redelivered message repeats exactly, so redeliveries still hit ON CONFLICT DO NOTHING.
ALTER TABLE messages RENAME TO messages_unpartitioned;
ALTER TABLE messages_unpartitioned RENAME CONSTRAINT messages_pkey TO messages_unpartitioned_pkey;
ALTER INDEX messages_room_position_idx RENAME TO messages_unpartitioned_room_position_idx;

CREATE TABLE messages (
    -- The stream's epoch (its creation time in Unix microseconds; 0 for rows stored before epochs).
    epoch      bigint NOT NULL DEFAULT 0 CHECK (epoch >= 0),
    -- The stream sequence within the epoch.
    seq        bigint NOT NULL,
    room_id    text NOT NULL,
    -- The id the author's client chose.
    client_id  text NOT NULL,
    user_id    text NOT NULL,
    user_name  text NOT NULL,
    body       text NOT NULL,
    -- When the gateway accepted it: the partition key.
    sent_at    timestamptz NOT NULL,
    stored_at  timestamptz NOT NULL DEFAULT now(),
    -- The one order across epochs, what clients see as `seq`.
    position   bigint GENERATED ALWAYS AS (epoch + seq) STORED,
    PRIMARY KEY (epoch, seq, sent_at)
) PARTITION BY RANGE (sent_at);
-- Keyset pagination of one room by position, both ways (one index per partition).
CREATE INDEX messages_room_position_idx ON messages (room_id, position);
CREATE TABLE messages_default PARTITION OF messages DEFAULT;

-- Today's and the next three days' partitions, and one for everything stored before today.
DO $$
DECLARE
    today date := (now() AT TIME ZONE 'UTC')::date;
    day date;
BEGIN
    EXECUTE format(
        'CREATE TABLE messages_before_%s PARTITION OF messages FOR VALUES FROM (MINVALUE) TO (%L)',
        to_char(today, 'YYYYMMDD'), today::timestamp AT TIME ZONE 'UTC');
    FOR i IN 0..3 LOOP
        day := today + i;
        EXECUTE format(
            'CREATE TABLE messages_p%s PARTITION OF messages FOR VALUES FROM (%L) TO (%L)',
            to_char(day, 'YYYYMMDD'), day::timestamp AT TIME ZONE 'UTC', (day + 1)::timestamp AT TIME ZONE 'UTC');
    END LOOP;
END $$;

INSERT INTO messages (epoch, seq, room_id, client_id, user_id, user_name, body, sent_at, stored_at)
SELECT epoch, seq, room_id, client_id, user_id, user_name, body, sent_at, stored_at FROM messages_unpartitioned;
DROP TABLE messages_unpartitioned;
