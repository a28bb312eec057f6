//! Refresh tokens out of the page's reach: browsers keep theirs in an `HttpOnly` cookie.
//!
//! A request carrying `Natter-Refresh-Token: cookie` is in cookie mode: the tokens it gets (register, login,
//! guest, refresh) come with the refresh token in a cookie, `HttpOnly; Secure; SameSite=Strict`, set for the two
//! paths that read it (`/api/refresh` and `/api/logout`) and no other, and without `refresh_token` in the JSON
//! body; a refresh or a logout in cookie mode reads the refresh token from the cookie. So script on the page
//! (anything an XSS slip could run) never holds the refresh token: it can use the session while the page is open,
//! but cannot carry it off. Without the header (the load-test harness, API clients, the tests) everything stays as
//! it was: the refresh token in the body both ways, cookies neither set nor read.
//!
//! The header is one a page of another origin cannot send without a CORS preflight, which the API never grants:
//! with `SameSite=Strict` (no cookie on cross-site requests), it keeps other sites, sibling subdomains included,
//! from refreshing or ending the session with the cookie.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use chrono::{DateTime, Utc};

/// The request header that asks for cookie mode, with the value [`COOKIE_MODE`].
pub const MODE_HEADER: &str = "natter-refresh-token";
/// The value of [`MODE_HEADER`] that asks for cookie mode.
pub const COOKIE_MODE: &str = "cookie";
/// The cookie's name.
pub const COOKIE: &str = "natter_refresh";
/// The paths the cookie is set for: the routes that read it.
pub const PATHS: [&str; 2] = ["/api/refresh", "/api/logout"];

/// Whether a request is in cookie mode, and the refresh token its cookie holds.
#[derive(Debug, Clone, Default)]
pub struct RefreshMode {
    /// The request asked for cookie mode.
    pub cookie: bool,
    /// The cookie's refresh token, in cookie mode, when the request carried the cookie.
    pub presented: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for RefreshMode {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let cookie = parts
            .headers
            .get(MODE_HEADER)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(COOKIE_MODE.as_bytes()));
        if !cookie {
            return Ok(Self::default());
        }
        Ok(Self {
            cookie,
            presented: from_cookies(&parts.headers),
        })
    }
}

/// The refresh token in the request's `Cookie` headers, if any (the first, which is the one of the longest
/// path).
fn from_cookies(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim().to_owned())
        .filter(|value| !value.is_empty())
}

/// `Set-Cookie` headers keeping `token`, which expires at `expires_at`, for every path that reads it.
pub fn set(token: &str, expires_at: DateTime<Utc>) -> HeaderMap {
    let max_age = (expires_at - Utc::now()).num_seconds().max(0);
    cookies(token, max_age)
}

/// `Set-Cookie` headers that remove the cookie from every path.
pub fn clear() -> HeaderMap {
    cookies("", 0)
}

fn cookies(value: &str, max_age: i64) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for path in PATHS {
        let cookie = format!("{COOKIE}={value}; Path={path}; Max-Age={max_age}; HttpOnly; Secure; SameSite=Strict");
        // Refresh tokens are base64url, and the rest is ours: always a valid header value.
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            headers.append(header::SET_COOKIE, value);
        }
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_is_read_from_among_others() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; natter_refresh=tok-1; b=2"),
        );
        assert_eq!(from_cookies(&headers).as_deref(), Some("tok-1"));
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("natter_refreshx=no; x=natter_refresh"),
        );
        assert_eq!(from_cookies(&headers), None);
        headers.append(header::COOKIE, HeaderValue::from_static("natter_refresh="));
        assert_eq!(from_cookies(&headers), None, "an empty cookie is none");
    }

    #[test]
    fn cookies_are_http_only_secure_strict_and_scoped_to_the_routes_that_read_them() {
        let set = set("tok", Utc::now() + chrono::Duration::days(30));
        let values: Vec<&str> = set
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().expect("ascii"))
            .collect();
        assert_eq!(values.len(), 2);
        for (value, path) in values.iter().zip(PATHS) {
            assert!(value.starts_with("natter_refresh=tok; "), "{value}");
            assert!(value.contains(&format!("; Path={path};")), "{value}");
            for attribute in ["; HttpOnly", "; Secure", "; SameSite=Strict", "; Max-Age=259"] {
                assert!(value.contains(attribute), "{attribute} in {value}");
            }
        }
        for value in clear().get_all(header::SET_COOKIE) {
            assert!(value.to_str().expect("ascii").starts_with("natter_refresh=; "));
            assert!(value.to_str().expect("ascii").contains("; Max-Age=0;"));
        }
    }
}
