-- Conversations between people: a direct conversation of two, and a small group (3 to 8 people). Both are private
-- rooms (the stream, history, unread counts, drafts and presence are a room's) that nobody joins by a code: their
-- members are set when they are made.
ALTER TABLE rooms ADD COLUMN kind text NOT NULL DEFAULT 'room' CHECK (kind IN ('room', 'direct', 'group'));

-- A direct conversation's two people, the lower id first: the same pair always finds the same conversation.
ALTER TABLE rooms
    ADD COLUMN direct_low  uuid REFERENCES users (id) ON DELETE CASCADE,
    ADD COLUMN direct_high uuid REFERENCES users (id) ON DELETE CASCADE,
    ADD CONSTRAINT rooms_direct_pair_check CHECK (
        (kind = 'direct') = (direct_low IS NOT NULL AND direct_high IS NOT NULL)
        AND (direct_low IS NULL OR direct_low < direct_high)),
    ADD CONSTRAINT rooms_direct_pair_key UNIQUE (direct_low, direct_high),
    ADD CONSTRAINT rooms_conversations_private_check CHECK (kind = 'room' OR (private AND join_code IS NULL));

-- Who blocked whom. While either of two people blocks the other, their direct conversation is closed to both:
-- neither can start it, join it live or write in it.
CREATE TABLE blocks (
    blocker    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    blocked    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (blocker, blocked),
    CHECK (blocker <> blocked)
);
CREATE INDEX blocks_blocked_idx ON blocks (blocked);
