-- Sessions a user can see and end: when each was last refreshed and from where, the successor a spent refresh token
-- hands out again within the reuse grace, and the reasons a session can now be ended for.

-- Listing a user's sessions, and ending them all, looks them up by user.
CREATE INDEX token_families_user_idx ON token_families (user_id);

-- When the session last got tokens (its sign-in or its latest refresh), and the user agent and client address of
-- that request (the address as rate limits see it: IPv6 by its /64). Shown by GET /api/sessions.
ALTER TABLE token_families
    ADD COLUMN last_used_at timestamptz,
    ADD COLUMN user_agent   text CHECK (char_length(user_agent) <= 256),
    ADD COLUMN address      text CHECK (char_length(address) <= 64);
UPDATE token_families f SET last_used_at =
    coalesce((SELECT max(t.created_at) FROM refresh_tokens t WHERE t.family_id = f.id), f.created_at);
ALTER TABLE token_families
    ALTER COLUMN last_used_at SET DEFAULT now(),
    ALTER COLUMN last_used_at SET NOT NULL;

-- The refresh token that rotated this one, sealed with this one: the successor XOR SHA-256 of a label and this
-- token, so only a holder of this (spent) token can open it. A spent token presented again within the reuse grace
-- gets this same successor, not a second live chain. NULL on tokens not yet spent, and on tokens spent before it
-- was kept.
ALTER TABLE refresh_tokens ADD COLUMN successor_sealed bytea CHECK (octet_length(successor_sealed) = 32);

-- A session can also be ended by a password change (every other session of the user) and by its user from the
-- session list (DELETE /api/sessions/{id}, DELETE /api/sessions). The gateways are told of all of them as of a
-- logout.
ALTER TABLE token_families
    DROP CONSTRAINT token_families_revoked_reason_check,
    ADD CONSTRAINT token_families_revoked_reason_check
        CHECK (revoked_reason IN ('logout', 'refresh_reuse', 'password_change', 'ended'));
