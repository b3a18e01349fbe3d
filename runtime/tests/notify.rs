//! Notifications and the transactional outbox on SQLite and PostgreSQL:
//! in-app rows, retries with backoff against a receiver that is down at first,
//! e-mail to a local SMTP capture server, robot and SMS bodies, rollback,
//! manual re-push, and the HTTP API through the real router.
//!
//! Time is stepped with `deliver_due_at` rather than slept through: each step
//! names the instant it delivers at, so backoff is checked exactly.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use common::{count, each_backend, model};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Map, Value as Json, json};
use sha2::Sha256;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::task::JoinHandle;
use trellis_engine::model::{Channel, Label, Recipient, Translations};
use trellis_runtime::Store;
use trellis_runtime::account::{AccountChange, create_user};
use trellis_runtime::notify::channels::{ChannelChange, put_channel};
use trellis_runtime::notify::inbox::{InboxQuery, list, mark_all_read, mark_read};
use trellis_runtime::notify::outbox::{Requeue, message, requeue};
use trellis_runtime::notify::{
    About, Channels, Notification, Retry, Smtp, deliver_due, deliver_due_at, notify, publish,
};

// ---------------------------------------------------------------------------
// Fixtures

struct People {
    alice: i64,
    bob: i64,
    carol: i64,
    admin: i64,
}

/// The platform tables, the admin, and: alice and bob (role `sales`, e-mail,
/// alice with a phone), carol (`manager`, no e-mail), dave (`sales`, disabled).
async fn setup(store: &Store) -> People {
    let m = model(&[("app.yaml", "name: crm\nlabel: CRM\n")]);
    trellis_runtime::serve::prepare(store, &m, Some("admin-pass-1"))
        .await
        .expect("prepares");
    let user = |name: &str, roles: &[&str], email: Option<&str>, phone: Option<&str>| {
        let mut attributes = Map::new();
        if let Some(phone) = phone {
            attributes.insert("phone".into(), json!(phone));
        }
        AccountChange {
            username: Some(name.into()),
            password: Some("password-1".into()),
            email: email.map(str::to_owned),
            roles: Some(roles.iter().map(|r| (*r).to_owned()).collect()),
            attributes: Some(attributes),
            ..AccountChange::default()
        }
    };
    let alice = create_user(
        store,
        user(
            "alice",
            &["sales"],
            Some("alice@example.com"),
            Some("+8613800000001"),
        ),
    )
    .await
    .expect("alice");
    let bob = create_user(
        store,
        user("bob", &["sales"], Some("bob@example.com"), None),
    )
    .await
    .expect("bob");
    let carol = create_user(store, user("carol", &["manager"], None, None))
        .await
        .expect("carol");
    let mut dave = user("dave", &["sales"], Some("dave@example.com"), Some("1"));
    dave.disabled = Some(true);
    create_user(store, dave).await.expect("dave");
    let admin = common::texts(
        store,
        "SELECT CAST(id AS TEXT) FROM trellis_users WHERE username = 'admin'",
    )
    .await[0]
        .clone()
        .and_then(|t| t.parse().ok())
        .expect("the admin");
    People {
        alice,
        bob,
        carol,
        admin,
    }
}

fn record(owner: i64) -> Map<String, Json> {
    json!({"name": "Acme", "owner": owner, "note": null})
        .as_object()
        .cloned()
        .expect("an object")
}

fn about(record: &Map<String, Json>) -> About<'_> {
    About {
        app: "crm",
        entity: "customer",
        record_id: 42,
        record,
    }
}

fn plain(text: &str) -> Label {
    Label::Plain(text.into())
}

fn both(en: &str, zh: &str) -> Label {
    Label::Translated(Translations {
        en: en.into(),
        zh: Some(zh.into()),
    })
}

/// Delivery settings with a minute of backoff, doubling to four.
fn settings() -> Channels {
    Channels {
        retry: Retry {
            base: Duration::from_secs(60),
            cap: Duration::from_secs(240),
            max_attempts: 10,
        },
        timeout: Duration::from_secs(10),
        ..Channels::default()
    }
}

async fn notify_committed(store: &Store, n: &Notification, record: &Map<String, Json>) -> usize {
    let txn = store.begin_write().await.expect("begins");
    let sent = notify(&txn, store.dialect(), n, &about(record))
        .await
        .expect("notifies");
    txn.commit().await.expect("commits");
    sent
}

async fn channel(store: &Store, name: &str, change: Json) {
    let change: ChannelChange = serde_json::from_value(change).expect("a channel change");
    put_channel(store, name, change).await.expect("configures");
}

fn time(value: &Json) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(value.as_str().expect("a time"))
        .expect("RFC 3339")
        .with_timezone(&Utc)
}

async fn outbox_ids(store: &Store) -> Vec<i64> {
    common::texts(
        store,
        "SELECT CAST(id AS TEXT) FROM trellis_outbox ORDER BY id",
    )
    .await
    .into_iter()
    .map(|t| t.and_then(|t| t.parse().ok()).expect("an id"))
    .collect()
}

async fn message_json(store: &Store, id: i64) -> Json {
    message(store, id).await.expect("reads").expect("exists")
}

// ---------------------------------------------------------------------------
// A local HTTP receiver: 503 while down; robots' paths answer as robots do.

#[derive(Debug, Clone)]
struct Hit {
    path: String,
    query: String,
    headers: HeaderMap,
    body: Vec<u8>,
    status: u16,
}

#[derive(Clone, Default)]
struct Receiver {
    up: Arc<Mutex<bool>>,
    hits: Arc<Mutex<Vec<Hit>>>,
}

impl Receiver {
    fn set_up(&self, up: bool) {
        *self.up.lock().expect("lock") = up;
    }

    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().expect("lock").clone()
    }

    fn accepted(&self) -> Vec<Hit> {
        self.hits()
            .into_iter()
            .filter(|h| h.status == 200)
            .collect()
    }

    /// Serves on `listener` until the handle is aborted.
    fn serve(&self, listener: tokio::net::TcpListener) -> JoinHandle<()> {
        let app = axum::Router::new()
            .fallback(receive)
            .with_state(self.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        })
    }
}

async fn receive(
    State(receiver): State<Receiver>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let path = uri.path().to_owned();
    let (status, reply) = if !*receiver.up.lock().expect("lock") {
        (StatusCode::SERVICE_UNAVAILABLE, "down".to_owned())
    } else if path.starts_with("/refuse") {
        (
            StatusCode::OK,
            json!({"errcode": 93000, "errmsg": "invalid webhook url"}).to_string(),
        )
    } else if path.starts_with("/wecom") || path.starts_with("/dingtalk") {
        (
            StatusCode::OK,
            json!({"errcode": 0, "errmsg": "ok"}).to_string(),
        )
    } else {
        (StatusCode::OK, "thanks".to_owned())
    };
    receiver.hits.lock().expect("lock").push(Hit {
        path,
        query: uri.query().unwrap_or_default().to_owned(),
        headers,
        body: body.to_vec(),
        status: status.as_u16(),
    });
    (status, reply)
}

async fn listener() -> (tokio::net::TcpListener, u16) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let port = l.local_addr().expect("an address").port();
    (l, port)
}

/// A port nothing listens on yet (bound once and let go).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn hmac_hex(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key");
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

// ---------------------------------------------------------------------------
// A minimal SMTP server that keeps every message it is given.

async fn smtp_capture() -> (u16, Arc<Mutex<Vec<String>>>, JoinHandle<()>) {
    let (listener, port) = listener().await;
    let mails = Arc::new(Mutex::new(Vec::new()));
    let kept = mails.clone();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let kept = kept.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read).lines();
                if write.write_all(b"220 capture ESMTP\r\n").await.is_err() {
                    return;
                }
                while let Ok(Some(line)) = lines.next_line().await {
                    let verb = line.get(..4).unwrap_or(&line).to_ascii_uppercase();
                    let reply: &[u8] = match verb.as_str() {
                        "EHLO" | "HELO" => b"250 capture\r\n",
                        "DATA" => {
                            if write.write_all(b"354 end with .\r\n").await.is_err() {
                                return;
                            }
                            let mut mail = String::new();
                            while let Ok(Some(line)) = lines.next_line().await {
                                if line == "." {
                                    break;
                                }
                                mail.push_str(&line);
                                mail.push('\n');
                            }
                            kept.lock().expect("lock").push(mail);
                            b"250 queued\r\n"
                        }
                        "QUIT" => {
                            let _ = write.write_all(b"221 bye\r\n").await;
                            return;
                        }
                        _ => b"250 OK\r\n",
                    };
                    if write.write_all(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, mails, task)
}

// ---------------------------------------------------------------------------
// The tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_app_notifications_reach_roles_fields_and_users_rendered() {
    each_backend("notify_in_app", async |store| {
        let p = setup(&store).await;
        let n = Notification {
            // alice and bob by role (not the disabled dave), bob again by the
            // field, carol by name: three people, one row each.
            recipients: vec![
                Recipient::Role("sales".into()),
                Recipient::Field("owner".into()),
                Recipient::User("carol".into()),
                Recipient::User("nobody".into()),
            ],
            channels: vec![],
            subject: Some(both("Customer {{ record.name }}", "客户 {{ record.name }}")),
            message: plain("{{ record.name }} (#{{ id }}) needs a visit{{ record.note }}"),
        };
        assert_eq!(notify_committed(&store, &n, &record(p.bob)).await, 3);
        assert_eq!(
            count(&store, "SELECT COUNT(*) FROM trellis_notifications").await,
            3
        );
        assert_eq!(
            count(&store, "SELECT COUNT(*) FROM trellis_outbox").await,
            0,
            "in-app only"
        );

        let all = InboxQuery {
            limit: 50,
            ..InboxQuery::default()
        };
        let page = list(&store, p.alice, &all).await.expect("lists");
        assert_eq!((page.total, page.unread), (1, 1));
        let row = &page.data[0];
        assert_eq!(
            row["subject"],
            json!({"en": "Customer Acme", "zh": "客户 Acme"})
        );
        assert_eq!(row["message"], "Acme (#42) needs a visit");
        assert_eq!(
            (&row["app"], &row["entity"], &row["record_id"], &row["read"]),
            (&json!("crm"), &json!("customer"), &json!(42), &json!(false))
        );
        let alices = row["id"].as_i64().expect("an id");
        for user in [p.bob, p.carol] {
            assert_eq!(list(&store, user, &all).await.expect("lists").total, 1);
        }
        assert_eq!(list(&store, p.admin, &all).await.expect("lists").total, 0);

        assert!(
            !mark_read(&store, p.bob, alices).await.expect("runs"),
            "not bob's"
        );
        assert!(mark_read(&store, p.alice, alices).await.expect("runs"));
        assert!(
            mark_read(&store, p.alice, alices).await.expect("runs"),
            "again is fine"
        );
        let page = list(&store, p.alice, &all).await.expect("lists");
        assert_eq!((page.total, page.unread), (1, 0));
        assert_eq!(page.data[0]["read"], true);
        let unread = InboxQuery {
            unread_only: true,
            ..all.clone()
        };
        assert_eq!(
            list(&store, p.alice, &unread).await.expect("lists").total,
            0
        );
        assert_eq!(list(&store, p.bob, &unread).await.expect("lists").unread, 1);
        assert_eq!(mark_all_read(&store, p.bob).await.expect("marks"), 1);
        assert_eq!(mark_all_read(&store, p.bob).await.expect("marks"), 0);
        assert_eq!(
            list(&store, p.carol, &unread).await.expect("lists").unread,
            1,
            "carol's stays"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_transaction_tells_nobody() {
    each_backend("notify_rollback", async |store| {
        let p = setup(&store).await;
        channel(
            &store,
            "erp",
            json!({"kind": "webhook", "url": "http://127.0.0.1:9/h", "topics": ["*"]}),
        )
        .await;
        channel(
            &store,
            "team",
            json!({"kind": "wecom", "url": "http://127.0.0.1:9/wecom"}),
        )
        .await;
        let n = Notification {
            recipients: vec![Recipient::Role("sales".into())],
            channels: vec![
                Channel::InApp,
                Channel::Email,
                Channel::Wecom,
                Channel::Webhook,
            ],
            subject: None,
            message: plain("{{ record.name }} changed"),
        };
        let rec = record(p.bob);
        for commit in [false, true] {
            let txn = store.begin_write().await.expect("begins");
            assert_eq!(
                notify(&txn, store.dialect(), &n, &about(&rec))
                    .await
                    .expect("notifies"),
                2
            );
            publish(
                &txn,
                store.dialect(),
                "crm.customer.approved",
                &json!({"id": 42}),
            )
            .await
            .expect("publishes");
            if commit {
                txn.commit().await.expect("commits");
            } else {
                txn.rollback().await.expect("rolls back");
                assert_eq!(
                    count(&store, "SELECT COUNT(*) FROM trellis_notifications").await,
                    0
                );
                assert_eq!(
                    count(&store, "SELECT COUNT(*) FROM trellis_outbox").await,
                    0
                );
            }
        }
        // Committed: 2 in-app rows; 2 e-mails, 1 robot message, 1 notification
        // webhook and 1 event.
        assert_eq!(
            count(&store, "SELECT COUNT(*) FROM trellis_notifications").await,
            2
        );
        assert_eq!(
            count(&store, "SELECT COUNT(*) FROM trellis_outbox").await,
            5
        );
        assert_eq!(
            count(
                &store,
                "SELECT COUNT(*) FROM trellis_outbox WHERE channel = 'email' AND target = 'email'"
            )
            .await,
            2
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_retried_with_backoff_until_the_receiver_is_up() {
    each_backend("notify_webhook_retry", async |store| {
        setup(&store).await;
        let port = free_port();
        let secret = "s3cret-key";
        channel(&store, "erp", json!({
            "kind": "webhook",
            "url": format!("http://127.0.0.1:{port}/hooks/trellis"),
            "secret": secret,
            "topics": ["crm.*"],
        }))
        .await;
        channel(&store, "srm", json!({"kind": "webhook", "url": "http://127.0.0.1:9/x", "topics": ["srm.*"]})).await;
        let txn = store.begin_write().await.expect("begins");
        for id in 1..=3 {
            publish(&txn, store.dialect(), "crm.customer.approved", &json!({"customer": id}))
                .await
                .expect("publishes");
        }
        txn.commit().await.expect("commits");
        let ids = outbox_ids(&store).await;
        assert_eq!(ids.len(), 3, "only the subscribed webhook gets the events");

        let s = settings();
        let t0 = Utc::now();
        // Nothing listens: connection refused.
        assert_eq!(deliver_due_at(&store, &s, t0).await.expect("runs"), 0);
        let first = message_json(&store, ids[0]).await;
        assert_eq!((&first["status"], &first["attempts"]), (&json!("pending"), &json!(1)));
        assert!(first["last_error"].is_string(), "{first}");
        let due = time(&first["next_attempt_at"]);
        assert!((due - t0 - chrono::Duration::seconds(60)).num_milliseconds().abs() < 5, "one minute later: {due} vs {t0}");
        assert_eq!(first["attempt_log"][0]["status_code"], Json::Null);

        // Before the backoff has passed, nothing is tried.
        let t1 = t0 + chrono::Duration::seconds(59);
        assert_eq!(deliver_due_at(&store, &s, t1).await.expect("runs"), 0);
        assert_eq!(count(&store, "SELECT COUNT(*) FROM trellis_outbox_attempts").await, 3);

        // The receiver comes up answering 503.
        let receiver = Receiver::default();
        let server = receiver.serve(
            tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("the port is free again"),
        );
        let t2 = t0 + chrono::Duration::seconds(61);
        assert_eq!(deliver_due_at(&store, &s, t2).await.expect("runs"), 0);
        assert_eq!(receiver.hits().len(), 3);
        let second = message_json(&store, ids[0]).await;
        assert_eq!(second["attempts"], 2);
        assert_eq!(second["attempt_log"][1]["status_code"], 503);
        assert_eq!(second["attempt_log"][1]["response"], "down");
        let due = time(&second["next_attempt_at"]);
        assert!((due - t2 - chrono::Duration::seconds(120)).num_milliseconds().abs() < 5, "the wait doubled: {due}");
        assert_eq!(deliver_due_at(&store, &s, t2 + chrono::Duration::seconds(119)).await.expect("runs"), 0);
        assert_eq!(receiver.hits().len(), 3);

        // Up: every event arrives, once.
        receiver.set_up(true);
        let t3 = t2 + chrono::Duration::seconds(121);
        assert_eq!(deliver_due_at(&store, &s, t3).await.expect("runs"), 3);
        assert_eq!(deliver_due_at(&store, &s, t3 + chrono::Duration::days(1)).await.expect("runs"), 0);
        let accepted = receiver.accepted();
        assert_eq!(accepted.len(), 3, "each delivered once");
        let mut seen = Vec::new();
        for hit in &accepted {
            assert_eq!(hit.path, "/hooks/trellis");
            let body: Json = serde_json::from_slice(&hit.body).expect("JSON");
            let signature = hit.headers["x-trellis-signature"].to_str().expect("text");
            assert_eq!(signature, format!("sha256={}", hmac_hex(secret, &hit.body)), "the signature verifies");
            assert_ne!(signature, format!("sha256={}", hmac_hex("another key", &hit.body)));
            assert_eq!(hit.headers["x-trellis-event"], "crm.customer.approved");
            assert_eq!(hit.headers["x-trellis-delivery"].to_str().ok(), Some(body["id"].to_string().as_str()));
            assert_eq!(body["topic"], "crm.customer.approved");
            seen.push(body["data"]["customer"].as_i64().expect("a customer"));
        }
        seen.sort_unstable();
        assert_eq!(seen, [1, 2, 3], "none lost, none twice");
        assert_eq!(receiver.hits().len(), 6);
        assert_eq!(count(&store, "SELECT COUNT(*) FROM trellis_outbox_attempts").await, 9);
        assert_eq!(count(&store, "SELECT COUNT(*) FROM trellis_outbox_attempts WHERE success = TRUE").await, 3);
        assert_eq!(count(&store, "SELECT COUNT(*) FROM trellis_outbox WHERE status = 'delivered' AND delivered_at IS NOT NULL").await, 3);
        let done = message_json(&store, ids[2]).await;
        assert_eq!((&done["attempts"], &done["last_error"]), (&json!(3), &Json::Null));
        server.abort();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_rounds_never_deliver_a_message_twice() {
    each_backend("notify_concurrent", async |store| {
        setup(&store).await;
        let receiver = Receiver::default();
        receiver.set_up(true);
        let (l, port) = listener().await;
        let server = receiver.serve(l);
        channel(&store, "erp", json!({"kind": "webhook", "url": format!("http://127.0.0.1:{port}/h"), "topics": ["*"]})).await;
        let txn = store.begin_write().await.expect("begins");
        for n in 0..12 {
            publish(&txn, store.dialect(), "crm.order.created", &json!({"n": n})).await.expect("publishes");
        }
        txn.commit().await.expect("commits");
        // Small batches, three rounds at a time, as three nodes would run them.
        let s = Channels { batch: 3, ..settings() };
        let mut delivered = 0;
        for _ in 0..20 {
            let (a, b, c) = tokio::join!(
                deliver_due(&store, &s),
                deliver_due(&store, &s),
                deliver_due(&store, &s)
            );
            let round = a.expect("a") + b.expect("b") + c.expect("c");
            delivered += round;
            if round == 0 {
                break;
            }
        }
        assert_eq!(delivered, 12);
        let mut seen: Vec<i64> = receiver
            .accepted()
            .iter()
            .map(|h| serde_json::from_slice::<Json>(&h.body).expect("JSON")["data"]["n"].as_i64().expect("n"))
            .collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..12).collect::<Vec<_>>(), "each exactly once");
        assert_eq!(count(&store, "SELECT COUNT(*) FROM trellis_outbox_attempts").await, 12);
        server.abort();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_reaches_an_smtp_server_with_subject_and_body() {
    each_backend("notify_email", async |store| {
        let p = setup(&store).await;
        let (port, mails, server) = smtp_capture().await;
        let n = Notification {
            recipients: vec![
                Recipient::Role("sales".into()),
                Recipient::User("carol".into()),
            ],
            channels: vec![Channel::Email],
            subject: Some(plain("Visit {{ record.name }}")),
            message: plain("{{ record.name }} needs a visit this week."),
        };
        assert_eq!(notify_committed(&store, &n, &record(p.bob)).await, 3);
        assert_eq!(
            count(&store, "SELECT COUNT(*) FROM trellis_notifications").await,
            0,
            "e-mail only"
        );
        assert_eq!(
            count(&store, "SELECT COUNT(*) FROM trellis_outbox").await,
            2,
            "carol has no address"
        );

        // Without SMTP settings the message waits and says why.
        assert_eq!(deliver_due(&store, &settings()).await.expect("runs"), 0);
        let ids = outbox_ids(&store).await;
        let waiting = message_json(&store, ids[0]).await;
        assert!(
            waiting["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("TRELLIS_SMTP_URL")),
            "{waiting}"
        );

        let s = Channels {
            smtp: Some(Smtp {
                url: format!("smtp://127.0.0.1:{port}"),
                from: "Trellis <trellis@example.com>".into(),
            }),
            ..settings()
        };
        let later = Utc::now() + chrono::Duration::minutes(2);
        assert_eq!(deliver_due_at(&store, &s, later).await.expect("runs"), 2);
        let mails = mails.lock().expect("lock").clone();
        assert_eq!(mails.len(), 2, "{mails:?}");
        for (who, address) in [("alice", "alice@example.com"), ("bob", "bob@example.com")] {
            let mail = mails
                .iter()
                .find(|m| m.contains(address))
                .unwrap_or_else(|| panic!("no mail to {address}: {mails:?}"));
            assert!(mail.contains(&format!("To: {who} <{address}>")), "{mail}");
            assert!(
                mail.contains("From: Trellis <trellis@example.com>"),
                "{mail}"
            );
            assert!(mail.contains("Subject: Visit Acme"), "{mail}");
            assert!(mail.contains("Acme needs a visit this week."), "{mail}");
        }
        let sent = message_json(&store, ids[0]).await;
        assert_eq!(sent["status"], "delivered");
        assert_eq!(sent["attempt_log"][1]["status_code"], 250);
        server.abort();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn robots_and_sms_get_their_formats() {
    each_backend("notify_robots", async |store| {
        let p = setup(&store).await;
        let receiver = Receiver::default();
        receiver.set_up(true);
        let (l, port) = listener().await;
        let server = receiver.serve(l);
        let base = format!("http://127.0.0.1:{port}");
        channel(&store, "team", json!({"kind": "wecom", "url": format!("{base}/wecom/send?key=K1")})).await;
        channel(&store, "group", json!({"kind": "dingtalk", "url": format!("{base}/dingtalk/send?access_token=T1"), "secret": "SEC42"})).await;
        channel(&store, "old-group", json!({"kind": "dingtalk", "url": format!("{base}/refuse"), "enabled": true})).await;
        channel(&store, "muted", json!({"kind": "wecom", "url": format!("{base}/wecom/muted"), "enabled": false})).await;
        channel(&store, "sms", json!({
            "kind": "sms",
            "url": format!("{base}/sms"),
            "template": r#"{"mobile": "{{ phone }}", "content": "{{ message }}", "sign": "Trellis"}"#,
        }))
        .await;
        let n = Notification {
            recipients: vec![Recipient::Role("sales".into())],
            channels: vec![Channel::Wecom, Channel::Dingtalk, Channel::Sms],
            subject: None,
            message: both("Approve \"{{ record.name }}\"", "请审批 {{ record.name }}"),
        };
        assert_eq!(notify_committed(&store, &n, &record(p.bob)).await, 2);
        // team, group, old-group, and one text message (bob has no phone).
        assert_eq!(count(&store, "SELECT COUNT(*) FROM trellis_outbox").await, 4);
        assert_eq!(deliver_due(&store, &settings()).await.expect("runs"), 3);
        let text = "Approve \"Acme\"\n请审批 Acme";
        let hits = receiver.hits();
        let body = |path: &str| -> (Hit, Json) {
            let hit = hits.iter().find(|h| h.path.starts_with(path)).unwrap_or_else(|| panic!("nothing at {path}: {hits:?}")).clone();
            let json = serde_json::from_slice(&hit.body).expect("JSON");
            (hit, json)
        };
        let (wecom, json) = body("/wecom/send");
        assert_eq!(json, json!({"msgtype": "text", "text": {"content": text}}));
        assert_eq!(wecom.query, "key=K1");
        let (dingtalk, json) = body("/dingtalk/send");
        assert_eq!(json, json!({"msgtype": "text", "text": {"content": text}}));
        let query: HashMap<&str, &str> = dingtalk.query.split('&').filter_map(|kv| kv.split_once('=')).collect();
        assert_eq!(query["access_token"], "T1");
        let timestamp = query["timestamp"];
        let mut mac = Hmac::<Sha256>::new_from_slice(b"SEC42").expect("any key");
        mac.update(format!("{timestamp}\nSEC42").as_bytes());
        let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        assert_eq!(query["sign"].replace("%2B", "+").replace("%2F", "/").replace("%3D", "="), expected);
        let (_, json) = body("/sms");
        assert_eq!(json, json!({"mobile": "+8613800000001", "content": text, "sign": "Trellis"}));
        assert!(hits.iter().all(|h| !h.path.contains("muted")), "a disabled channel gets nothing");

        // The robot that answers errcode ≠ 0 has not delivered.
        let refused = count(&store, "SELECT COUNT(*) FROM trellis_outbox WHERE target = 'old-group' AND status = 'pending' AND last_error LIKE '%93000%'").await;
        assert_eq!(refused, 1);
        server.abort();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_messages_are_re_pushed_by_hand() {
    each_backend("notify_repush", async |store| {
        let p = setup(&store).await;
        let receiver = Receiver::default();
        let (l, port) = listener().await;
        let server = receiver.serve(l);
        channel(&store, "erp", json!({"kind": "webhook", "url": format!("http://127.0.0.1:{port}/h"), "topics": ["crm.customer.approved"]})).await;
        let txn = store.begin_write().await.expect("begins");
        publish(&txn, store.dialect(), "crm.customer.approved", &json!({"customer": 7})).await.expect("publishes");
        txn.commit().await.expect("commits");
        let id = outbox_ids(&store).await[0];
        let s = Channels {
            retry: Retry { max_attempts: 2, ..settings().retry },
            ..settings()
        };
        let t0 = Utc::now();
        assert_eq!(deliver_due_at(&store, &s, t0).await.expect("runs"), 0);
        assert_eq!(deliver_due_at(&store, &s, t0 + chrono::Duration::hours(1)).await.expect("runs"), 0);
        let failed = message_json(&store, id).await;
        assert_eq!((&failed["status"], &failed["attempts"]), (&json!("failed"), &json!(2)));
        assert_eq!(failed["next_attempt_at"], Json::Null);
        assert_eq!(deliver_due_at(&store, &s, t0 + chrono::Duration::days(30)).await.expect("runs"), 0);
        assert_eq!(receiver.hits().len(), 2, "a failed message is left alone");

        assert_eq!(requeue(&store, id + 1000, Some(p.admin)).await.expect("runs"), Requeue::NotFound);
        assert_eq!(requeue(&store, id, Some(p.admin)).await.expect("runs"), Requeue::Requeued);
        assert_eq!(requeue(&store, id, Some(p.admin)).await.expect("runs"), Requeue::AlreadyPending);
        receiver.set_up(true);
        assert_eq!(deliver_due(&store, &s).await.expect("runs"), 1);
        let delivered = message_json(&store, id).await;
        assert_eq!((&delivered["status"], &delivered["attempts"]), (&json!("delivered"), &json!(3)));
        assert_eq!(delivered["retried_by"], p.admin);
        assert_eq!(delivered["attempt_log"].as_array().map(Vec::len), Some(3));
        assert_eq!(delivered["attempt_log"][2]["success"], true);

        // A delivered message can be pushed again too: a new attempt, a new receipt.
        assert_eq!(requeue(&store, id, None).await.expect("runs"), Requeue::Requeued);
        assert_eq!(deliver_due(&store, &s).await.expect("runs"), 1);
        let again = message_json(&store, id).await;
        assert_eq!((&again["status"], &again["attempts"]), (&json!("delivered"), &json!(4)));
        assert_eq!(again["attempt_log"][3]["attempt"], 4);
        assert_eq!(receiver.accepted().len(), 2);
        server.abort();
    })
    .await;
}

// ---------------------------------------------------------------------------
// Through the real router

struct Api {
    base: String,
}

impl Api {
    async fn call(&self, method: &str, path: &str, token: &str, body: Option<Json>) -> (u16, Json) {
        let url = format!("{}{path}", self.base);
        let (method, token) = (method.to_owned(), token.to_owned());
        tokio::task::spawn_blocking(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build()
                .into();
            let auth = format!("Bearer {token}");
            let mut response = match (method.as_str(), body) {
                ("GET", _) => agent.get(&url).header("Authorization", &auth).call(),
                ("DELETE", _) => agent.delete(&url).header("Authorization", &auth).call(),
                ("POST", None) => agent.post(&url).header("Authorization", &auth).send_empty(),
                ("POST", Some(b)) => agent
                    .post(&url)
                    .header("Authorization", &auth)
                    .header("Content-Type", "application/json")
                    .send(b.to_string()),
                ("PUT", Some(b)) => agent
                    .put(&url)
                    .header("Authorization", &auth)
                    .header("Content-Type", "application/json")
                    .send(b.to_string()),
                _ => panic!("unsupported call"),
            }
            .expect("the server answers");
            let status = response.status().as_u16();
            let text = response.body_mut().read_to_string().unwrap_or_default();
            (
                status,
                serde_json::from_str(&text).unwrap_or(Json::String(text)),
            )
        })
        .await
        .expect("the call runs")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_api_serves_the_inbox_and_the_push_log() {
    each_backend("notify_http", async |store| {
        let p = setup(&store).await;
        let m = model(&[("app.yaml", "name: crm\nlabel: CRM\n")]);
        let state = trellis_runtime::serve::AppState::new(store.clone(), &m);
        let app = trellis_runtime::serve::router(state)
            .into_make_service_with_connect_info::<std::net::SocketAddr>();
        let (l, port) = listener().await;
        let server = tokio::spawn(async move {
            let _ = axum::serve(l, app).await;
        });
        let api = Api { base: format!("http://127.0.0.1:{port}/api/v1") };
        let alice = trellis_runtime::session::open_session(&store, p.alice).await.expect("a session");
        let admin = trellis_runtime::session::open_session(&store, p.admin).await.expect("a session");

        let n = Notification {
            recipients: vec![Recipient::User("alice".into()), Recipient::User("bob".into())],
            channels: vec![],
            subject: None,
            message: both("Hello {{ record.name }}", "你好 {{ record.name }}"),
        };
        notify_committed(&store, &n, &record(p.bob)).await;
        let bobs = common::texts(&store, &format!("SELECT CAST(id AS TEXT) FROM trellis_notifications WHERE user_id = {}", p.bob)).await[0].clone().expect("bob's");

        let (status, inbox) = api.call("GET", "/me/notifications", &alice, None).await;
        assert_eq!(status, 200, "{inbox}");
        assert_eq!((&inbox["total"], &inbox["unread"]), (&json!(1), &json!(1)));
        assert_eq!(inbox["data"][0]["message"], json!({"en": "Hello Acme", "zh": "你好 Acme"}));
        let mine = inbox["data"][0]["id"].clone();
        let (status, _) = api.call("POST", &format!("/me/notifications/{bobs}/read"), &alice, None).await;
        assert_eq!(status, 404, "another user's notification is not found");
        let (status, _) = api.call("POST", &format!("/me/notifications/{mine}/read"), &alice, None).await;
        assert_eq!(status, 204);
        let (_, unread) = api.call("GET", "/me/notifications?unread=true", &alice, None).await;
        assert_eq!((&unread["total"], &unread["unread"], &unread["data"]), (&json!(0), &json!(0), &json!([])));
        let (status, marked) = api.call("POST", "/me/notifications/read", &alice, None).await;
        assert_eq!((status, &marked["marked"]), (200, &json!(0)));
        let (status, _) = api.call("GET", "/me/notifications?limit=x", &alice, None).await;
        assert_eq!(status, 400);

        // Channels: admin only, secrets never shown.
        let receiver = Receiver::default();
        receiver.set_up(true);
        let (l, hook_port) = listener().await;
        let hooks = receiver.serve(l);
        let hook = json!({"kind": "webhook", "url": format!("http://127.0.0.1:{hook_port}/h"), "secret": "very-secret", "topics": ["crm.*"]});
        let (status, _) = api.call("PUT", "/admin/channels/erp", &alice, Some(hook.clone())).await;
        assert_eq!(status, 403);
        let (status, created) = api.call("PUT", "/admin/channels/erp", &admin, Some(hook.clone())).await;
        assert_eq!(status, 201, "{created}");
        assert_eq!(created["has_secret"], true);
        let (status, replaced) = api.call("PUT", "/admin/channels/erp", &admin, Some(json!({"kind": "webhook", "url": format!("http://127.0.0.1:{hook_port}/h"), "topics": ["crm.*"]}))).await;
        assert_eq!((status, &replaced["has_secret"]), (200, &json!(true)), "an absent secret is kept");
        let (status, bad) = api.call("PUT", "/admin/channels/bad", &admin, Some(json!({"kind": "sms", "url": "http://x"}))).await;
        assert_eq!((status, &bad["errors"][0]["field"]), (422, &json!("template")));
        let (status, listed) = api.call("GET", "/admin/channels", &admin, None).await;
        assert_eq!(status, 200);
        assert!(!listed.to_string().contains("very-secret"), "{listed}");
        assert_eq!(listed["data"][0]["name"], "erp");

        // The push log.
        let txn = store.begin_write().await.expect("begins");
        publish(&txn, store.dialect(), "crm.customer.approved", &json!({"customer": 1})).await.expect("publishes");
        txn.commit().await.expect("commits");
        let (status, pending) = api.call("GET", "/admin/outbox?status=pending", &admin, None).await;
        assert_eq!((status, &pending["total"]), (200, &json!(1)), "{pending}");
        let (status, _) = api.call("GET", "/admin/outbox", &alice, None).await;
        assert_eq!(status, 403);
        let (status, _) = api.call("GET", "/admin/outbox?status=lost", &admin, None).await;
        assert_eq!(status, 400);
        assert_eq!(deliver_due(&store, &settings()).await.expect("runs"), 1);
        let (_, delivered) = api.call("GET", "/admin/outbox?status=delivered&target=erp&topic=crm.customer.approved", &admin, None).await;
        assert_eq!(delivered["total"], 1, "{delivered}");
        let entry = &delivered["data"][0];
        assert_eq!((&entry["attempts"], &entry["last_error"], &entry["channel"]), (&json!(1), &Json::Null, &json!("webhook")));
        assert!(entry["delivered_at"].is_string() && entry["created_at"].is_string());
        let id = entry["id"].clone();
        let (status, one) = api.call("GET", &format!("/admin/outbox/{id}"), &admin, None).await;
        assert_eq!(status, 200);
        assert_eq!(one["payload"], json!({"customer": 1}));
        assert_eq!(one["attempt_log"][0]["status_code"], 200);
        let (status, _) = api.call("POST", &format!("/admin/outbox/{id}/retry"), &alice, None).await;
        assert_eq!(status, 403);
        let (status, _) = api.call("POST", &format!("/admin/outbox/{id}/retry"), &admin, None).await;
        assert_eq!(status, 202);
        let (status, _) = api.call("POST", &format!("/admin/outbox/{id}/retry"), &admin, None).await;
        assert_eq!(status, 409);
        assert_eq!(deliver_due(&store, &settings()).await.expect("runs"), 1);
        let (_, again) = api.call("GET", &format!("/admin/outbox/{id}"), &admin, None).await;
        assert_eq!(again["attempt_log"].as_array().map(Vec::len), Some(2));
        assert_eq!(receiver.accepted().len(), 2);
        let (status, _) = api.call("GET", "/admin/outbox/999999", &admin, None).await;
        assert_eq!(status, 404);

        let (status, _) = api.call("DELETE", "/admin/channels/erp", &admin, None).await;
        assert_eq!(status, 204);
        let (status, _) = api.call("DELETE", "/admin/channels/erp", &admin, None).await;
        assert_eq!(status, 404);
        hooks.abort();
        server.abort();
    })
    .await;
}
