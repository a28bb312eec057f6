//! What the harness asks of the auth API: tokens for many users (its load-test mode), rooms to talk in, a gateway
//! when none is given, and after the run, the history that `--verify-history` checks.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::Context;
use natter_proto::bus::HistoryMessage;

use crate::accounting::Fold;
use serde::Deserialize;
use serde_json::json;

/// Users one bulk request asks for (the API's cap).
const BULK: usize = 1000;
/// History page size (the API's cap).
const PAGE: usize = 200;

/// A user the harness acts as.
#[derive(Debug, Clone, Deserialize)]
pub struct User {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// An access token.
    pub access_token: String,
}

#[derive(Deserialize)]
struct BulkResponse {
    users: Vec<User>,
    expires_in: u64,
}

#[derive(Deserialize)]
struct RoomResponse {
    id: String,
}

#[derive(Deserialize)]
struct GatewayResponse {
    url: String,
}

#[derive(Deserialize)]
struct HistoryPage {
    messages: Vec<HistoryMessage>,
    has_more: bool,
}

/// A client of the auth API.
#[derive(Clone)]
pub struct Api {
    base: String,
    http: reqwest::Client,
}

/// The error body of the API, for messages.
async fn failure(response: reqwest::Response, what: &str) -> anyhow::Error {
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    anyhow::anyhow!("{what}: HTTP {status}: {}", body.chars().take(300).collect::<String>())
}

impl Api {
    /// A client of the API at `base` (`http://host:port`).
    pub fn new(base: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .context("cannot build an HTTP client")?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            http,
        })
    }

    /// Mints `count` guest users named `{prefix}-{i}` through the load-test mode, returning them and their tokens'
    /// lifetime in seconds.
    pub async fn bulk_guests(&self, key: &str, prefix: &str, count: usize) -> anyhow::Result<(Vec<User>, u64)> {
        let mut users = Vec::with_capacity(count);
        let mut expires_in = u64::MAX;
        let chunks: Vec<_> = (0..count).step_by(BULK).collect();
        // Two requests in flight keep the API busy without queueing behind each other.
        for pair in chunks.chunks(2) {
            let requests = pair.iter().map(|first| {
                let n = BULK.min(count - first);
                let prefix = format!("{prefix}{}", first / BULK);
                self.http
                    .post(format!("{}/api/load-test/guests", self.base))
                    .bearer_auth(key)
                    .json(&json!({"prefix": prefix, "count": n}))
                    .send()
            });
            for response in futures::future::join_all(requests).await {
                let response = response.context("cannot reach the auth API for tokens")?;
                if !response.status().is_success() {
                    return Err(failure(
                        response,
                        "the auth API refused bulk guest tokens (is its load-test mode on, \
                        with the same NATTER_LOAD_TEST_KEY?)",
                    )
                    .await);
                }
                let body: BulkResponse = response.json().await.context("bulk guest answer is not valid")?;
                expires_in = expires_in.min(body.expires_in);
                users.extend(body.users);
            }
        }
        Ok((users, expires_in))
    }

    /// Creates `count` public rooms as `token`'s user, named `{prefix}-{i}`, returning their ids.
    pub async fn create_rooms(&self, token: &str, prefix: &str, count: usize) -> anyhow::Result<Vec<String>> {
        let mut ids = Vec::with_capacity(count);
        for batch in (0..count).collect::<Vec<_>>().chunks(16) {
            let requests = batch.iter().map(|i| {
                self.http
                    .post(format!("{}/api/rooms", self.base))
                    .bearer_auth(token)
                    .json(&json!({"name": format!("{prefix}-{i}")}))
                    .send()
            });
            for response in futures::future::join_all(requests).await {
                let response = response.context("cannot reach the auth API to create rooms")?;
                if !response.status().is_success() {
                    return Err(failure(response, "the auth API refused to create a room").await);
                }
                ids.push(
                    response
                        .json::<RoomResponse>()
                        .await
                        .context("room answer is not valid")?
                        .id,
                );
            }
        }
        Ok(ids)
    }

    /// A gateway URL assigned by the API (direct ingress).
    pub async fn assigned_gateway(&self) -> anyhow::Result<String> {
        let response = self
            .http
            .get(format!("{}/api/gateway", self.base))
            .send()
            .await
            .context("cannot reach the auth API for a gateway")?;
        if !response.status().is_success() {
            return Err(failure(response, "the auth API has no gateway to assign").await);
        }
        Ok(response
            .json::<GatewayResponse>()
            .await
            .context("gateway answer is not valid")?
            .url)
    }

    /// Checks that every acknowledged seq of every room is in the history exactly once, waiting up to `wait` for
    /// the persister to catch up. Returns (missing, duplicated) counts: a duplicate is a (user, client id) stored
    /// under two seqs.
    pub async fn verify_history(
        &self,
        token: &str,
        acked: &HashMap<String, Vec<u64>>,
        views: &BTreeMap<String, BTreeMap<String, u64>>,
        wait: Duration,
    ) -> anyhow::Result<HistoryCheck> {
        let started = Instant::now();
        let deadline = started + wait;
        'check: loop {
            let mut check = HistoryCheck::default();
            for (room, seqs) in acked {
                let stored = match self.room_history(token, room).await {
                    Ok(stored) => stored,
                    // An auth API restarting or a database failing over is what the wait is for, as a persister
                    // catching up is; a refusal (4xx) is not and ends the check at once.
                    Err(HistoryError::Unavailable(why)) if Instant::now() < deadline => {
                        eprintln!("natter-loadtest: history not available yet ({why:#}); trying again");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue 'check;
                    }
                    Err(HistoryError::Unavailable(why) | HistoryError::Refused(why)) => return Err(why),
                };
                let mut ids = HashSet::new();
                let mut stored_seqs = HashSet::new();
                for message in &stored {
                    stored_seqs.insert(message.seq);
                    if !ids.insert((message.message.user.id.as_str(), message.message.id.as_str())) {
                        check.duplicated += 1;
                    }
                }
                check.checked += seqs.len() as u64;
                check.missing += seqs.iter().filter(|seq| !stored_seqs.contains(seq)).count() as u64;
                if let Some(views) = views.get(room) {
                    let history = Fold::digest_of_history(&stored);
                    let newest = stored.iter().map(|m| m.seq).max().unwrap_or(0);
                    for (view, receivers) in views {
                        let (last, digest) = view.split_once(':').unwrap_or(("0", view));
                        // A receiver that stopped before the room's newest event (stored but never acked, so not
                        // waited for) did not see all that the history applied.
                        if last.parse::<u64>().unwrap_or(0) < newest {
                            check.views_incomplete += receivers;
                            continue;
                        }
                        check.views_compared += receivers;
                        if digest != history {
                            check.views_diverged += receivers;
                        }
                    }
                }
            }
            if (check.missing == 0 && check.views_diverged == 0) || Instant::now() >= deadline {
                check.waited_secs = started.elapsed().as_secs_f64();
                return Ok(check);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Reads a room's newest page of 50 messages, as a client opening the room does; whether the API answered
    /// with the page.
    pub async fn newest_page(&self, token: &str, room: &str) -> bool {
        let answer = self
            .http
            .get(format!("{}/api/rooms/{room}/messages?limit=50", self.base))
            .bearer_auth(token)
            .send()
            .await;
        match answer {
            Ok(response) if response.status().is_success() => response.json::<HistoryPage>().await.is_ok(),
            _ => false,
        }
    }

    async fn room_history(&self, token: &str, room: &str) -> Result<Vec<HistoryMessage>, HistoryError> {
        let mut messages = Vec::new();
        let mut after = 0;
        loop {
            let response = self
                .http
                .get(format!(
                    "{}/api/rooms/{room}/messages?after={after}&limit={PAGE}",
                    self.base
                ))
                .bearer_auth(token)
                .send()
                .await
                .context("cannot reach the auth API for history")
                .map_err(HistoryError::Unavailable)?;
            let status = response.status();
            if !status.is_success() {
                let why = failure(response, "the history API refused").await;
                return Err(if status.is_server_error() {
                    HistoryError::Unavailable(why)
                } else {
                    HistoryError::Refused(why)
                });
            }
            let page: HistoryPage = response
                .json()
                .await
                .context("history answer is not valid")
                .map_err(HistoryError::Unavailable)?;
            after = page.messages.last().map_or(after, |m| m.seq);
            let more = page.has_more && !page.messages.is_empty();
            messages.extend(page.messages);
            if !more {
                return Ok(messages);
            }
        }
    }
}

/// Why a room's history could not be read.
enum HistoryError {
    /// No answer, a cut-off answer or a 5xx: worth asking again while the check may wait.
    Unavailable(anyhow::Error),
    /// A 4xx: asking again gets the same.
    Refused(anyhow::Error),
}

/// What `--verify-history` found.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct HistoryCheck {
    /// Acknowledged messages looked for.
    pub checked: u64,
    /// Acknowledged messages not in the history.
    pub missing: u64,
    /// Messages stored more than once.
    pub duplicated: u64,
    /// Seconds from the end of the run until every message was found (or the check gave up): the history's lag.
    pub waited_secs: f64,
    /// Receivers whose folded view of their room (edits, deletions, reactions and replies as they arrived) was
    /// compared with the history's.
    pub views_compared: u64,
    /// Those whose view differed from the history's.
    pub views_diverged: u64,
    /// Receivers not compared: they stopped before their room's newest stored event arrived (a send stored but
    /// never acked, so not waited for).
    pub views_incomplete: u64,
}
