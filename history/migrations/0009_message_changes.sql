-- Changes to messages (edits, deletions, reactions) are events on a room's chain like messages: each is a row of
-- `messages` of its own kind, with the position of the message it changes (`target`), and the persister applies
-- it to that message's row in the same transaction (and to `reactions`), so a page of history shows each message
-- as it is now and the change events themselves for a client filling a gap.
ALTER TABLE messages ADD COLUMN kind text NOT NULL DEFAULT 'message'
    CHECK (kind IN ('message', 'edit', 'delete', 'react'));
-- A change's: the position of the message it changes.
ALTER TABLE messages ADD COLUMN target bigint;
-- A message's: the position of the message it answers.
ALTER TABLE messages ADD COLUMN reply_to bigint;
-- A reaction's emoji, and whether it was added (true) or taken back.
ALTER TABLE messages ADD COLUMN emoji text;
ALTER TABLE messages ADD COLUMN reaction_on boolean;
-- A message's state: when it was last edited and by which edit event (an older edit redelivered later does not
-- undo a newer one), and when and by whom it was deleted (the tombstone: its body is then empty, and so are the
-- bodies of its edits).
ALTER TABLE messages ADD COLUMN edited_at timestamptz;
ALTER TABLE messages ADD COLUMN edit_position bigint;
ALTER TABLE messages ADD COLUMN deleted_at timestamptz;
ALTER TABLE messages ADD COLUMN deleted_by text;
-- A message's changes (a deleted message's edits, whose text goes too).
CREATE INDEX messages_room_target_idx ON messages (room_id, target) WHERE target IS NOT NULL;

-- Each user's reaction with each emoji to each message: present or taken back, as of the reaction event at
-- `position` (an older event redelivered later does not undo a newer one).
CREATE TABLE reactions (
    room_id   text NOT NULL,
    target    bigint NOT NULL,
    emoji     text NOT NULL,
    user_id   text NOT NULL,
    present   boolean NOT NULL,
    position  bigint NOT NULL,
    PRIMARY KEY (room_id, target, emoji, user_id)
);
