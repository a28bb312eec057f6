//! The test cluster is a real JetStream cluster: three nodes route to each other, a stream in three replicas keeps
//! taking messages when its leader is killed (once a new one is elected), and a node cut off from the other two by
//! nftables answers its clients' publishes with errors, never an ack, until the cut heals.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use natter_test_support::NatsCluster;
use natter_test_support::stack::cut::Cut;

async fn js_on(cluster: &NatsCluster, node: usize) -> jetstream::Context {
    let client = async_nats::connect(cluster.node(node).url())
        .await
        .expect("connect to a node");
    let mut js = jetstream::new(client);
    js.set_timeout(Duration::from_secs(2));
    js
}

async fn make_stream(js: &jetstream::Context) {
    js.create_stream(stream::Config {
        name: "T".into(),
        subjects: vec!["t.>".into()],
        num_replicas: 3,
        ..Default::default()
    })
    .await
    .expect("an R3 stream on a cluster of three");
}

/// Publishes `t.x` through `js` until one is stored, for at most `within`; the sequence stored.
async fn publish_until_stored(js: &jetstream::Context, within: Duration) -> u64 {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(ack) = js.publish("t.x", "m".into()).await
            && let Ok(ack) = ack.await
        {
            return ack.sequence;
        }
        assert!(Instant::now() < deadline, "nothing stored within {within:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_stream_in_three_replicas_survives_its_leader_killed() {
    let mut cluster = NatsCluster::start(3).await;
    let js = js_on(&cluster, 0).await;
    make_stream(&js).await;
    publish_until_stored(&js, Duration::from_secs(10)).await;
    let leader = cluster.leader_of("T").await.expect("the stream has a leader");
    cluster.node_mut(leader).kill();
    let survivor = (leader + 1) % 3;
    let js = js_on(&cluster, survivor).await;
    let seq = publish_until_stored(&js, Duration::from_secs(30)).await;
    assert_eq!(seq, 2, "the first message is kept and the next follows it");
    let new_leader = cluster.leader_of("T").await.expect("a new leader");
    assert_ne!(new_leader, leader);
    cluster.node_mut(leader).restart();
    cluster.wait_for_jetstream(leader, Duration::from_secs(30)).await;
}

#[tokio::test]
async fn a_node_cut_off_from_the_other_two_gives_its_clients_errors_not_acks() {
    if let Err(why) = Cut::available() {
        eprintln!("skipped: {why}");
        return;
    }
    let cluster = NatsCluster::start(3).await;
    let js = js_on(&cluster, 0).await;
    make_stream(&js).await;
    publish_until_stored(&js, Duration::from_secs(10)).await;
    // Cut a node that does not lead the stream, so the majority keeps a leader.
    let leader = cluster.leader_of("T").await.expect("the stream has a leader");
    let cut_node = (leader + 1) % 3;
    let minority = js_on(&cluster, cut_node).await;
    let pid = cluster.node(cut_node).pid().expect("the node runs");
    let cut = Cut::node_from_cluster(pid, cluster.route_port(cut_node), cluster.route_ports()).expect("cut");
    // The node notices the silence once its route pings go unanswered; from then on, or at once, nothing it is
    // sent is acknowledged.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut acked_through_the_cut = 0;
    for _ in 0..5 {
        if let Ok(ack) = minority.publish("t.x", "cut".into()).await
            && ack.await.is_ok()
        {
            acked_through_the_cut += 1;
        }
    }
    let majority = js_on(&cluster, leader).await;
    let stored = publish_until_stored(&majority, Duration::from_secs(20)).await;
    let mut info_stream = majority.get_stream("T").await.expect("the stream");
    let messages = info_stream.info().await.expect("info").state.messages;
    assert_eq!(
        acked_through_the_cut, 0,
        "a node cut off from the quorum acknowledged a publish"
    );
    assert_eq!(
        messages, stored,
        "the majority stored what it acknowledged, and only that"
    );
    // What the node cut off tells a client asking about JetStream, once it has seen that it lost the quorum (at
    // once, or after a leader's step-down timeout when it led the meta group): unavailable. Readiness checks look
    // for that.
    let client = async_nats::connect(cluster.node(cut_node).url())
        .await
        .expect("connect to the cut node");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = client
            .request("$JS.API.INFO", "".into())
            .await
            .expect("the node answers");
        if String::from_utf8_lossy(&answer.payload).contains("\"error\"") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the cut node still serves JetStream: {:?}",
            answer.payload
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    cut.heal();
    // Healed, the node serves its clients again.
    publish_until_stored(&minority, Duration::from_secs(60)).await;
}
