//! The local stack end to end: it starts, applies migrations and answers `GET /status.json` on
//! a real socket — with a given database, and with a throwaway cluster of its own.

use std::net::SocketAddr;

use integration_tests::test_db::TestDb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A bare HTTP/1.1 GET, to exercise the real listener without another client library.
async fn get(addr: SocketAddr, path: &str) -> (u16, serde_json::Value) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        status::LOCAL_TOKEN
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = response.split_once("\r\n\r\n").unwrap().1;
    (
        status,
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

fn options(database_url: Option<String>) -> local_stack::Options {
    local_stack::Options {
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url,
        agents: integration_tests::stack_agents("whsec_test", "metrics-test-token"),
        ..Default::default()
    }
}

#[tokio::test]
async fn serves_status_against_a_given_database() {
    let db = TestDb::empty().await;
    let stack = local_stack::start(options(Some(db.url.clone())))
        .await
        .unwrap();
    let (status, json) = get(stack.addr, "/status.json").await;
    assert_eq!(status, 200);
    assert_eq!(
        json["database"]["migration_version"],
        shared::db::migrations::all().last().unwrap().version
    );
    assert_eq!(
        json["queues"].as_array().unwrap().len(),
        shared::queue::catalog::QUEUES.len()
    );
    let shown: Vec<&str> = json["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|agent| agent["name"].as_str().unwrap())
        .collect();
    for hosted in status::deployed_agents() {
        assert!(shown.contains(&hosted), "{hosted} missing from {shown:?}");
    }
    let addr = stack.addr;
    stack.stop().await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the port is closed after stop"
    );
}

#[tokio::test]
async fn starts_its_own_postgres_when_no_database_is_given() {
    let stack = local_stack::start(options(None)).await.unwrap();
    let directory = match &stack.data {
        local_stack::DataLocation::Throwaway { directory } => directory.clone(),
        other => panic!("expected a throwaway cluster, got {other}"),
    };
    assert!(directory.exists());
    let (status, json) = get(stack.addr, "/status.json").await;
    assert_eq!(status, 200);
    assert_eq!(json["database"]["reachable"], true);
    let addr = stack.addr;
    stack.stop().await;
    assert!(
        !directory.exists(),
        "the throwaway cluster is deleted on stop"
    );
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the port is closed after stop"
    );
}

#[tokio::test]
async fn demo_mode_sends_d1_emails_to_the_demo_signups() {
    let db = TestDb::empty().await;
    let mailbox = std::env::temp_dir().join(format!("mailbox-{}", uuid::Uuid::new_v4().simple()));
    let stack = local_stack::start(local_stack::Options {
        demo: true,
        mailbox_dir: mailbox.clone(),
        ..options(Some(db.url.clone()))
    })
    .await
    .unwrap();
    let outbox = email::provider::Mailbox::new(&mailbox);
    let mut emails = Vec::new();
    for _ in 0..120 {
        emails = outbox.read_all().unwrap();
        if emails.len() >= local_stack::demo::DEMO_PEOPLE.len() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    let mut recipients: Vec<&str> = emails
        .iter()
        .map(|email| email["to"][0].as_str().unwrap())
        .collect();
    recipients.sort();
    let mut expected: Vec<&str> = local_stack::demo::DEMO_PEOPLE
        .iter()
        .map(|(_, _, address)| *address)
        .collect();
    expected.sort();
    // The demo's audience signed up too, with addresses in their analytics events: only the
    // members are written to.
    assert_eq!(recipients, expected);
    for (_, address) in local_stack::demo::DEMO_AUDIENCE {
        assert!(!recipients.contains(address), "{address} got an email");
    }
    for email in &emails {
        assert_eq!(email["tags"][0]["value"], "d1");
        assert!(
            email["subject"]
                .as_str()
                .unwrap()
                .contains("your first day"),
            "{email}"
        );
    }

    // The one-click unsubscribe link of a demo email works against the stack itself.
    let link = emails[0]["headers"]["List-Unsubscribe"].as_str().unwrap();
    let url = link.trim_start_matches('<').trim_end_matches('>');
    assert!(url.starts_with(&stack.url()), "{url}");
    let response = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let (status, report) = get(stack.addr, "/status.json").await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["email_campaigns_30d"][0]["sent"], 3, "{report}");

    // The members are Auth users in the demo workspace, and the one the banner prints reads
    // its metrics, suggestions and health through the APIs with their access token.
    let member = stack.demo.clone().expect("demo mode has a member");
    let members: i64 = db
        .client()
        .await
        .query_one(
            "SELECT count(*) FROM workspace_members m JOIN auth.users u ON u.id = m.user_id
              WHERE m.workspace_id = $1",
            &[&member.workspace],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(members as usize, 1 + local_stack::demo::DEMO_PEOPLE.len());
    let http = reqwest::Client::new();
    let today = chrono::Utc::now().date_naive();
    let workspace = serde_json::json!(member.workspace);
    for (path, shows) in [
        (
            format!(
                "/metrics?workspace={}&from={}&to={today}",
                member.workspace,
                today - chrono::Duration::days(6)
            ),
            "/workspace",
        ),
        (
            format!("/suggestions?workspace={}", member.workspace),
            "/suggestions",
        ),
        (
            format!("/status/workspace.json?workspace={}", member.workspace),
            "/workspace",
        ),
    ] {
        let url = format!("{}{path}", stack.url());
        let as_member = http
            .get(&url)
            .bearer_auth(&member.access_token)
            .send()
            .await
            .unwrap();
        assert_eq!(as_member.status(), 200, "{path}");
        let body: serde_json::Value = as_member.json().await.unwrap();
        let shown = body
            .pointer(shows)
            .unwrap_or_else(|| panic!("{path}: {body}"));
        if shows == "/workspace" {
            assert_eq!(shown, &workspace, "{path}");
        } else {
            assert!(shown.is_array(), "{path}: {body}");
        }
        let anonymous = http.get(&url).send().await.unwrap();
        assert_eq!(anonymous.status(), 401, "{path} without a token");
    }
    stack.stop().await;
    std::fs::remove_dir_all(&mailbox).ok();
}
