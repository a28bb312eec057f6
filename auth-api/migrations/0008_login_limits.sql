-- Failed-login budgets and the addresses users logged in from, shared by every auth API instance: kept in one
-- process's memory, two instances gave a guesser twice the budget and a restart forgot the known addresses.

-- One fixed window of failed logins per budget and key: scope 'pair' is keyed by "ADDRESS USER" (a minute's
-- window), scope 'user' by the user name's key (an hour's window, for addresses the user has not logged in from).
-- A row whose window has ended counts as none; the auth API deletes such rows every minute.
CREATE TABLE login_failures (
    scope        text        NOT NULL CHECK (scope IN ('pair', 'user')),
    key          text        NOT NULL CHECK (char_length(key) <= 200),
    window_start timestamptz NOT NULL,
    failures     integer     NOT NULL CHECK (failures >= 0),
    PRIMARY KEY (scope, key)
);
CREATE INDEX login_failures_window_idx ON login_failures (window_start);

-- (user, address) pairs with a successful login, by when last seen; a pair seen within 30 days is exempt from the
-- per-user budget. Older rows are deleted every minute.
CREATE TABLE login_known_addresses (
    user_key  text        NOT NULL CHECK (char_length(user_key) <= 100),
    address   text        NOT NULL CHECK (char_length(address) <= 64),
    last_seen timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_key, address)
);
CREATE INDEX login_known_addresses_seen_idx ON login_known_addresses (last_seen);
