-- Read cursors: how far each member has read each room, so unread counts follow a user across devices.

-- The highest sequence the member has seen in the room. Only ever raised (PUT /api/rooms/{id}/read); a new member
-- starts at the room's last stored message, so only what arrives after joining counts as unread.
ALTER TABLE memberships ADD COLUMN read_seq bigint NOT NULL DEFAULT 0 CHECK (read_seq >= 0);

-- Members from before cursors existed have read everything stored so far: an upgrade marks nothing unread.
UPDATE memberships m SET read_seq = coalesce((SELECT max(seq) FROM messages WHERE room_id = m.room_id), 0);
