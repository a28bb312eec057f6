-- Moderation that sticks: moderators the owner appoints, and bans.

-- A moderator may remove and ban members (not the owner, not another moderator) and delete others' messages.
ALTER TABLE memberships DROP CONSTRAINT memberships_role_check;
ALTER TABLE memberships ADD CONSTRAINT memberships_role_check CHECK (role IN ('owner', 'moderator', 'member'));

-- A banned user cannot join the room (public or private, with or without its join code), nor read it, until the
-- owner or a moderator lifts the ban. Banning takes away the membership.
CREATE TABLE room_bans (
    room_id    text NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    banned_by  uuid REFERENCES users (id) ON DELETE SET NULL,
    banned_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX room_bans_user_idx ON room_bans (user_id);
