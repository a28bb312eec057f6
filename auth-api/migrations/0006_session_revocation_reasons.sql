-- Why a token family (a session) was revoked, so a request that meets it revoked again (a retried logout, a refresh
-- with one of its tokens) can tell the gateways the same reason. NULL on families revoked before this was kept,
-- taken as a logout.
ALTER TABLE token_families
    ADD COLUMN revoked_reason text CHECK (revoked_reason IN ('logout', 'refresh_reuse'));
