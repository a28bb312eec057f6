//! Latency of what people get beyond rooms: a direct message across two gateways, a read cursor moved on one
//! device reaching the user's other device as a personal event, and a mention reaching a device that is in no
//! room as a personal event.
//!
//! It brings up its own stack (natter-test-support: nats-server, PostgreSQL, the auth API, one persister and two
//! gateways, each the workspace's binary on free ports) and is driven by `scripts/bench-personal.sh`, which says
//! where the binaries are (`NATTER_BIN_DIR`) and prints the figures for docs/benchmarks.md with the machine and the
//! command. Two people: ann on the first gateway; bob with a phone on the first and a laptop on the second.
//!
//! ```text
//! NATTER_BIN_DIR=target/release personal_bench --probes 200
//! ```

// A benchmark's output is its figures on stdout.
#![allow(clippy::print_stdout)]

mod common;

use std::time::{Duration, Instant};

use common::{Ws, connect, join, percentiles, send, until};
use natter_test_support::stack::Stack;
use serde_json::{Value, json};

/// Registers `name` and returns their access token and id.
async fn register(http: &reqwest::Client, api: &str, name: &str) -> (String, String) {
    let answer: Value = http
        .post(format!("{api}/api/register"))
        .json(&json!({"username": name, "password": "correct horse battery"}))
        .send()
        .await
        .expect("register")
        .json()
        .await
        .expect("tokens");
    let token = answer["access_token"].as_str().expect("access token").to_owned();
    let id = answer["user"]["id"].as_str().expect("user id").to_owned();
    (token, id)
}

/// `POST` or `PUT` `body` to `path` as `token`; the answer's JSON.
async fn call(http: &reqwest::Client, method: reqwest::Method, url: String, token: &str, body: Value) -> Value {
    let reply = http
        .request(method, url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("the API answers");
    let status = reply.status();
    let body: Value = reply.json().await.expect("JSON");
    assert!(status.is_success(), "{status}: {body}");
    body
}

/// Sends `body` to `room` as `from` and waits for its ack; the position.
async fn say(from: &mut Ws, room: &str, id: &str, body: &str) -> u64 {
    send(from, json!({"type": "send", "room": room, "id": id, "body": body})).await;
    let ack = until(from, |f| (f["type"] == "ack" && f["id"] == id) || f["type"] == "error").await;
    assert_eq!(ack["type"], "ack", "{ack}");
    ack["seq"].as_u64().expect("seq")
}

fn line(what: &str, samples: Vec<Duration>) -> String {
    let n = samples.len();
    let (p50, p99) = percentiles(samples);
    format!("  {what:<62} p50 {p50:6.1} ms  p99 {p99:6.1} ms  ({n} probes)")
}

#[tokio::main]
async fn main() {
    let mut probes = 200usize;
    let mut flags = std::env::args().skip(1);
    while let Some(flag) = flags.next() {
        match (flag.as_str(), flags.next()) {
            ("--probes", Some(value)) => probes = value.parse().expect("a count"),
            (other, _) => panic!("unknown flag {other} (--probes N)"),
        }
    }
    let stack = Stack::builder().gateways(0).persisters(1).start().await;
    let flags = ["--sends-per-second", "1000000", "--shed-lag", "0s"];
    let (first, second) = (stack.add_gateway(&flags).await, stack.add_gateway(&flags).await);
    let http = reqwest::Client::new();
    let api = stack.api_url();
    let (ann_token, _) = register(&http, &api, "ann").await;
    let (bob_token, _) = register(&http, &api, "bob").await;
    let dm = call(
        &http,
        reqwest::Method::POST,
        format!("{api}/api/conversations/direct"),
        &ann_token,
        json!({"user": "bob"}),
    )
    .await["id"]
        .as_str()
        .expect("conversation id")
        .to_owned();
    let room = call(
        &http,
        reqwest::Method::POST,
        format!("{api}/api/rooms"),
        &ann_token,
        json!({"name": "mentions"}),
    )
    .await["id"]
        .as_str()
        .expect("room id")
        .to_owned();
    call(
        &http,
        reqwest::Method::POST,
        format!("{api}/api/rooms/{room}/join"),
        &bob_token,
        json!({}),
    )
    .await;

    let mut ann = connect(&first, &ann_token).await;
    let mut phone = connect(&first, &bob_token).await;
    let mut laptop = connect(&second, &bob_token).await;
    join(&mut ann, &dm).await;
    join(&mut ann, &room).await;
    join(&mut phone, &dm).await;
    join(&mut laptop, &dm).await;

    let (mut delivered, mut acked, mut read, mut mentioned) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..probes + 10 {
        // A direct message: ann's send to bob's laptop, on the other gateway.
        let id = format!("dm-{i}");
        let started = Instant::now();
        let seq = say(&mut ann, &dm, &id, "are you there?").await;
        let ack = started.elapsed();
        until(&mut laptop, |f| f["type"] == "message" && f["id"] == id).await;
        let arrived = started.elapsed();
        until(&mut phone, |f| f["type"] == "message" && f["id"] == id).await;

        // bob reads it on his phone: his laptop hears of it.
        let started = Instant::now();
        call(
            &http,
            reqwest::Method::PUT,
            format!("{api}/api/rooms/{dm}/read"),
            &bob_token,
            json!({"seq": seq}),
        )
        .await;
        until(&mut laptop, |f| {
            f["type"] == "personal" && f["event"]["kind"] == "read" && f["event"]["room"] == dm.as_str()
        })
        .await;
        let heard = started.elapsed();

        // ann mentions bob in a room his laptop has not joined: the laptop hears of it.
        let started = Instant::now();
        let mention = say(&mut ann, &room, &format!("m-{i}"), "@bob have a look").await;
        until(&mut laptop, |f| {
            f["type"] == "personal" && f["event"]["kind"] == "mentioned" && f["event"]["seq"].as_u64() == Some(mention)
        })
        .await;
        let told = started.elapsed();
        // The first ten warm the paths (room tasks, connections, prepared statements).
        if i >= 10 {
            acked.push(ack);
            delivered.push(arrived);
            read.push(heard);
            mentioned.push(told);
        }
    }
    println!("{probes} probes of each, one after another, with no other load from this benchmark:");
    println!("{}", line("direct message: send to ack (ann)", acked));
    println!(
        "{}",
        line("direct message: send to the other gateway's device (bob)", delivered)
    );
    println!(
        "{}",
        line("read on the phone: PUT /read to the laptop's `read` event", read)
    );
    println!(
        "{}",
        line(
            "mention: send to the `mentioned` event on a device in no room",
            mentioned
        )
    );
}
