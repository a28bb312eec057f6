//! NATS as deployments run it (deploy/nats/auth.conf): a client without credentials is refused, and each
//! service's user is refused what its role does not need, so a process that steals one service's password still
//! cannot read what another service is told, speak for the auth API, delete the chat stream or post as anyone.

use std::time::Duration;

use async_nats::jetstream;
use natter_service::{NatsAuth, NatsRole};
use natter_test_support::{NATS_ADMIN_USER, NatsServer, nats_password};
use tokio::sync::mpsc;

/// A client connected as `user` with the role's options, and the errors the server sent it.
async fn connect_as(
    nats: &NatsServer,
    user: &str,
    role: NatsRole,
) -> (async_nats::Client, mpsc::UnboundedReceiver<String>) {
    let auth = NatsAuth {
        nats_user: Some(user.to_owned()),
        nats_password: Some(nats_password(user)),
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let client = natter_service::nats_options(format!("rogue as {user}"), role, &auth)
        .event_callback(move |event| {
            let tx = tx.clone();
            async move {
                if let async_nats::Event::ServerError(err) = event {
                    let _ = tx.send(err.to_string());
                }
            }
        })
        .connect(nats.url())
        .await
        .unwrap_or_else(|e| panic!("{user} connects with its own password: {e}"));
    (client, rx)
}

/// Waits for the server's permissions violation naming `what` (e.g. `Subscription to "chat.v1.auth.room_access"`).
async fn refused(errors: &mut mpsc::UnboundedReceiver<String>, what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let err = tokio::time::timeout_at(deadline, errors.recv())
            .await
            .unwrap_or_else(|_| panic!("no permissions violation for {what}"))
            .expect("errors channel");
        if err.to_lowercase().contains("permissions violation") && err.contains(what) {
            return;
        }
    }
}

/// Publishes on `subject` and waits for the server to refuse it.
async fn publish_refused(client: &async_nats::Client, errors: &mut mpsc::UnboundedReceiver<String>, subject: &str) {
    client.publish(subject.to_owned(), "{}".into()).await.expect("sent");
    refused(errors, &format!("Publish to \"{subject}\"")).await;
}

/// Subscribes to `subject` and waits for the server to refuse it.
async fn subscribe_refused(client: &async_nats::Client, errors: &mut mpsc::UnboundedReceiver<String>, subject: &str) {
    let _subscription = client.subscribe(subject.to_owned()).await.expect("sent");
    refused(errors, &format!("Subscription to \"{subject}\"")).await;
}

#[tokio::test]
async fn a_client_without_credentials_or_with_a_wrong_password_is_refused() {
    let nats = NatsServer::start_as_deployed();
    let err = async_nats::connect(nats.url()).await.expect_err("anonymous refused");
    assert!(
        matches!(err.kind(), async_nats::ConnectErrorKind::AuthorizationViolation),
        "{err:?}"
    );
    let err = async_nats::ConnectOptions::with_user_and_password("natter-gateway".into(), "guessed".into())
        .connect(nats.url())
        .await
        .expect_err("a wrong password refused");
    assert!(
        matches!(err.kind(), async_nats::ConnectErrorKind::AuthorizationViolation),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_gateways_credentials_cannot_answer_access_questions_write_room_events_or_delete_the_stream() {
    let nats = NatsServer::start_as_deployed();
    let admin =
        async_nats::ConnectOptions::with_user_and_password(NATS_ADMIN_USER.into(), nats_password(NATS_ADMIN_USER))
            .connect(nats.url())
            .await
            .expect("the operator connects");
    let admin_js = jetstream::new(admin.clone());
    natter_stream::ensure(&admin_js, natter_stream::Limits::new(Duration::from_secs(3600), 1))
        .await
        .expect("the stream");

    let (gateway, mut errors) = connect_as(&nats, "natter-gateway", NatsRole::Gateway).await;
    // What a gateway does is allowed: its room subscriptions and sends through JetStream.
    let _live = gateway.subscribe("chat.v1.live.room.r1.3").await.expect("live");
    let js = jetstream::new(gateway.clone());
    let stored = js
        .publish("chat.v1.room.r1.msg.3", "hello".into())
        .await
        .expect("publish")
        .await
        .expect("a gateway's send is stored");

    // Answering room-access questions is the auth API's: a subscription is refused.
    subscribe_refused(&gateway, &mut errors, "chat.v1.auth.room_access").await;
    // Room events (a member removed, a room deleted) are the auth API's.
    publish_refused(&gateway, &mut errors, "chat.v1.events.room.r1").await;
    // Another role's answers: the auth API's inbox.
    subscribe_refused(&gateway, &mut errors, "_INBOX_auth_api.>").await;
    // Deleting the stream, or reading it through a consumer of its own: the request is dropped, unanswered.
    let deleted = tokio::time::timeout(Duration::from_secs(1), js.delete_stream("CHAT")).await;
    assert!(!matches!(deleted, Ok(Ok(_))), "a gateway deleted the stream");
    refused(&mut errors, "Publish to \"$JS.API.STREAM.DELETE.CHAT\"").await;
    let consumer = tokio::time::timeout(
        Duration::from_secs(1),
        js.create_consumer_on_stream(jetstream::consumer::pull::Config::default(), "CHAT"),
    )
    .await;
    assert!(
        !matches!(consumer, Ok(Ok(_))),
        "a gateway made a consumer of the stream"
    );
    // Erasing a message (a deletion's words) is the persisters': a gateway's request is dropped.
    let stream = js.get_stream_no_info("CHAT").await.expect("a handle");
    let erased = tokio::time::timeout(Duration::from_secs(1), stream.delete_message(stored.sequence)).await;
    assert!(!matches!(erased, Ok(Ok(_))), "a gateway erased a message");
    refused(&mut errors, "Publish to \"$JS.API.STREAM.MSG.DELETE.CHAT\"").await;
    assert!(admin_js.get_stream("CHAT").await.is_ok(), "the stream is still there");
    assert!(
        admin_js
            .get_stream("CHAT")
            .await
            .expect("stream")
            .direct_get(stored.sequence)
            .await
            .is_ok(),
        "the message is still there"
    );
}

#[tokio::test]
async fn the_auth_apis_and_persisters_credentials_cannot_read_rooms_or_post_as_anyone() {
    let nats = NatsServer::start_as_deployed();
    let (api, mut api_errors) = connect_as(&nats, "natter-auth-api", NatsRole::AuthApi).await;
    subscribe_refused(&api, &mut api_errors, "chat.v1.live.room.>").await;
    api.publish("chat.v1.room.r1.msg.3", "as anyone".into())
        .await
        .expect("sent");
    refused(&mut api_errors, "Publish to \"chat.v1.room.r1.msg.3\"").await;
    api.publish("chat.v1.gateway.heartbeat", "{}".into())
        .await
        .expect("sent");
    refused(&mut api_errors, "Publish to \"chat.v1.gateway.heartbeat\"").await;

    let (persister, mut persister_errors) = connect_as(&nats, "natter-persister", NatsRole::Persister).await;
    publish_refused(&persister, &mut persister_errors, "chat.v1.room.r1.msg.3").await;
    subscribe_refused(&persister, &mut persister_errors, "chat.v1.ephemeral.>").await;
    publish_refused(&persister, &mut persister_errors, "chat.v1.auth.room_access").await;
    let js = jetstream::new(persister.clone());
    let deleted = tokio::time::timeout(Duration::from_secs(1), js.delete_stream("CHAT")).await;
    assert!(!matches!(deleted, Ok(Ok(_))), "a persister deleted the stream");
    refused(&mut persister_errors, "Publish to \"$JS.API.STREAM.DELETE.CHAT\"").await;
    // The auth API erases no single message either (it purges a deleted room's, through its own permission).
    let api_js = jetstream::new(api.clone());
    let stream = api_js.get_stream_no_info("CHAT").await.expect("a handle");
    let erased = tokio::time::timeout(Duration::from_secs(1), stream.delete_message(1)).await;
    assert!(!matches!(erased, Ok(Ok(_))), "the auth API erased a message");
    refused(&mut api_errors, "Publish to \"$JS.API.STREAM.MSG.DELETE.CHAT\"").await;
}
