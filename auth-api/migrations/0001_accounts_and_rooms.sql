-- Accounts, refresh tokens, signing keys, rooms and memberships.

CREATE TABLE users (
    id            uuid PRIMARY KEY,
    username      text NOT NULL,
    -- Case-folded username: names are unique without regard to case.
    username_key  text NOT NULL UNIQUE,
    -- Argon2id PHC string; NULL for guests, who cannot log in with a password.
    password_hash text,
    is_guest      boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- One row per login: every refresh token rotated from that login belongs to its family. Revoking the family (logout,
-- or reuse of a spent token) is one row update that a concurrent refresh, which locks this row, cannot slip past.
CREATE TABLE token_families (
    id          uuid PRIMARY KEY,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    revoked_at  timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE refresh_tokens (
    id          uuid PRIMARY KEY,
    family_id   uuid NOT NULL REFERENCES token_families (id) ON DELETE CASCADE,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- SHA-256 of the token: the token itself is never stored.
    token_hash  bytea NOT NULL UNIQUE,
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_expiry_idx ON refresh_tokens (expires_at);

CREATE TABLE signing_keys (
    kid          text PRIMARY KEY,
    -- Ed25519 private key as PKCS#8 v1 DER.
    private_der  bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    -- Set when a newer key takes over signing; the key stays in the JWKS until its last token has expired.
    retired_at   timestamptz
);

CREATE TABLE rooms (
    -- Room ids are safe NATS subject tokens; the check repeats RoomId::parse so no other writer can break it.
    id          text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9_-]{1,64}$'),
    name        text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 64),
    private     boolean NOT NULL DEFAULT false,
    owner_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- Private rooms only: the code that lets a non-member join.
    join_code   text,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE memberships (
    room_id    text NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role       text NOT NULL CHECK (role IN ('owner', 'member')),
    joined_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX memberships_user_idx ON memberships (user_id);
