//! The fault suite on the shape docker-compose.yml runs: three NATS nodes in a JetStream cluster with the chat
//! stream in three replicas, every service given every node. The harness drives the stack with
//! `--verify-history --max-loss 0` while a node is killed, cut off or restarted, or a whole host is lost, and
//! every acknowledged message must reach every receiver once and in order, and be in the history once.
//! docs/faults.md says what each run measured.

use std::sync::Arc;
use std::time::{Duration, Instant};

use natter_proto::bus::CHAT_STREAM;
use natter_test_support::stack::cut::Cut;
use natter_test_support::stack::{Program, Stack};

use crate::chaos::{
    KEY, TRAFFIC, TRAFFIC_WITHIN, assert_held, count, figures, harness, load, until_ready, watch_readiness, with,
};
use crate::said;

/// A stack on a three-node cluster: two gateways, two persisters, `apis` auth APIs.
async fn cluster_stack(apis: usize) -> Stack {
    Stack::builder()
        .nats_nodes(3)
        .apis(apis)
        .gateways(2)
        .persisters(2)
        .load_test_key(KEY)
        .start()
        .await
}

/// The fault suite's load for `secs` seconds, with the history given up to 90 s to catch up: after a heal or a
/// restart, nats-server 2.9.10's meta group can stay without a leader for half a minute (docs/faults.md, C2), and
/// a persister cannot open a partition whose lease it took over until it has one.
fn cluster_load(stack: &Stack, secs: u64) -> Vec<String> {
    with(load(stack, secs), "--history-timeout", "90s")
}

/// Starts `secs` seconds of load and waits until it flows; the run, the first gateway and the NATS node it is
/// connected to.
async fn load_and_find_the_first_gateway(
    stack: &Stack,
    secs: u64,
) -> (
    tokio::task::JoinHandle<(std::process::Output, serde_json::Value)>,
    Arc<Program>,
    usize,
) {
    let run = harness(cluster_load(stack, secs));
    stack.wait_for_acks(TRAFFIC, TRAFFIC_WITHIN).await;
    let gateway = stack.gateway(0);
    let node = stack
        .nats_node_of(&gateway)
        .expect("the gateway is connected to a node");
    (run, gateway, node)
}

/// Waits until the chat stream has a leader again and every replica caught up.
async fn until_replicated(stack: &Stack) {
    stack.wait_for_replicas(CHAT_STREAM, Duration::from_secs(60)).await;
}

/// 1. The node leading the chat stream killed with SIGKILL and started again 10 s later on its store. The other
/// two elect a new leader (6–8 s on nats-server 2.9.10); sends meanwhile are answered `publish_failed` (outcome
/// unknown), never acked falsely, and the harness sends them again under the same ids: nothing acked is lost,
/// nothing is stored twice. The ack-latency figures show the gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nats_node_leading_the_chat_stream_killed_loses_no_ack() {
    let mut stack = cluster_stack(1).await;
    let secs = 30;
    let run = harness(cluster_load(&stack, secs));
    stack.wait_for_acks(TRAFFIC, TRAFFIC_WITHIN).await;
    let leader = stack
        .nats_leader_of(CHAT_STREAM)
        .await
        .expect("the chat stream has a leader");
    let killed_at = Instant::now();
    tokio::task::block_in_place(|| stack.nats_node_mut(leader).kill());
    // Sends go on through the other nodes once a new leader is elected.
    let mut new_leader = None;
    while new_leader.is_none_or(|l| l == leader) && killed_at.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        new_leader = stack.nats_leader_of(CHAT_STREAM).await;
    }
    let elected_after = killed_at.elapsed();
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(killed_at.elapsed())).await;
    tokio::task::block_in_place(|| stack.nats_node_mut(leader).restart());
    stack.wait_for_nats_node(leader, Duration::from_secs(30)).await;
    let (output, report) = run.await.expect("harness task");
    figures(
        "cluster-leader-kill",
        &report,
        &format!(
            " | node n{} killed, new leader {new_leader:?} after {elected_after:?}",
            leader + 1
        ),
    );
    assert!(
        new_leader.is_some_and(|l| l != leader),
        "no new leader within 30 s: {}",
        stack.logs()
    );
    assert_held(&output, &report, &stack, secs);
}

/// 2. The NATS node a gateway is connected to cut off from the other two by nftables for 20 s, then healed: a
/// partition that leaves it a minority of one while its clients stay connected to it. Nothing sent through it is
/// acked (JetStream needs the quorum), so its gateway answers `publish_failed` and stops claiming readiness; once
/// the node answers that it lost the quorum the gateway moves its NATS connection to another node (late or not
/// at all when the node led the meta group, which keeps answering until it steps down). After the heal nothing is
/// lost or doubled: gaps the gateway saw in its rooms' live feeds are filled from the stream.
///
/// Run on demand, not by `./natter test`: it fails on nats-server 2.9.10, whose replicas can hold different
/// messages at the same sequence after the heal, and failed in one of two runs on 2.10.26 with six acked messages
/// of one room in neither the stream's deliveries nor the history, which is not yet explained (docs/faults.md, C2).
/// `NATS_CLUSTER_SERVER_BIN=target/nats-cluster-venv/bin/nats-server cargo nextest run -p natter-loadtest
/// --run-ignored only cut_off_from_the_cluster` runs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "fails on nats-server 2.9.10 (replicas diverge after the heal) and in 1 of 2 runs on 2.10.26: docs/faults.md, C2"]
async fn a_nats_node_cut_off_from_the_cluster_for_twenty_seconds_gives_no_false_ack() {
    if let Err(why) = Cut::available() {
        eprintln!("skipped: {why}");
        return;
    }
    let stack = cluster_stack(1).await;
    // 20 s cut, then about 25 s of load on the healed cluster: after a heal under load, nats-server 2.9.10 has
    // answered "no stream found" through every node for half a minute before it settled (docs/faults.md, C2).
    let secs = 50;
    let (run, gateway, node) = load_and_find_the_first_gateway(&stack, secs).await;
    let cut = stack.cut_nats_node(node).expect("cut the node off");
    let refused = watch_readiness(std::slice::from_ref(&gateway), Duration::from_secs(20)).await;
    cut.heal();
    let moved_to = stack.nats_node_of(&gateway);
    stack.wait_for_nats_node(node, Duration::from_secs(60)).await;
    until_replicated(&stack).await;
    let (output, report) = run.await.expect("harness task");
    let page = gateway.metrics().await.unwrap_or_default();
    let moves = natter_test_support::metrics_page::value(&page, "natter_nats_quorum_moves_total").unwrap_or(0.0);
    figures(
        "cluster-partition",
        &report,
        &format!(
            " | node n{} cut 20 s | gateway unready meanwhile {refused:?} | moved to node {moved_to:?} ({moves} moves)",
            node + 1
        ),
    );
    assert_held(&output, &report, &stack, secs);
    assert!(
        refused[0],
        "the gateway claimed readiness on a node cut off from the quorum: {}",
        stack.logs()
    );
}

/// `POST /api/login` at `api` for `user`; the status, 0 if there was no answer.
async fn login(api: &Program, user: &str, password: &str) -> u16 {
    let body = serde_json::json!({"username": user, "password": password});
    match reqwest::Client::new()
        .post(api.http_url("/api/login"))
        .json(&body)
        .send()
        .await
    {
        Ok(reply) => reply.status().as_u16(),
        Err(_) => 0,
    }
}

/// The login limit's default budget for one user from one address: failures per minute.
const GUESSES_PER_USER_ADDRESS: usize = 10;

/// Guesses `user`'s password through every API in turn, `GUESSES_PER_USER_ADDRESS` times, then once more at each:
/// the statuses of the guesses within budget, and of those past it.
async fn guess_through(apis: &[Arc<Program>], user: &str) -> (Vec<u16>, Vec<u16>) {
    let mut within = Vec::new();
    for i in 0..GUESSES_PER_USER_ADDRESS {
        within.push(login(&apis[i % apis.len()], user, "wrong horse").await);
    }
    let mut past = Vec::new();
    for api in apis {
        past.push(login(api, user, "wrong horse").await);
    }
    (within, past)
}

/// 3. A rolling restart under load: each NATS node in turn killed and started again (the next only once the
/// chat stream's replicas have caught up), then each persister, then each auth API, stopped with SIGTERM and
/// started again, within 60 s of load. Nothing acked is lost or stored twice. Before the restarts, password
/// guesses alternated between the two auth APIs are stopped after one budget, as through one API; after them,
/// both APIs still refuse (the budget is in PostgreSQL, not in a process).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_of_every_nats_node_persister_and_auth_api_loses_nothing() {
    let mut stack = cluster_stack(2).await;
    let secs = 60;
    let run = harness(cluster_load(&stack, secs));
    stack.wait_for_acks(TRAFFIC, TRAFFIC_WITHIN).await;
    let apis = stack.apis();
    let registered = reqwest::Client::new()
        .post(apis[0].http_url("/api/register"))
        .json(&serde_json::json!({"username": "nora", "password": "correct horse"}))
        .send()
        .await
        .map(|reply| reply.status().as_u16());
    assert_eq!(registered.ok(), Some(201), "register through the first API");
    let (within, past) = guess_through(&apis, "nora").await;
    let started = Instant::now();
    for node in 0..stack.nats_nodes() {
        tokio::task::block_in_place(|| stack.nats_node_mut(node).restart());
        stack.wait_for_nats_node(node, Duration::from_secs(60)).await;
        until_replicated(&stack).await;
    }
    let nats_done = started.elapsed();
    for program in stack.persisters().into_iter().chain(stack.apis()) {
        program.terminate();
        program.wait_exit(Duration::from_secs(30)).await;
        program.restart().await;
        until_ready(&program, Duration::from_secs(30)).await;
    }
    let all_done = started.elapsed();
    let mut after = Vec::new();
    for api in &apis {
        after.push(login(api, "nora", "wrong horse").await);
    }
    let (output, report) = run.await.expect("harness task");
    figures(
        "cluster-rolling-restart",
        &report,
        &format!(
            " | NATS nodes restarted in {nats_done:?}, everything in {all_done:?} | guesses across 2 APIs: \
             {within:?} then {past:?}, after the restarts {after:?}"
        ),
    );
    assert_eq!(within, vec![401; GUESSES_PER_USER_ADDRESS], "guesses within the budget");
    assert_eq!(past, vec![429, 429], "one budget across both auth APIs, not one each");
    assert_eq!(after, vec![429, 429], "the spent budget outlives both APIs' restarts");
    assert!(
        all_done < Duration::from_secs(secs),
        "the restarts outlasted the load ({all_done:?}), so part of them went untested: {}",
        said(&output)
    );
    assert_held(&output, &report, &stack, secs);
    assert!(count(&report["messages"]["acked"]) > 0);
}

/// How many partitions `persister` reports owning (0 when it does not answer).
async fn partitions_owned(persister: &Program) -> f64 {
    let page = persister.metrics().await.unwrap_or_default();
    natter_test_support::metrics_page::value(&page, "natter_persister_partitions_owned").unwrap_or(0.0)
}

/// 4. A whole host lost at once, as a machine of compose's shape would be: the NATS node the first gateway is
/// connected to, that gateway and a persister (the one on the same node, if any) killed together with SIGKILL, and
/// all three started again 20 s later. The gateway's clients reconnect through the other gateway and recover
/// exactly; the other persister takes the lost one's partitions once their leases age out (10 s) and stores what
/// they hold; the stream elects a new leader if the node led it. Nothing acked is lost or doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_host_lost_moves_its_clients_and_partitions_and_loses_nothing() {
    let mut stack = cluster_stack(1).await;
    let secs = 30;
    let (run, gateway, node) = load_and_find_the_first_gateway(&stack, secs).await;
    let persisters = stack.persisters();
    let on_node = persisters
        .iter()
        .position(|p| stack.nats_node_of(p) == Some(node))
        .unwrap_or(0);
    let (lost, kept) = (persisters[on_node].clone(), persisters[1 - on_node].clone());
    let lost_at = Instant::now();
    gateway.kill();
    lost.kill();
    tokio::task::block_in_place(|| stack.nats_node_mut(node).kill());
    let mut taken_over = None;
    while lost_at.elapsed() < Duration::from_secs(20) {
        if taken_over.is_none() && partitions_owned(&kept).await == 16.0 {
            taken_over = Some(lost_at.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::task::block_in_place(|| stack.nats_node_mut(node).restart());
    stack.wait_for_nats_node(node, Duration::from_secs(30)).await;
    gateway.restart().await;
    lost.restart().await;
    let (output, report) = run.await.expect("harness task");
    figures(
        "cluster-host-lost",
        &report,
        &format!(
            " | node n{} with gateway-1 and persister-{} lost 20 s | their partitions taken over after {taken_over:?}",
            node + 1,
            on_node + 1
        ),
    );
    assert_held(&output, &report, &stack, secs);
    assert!(
        taken_over.is_some(),
        "the surviving persister did not take all 16 partitions within 20 s: {}",
        stack.logs()
    );
    // Half of 300 users were on the lost gateway.
    assert!(
        count(&report["reconnects"]) >= 50,
        "its clients reconnected: {}",
        said(&output)
    );
}
