-- Chat history, written by the persister from the JetStream chat stream; read by the history API.

CREATE TABLE messages (
    -- The JetStream stream sequence: unique per stored message, so a redelivered message is stored once.
    seq        bigint PRIMARY KEY,
    room_id    text NOT NULL,
    -- The id the author's client chose.
    client_id  text NOT NULL,
    user_id    text NOT NULL,
    user_name  text NOT NULL,
    body       text NOT NULL,
    -- When the gateway accepted it.
    sent_at    timestamptz NOT NULL,
    stored_at  timestamptz NOT NULL DEFAULT now()
);
-- Keyset pagination of one room by sequence, both ways.
CREATE INDEX messages_room_seq_idx ON messages (room_id, seq);

-- Stream messages that can never be stored (undecodable, or refused by a constraint), kept with the reason so
-- they never block the stream and can be inspected.
CREATE TABLE dead_letters (
    seq         bigint PRIMARY KEY,
    subject     text NOT NULL,
    payload     bytea NOT NULL,
    reason      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
