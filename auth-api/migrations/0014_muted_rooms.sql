-- A member may mute a room or conversation: no notifications, and no unread badge unless a message mentions them.
ALTER TABLE memberships ADD COLUMN muted boolean NOT NULL DEFAULT false;
