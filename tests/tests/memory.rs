//! What one hostile request costs the analytics agent in memory, measured.
//!
//! A binary of its own because the measure is process-wide: a counting global allocator
//! records the bytes allocated and their peak, and the request under test is the only work
//! in flight while it is read (the cases run one after another in a single test). Each case
//! drives the router with `tower::ServiceExt::oneshot` against a fresh database, as a client
//! would, and asserts the peak stayed under [`PEAK_LIMIT`] and the answer under
//! [`ANSWER_LIMIT`], printing both.
//!
//! The bodies are the cheap ones to send and the dear ones to read: a few kilobytes of gzip
//! inflating to millions of `{}` (`[{},{},…]` up to the decoded limit), the same through
//! Mixpanel's routes, and a batch within the event cap whose events are all one-key objects,
//! which hold dozens of times their text once parsed. For scale, the largest batch that is
//! accepted and stored is measured too.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use analytics::{AnalyticsDeps, TokenKind};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine;
use integration_tests::test_db::TestDb;
use shared::queue::postgres::PostgresTransport;
use tower::ServiceExt;

/// Counts live heap bytes and their high-water mark.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(bytes: usize) {
    let live = LIVE
        .fetch_add(bytes, Ordering::SeqCst)
        .saturating_add(bytes);
    PEAK.fetch_max(live, Ordering::SeqCst);
}

fn shrank(bytes: usize) {
    LIVE.fetch_sub(bytes, Ordering::SeqCst);
}

// SAFETY: every call is forwarded to the system allocator unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc` is passed on as it is.
        let pointer = unsafe { System.alloc(layout) };
        if !pointer.is_null() {
            grew(layout.size());
        }
        pointer
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let pointer = unsafe { System.alloc_zeroed(layout) };
        if !pointer.is_null() {
            grew(layout.size());
        }
        pointer
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        // SAFETY: as for `alloc`.
        unsafe { System.dealloc(pointer, layout) };
        shrank(layout.size());
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let moved = unsafe { System.realloc(pointer, layout, new_size) };
        if !moved.is_null() {
            // The old block and the new one may both be alive during the move.
            grew(new_size);
            shrank(layout.size());
        }
        moved
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The most one request may have allocated at its peak.
const PEAK_LIMIT: usize = 64 * 1024 * 1024;
/// The largest answer.
const ANSWER_LIMIT: usize = 64 * 1024;

const API_SECRET: &str = "memory-api-secret";

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// `[{},{},…]` of about `bytes` bytes.
fn empty_objects(bytes: usize) -> Vec<u8> {
    let count = bytes.saturating_sub(2) / 3;
    let mut body = Vec::with_capacity(bytes);
    body.push(b'[');
    for i in 0..count {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(b"{}");
    }
    body.push(b']');
    body
}

/// Up to the event cap of events each as large as Mixpanel allows, made of one-key objects.
fn expanding_events(token_field: &str) -> Vec<u8> {
    let list = vec![r#"{"a":0}"#; 250].join(",");
    let properties: Vec<String> = (0..250).map(|i| format!(r#""p{i}":[{list}]"#)).collect();
    let event = format!(
        r#"{{"event":"x","distinct_id":"u",{token_field}"properties":{{"distinct_id":"u",{}}}}}"#,
        properties.join(",")
    );
    let count =
        (analytics::MAX_DECODED_BYTES / (event.len() + 1)).min(analytics::events::MAX_EVENTS);
    format!("[{}]", vec![event.as_str(); count].join(",")).into_bytes()
}

/// The largest batch that is accepted: the event cap, each event with forty properties
/// of a hundred bytes.
fn largest_accepted_batch() -> Vec<u8> {
    let properties: Vec<String> = (0..40)
        .map(|i| format!(r#""p{i}":"{}""#, "v".repeat(100)))
        .collect();
    let events: Vec<String> = (0..analytics::events::MAX_EVENTS)
        .map(|i| {
            format!(
                r#"{{"event":"big","distinct_id":"u{i}","uuid":"{}","properties":{{{}}}}}"#,
                uuid::Uuid::new_v4(),
                properties.join(",")
            )
        })
        .collect();
    format!(
        r#"{{"api_key":"phc_memory","batch":[{}]}}"#,
        events.join(",")
    )
    .into_bytes()
}

struct Case {
    name: &'static str,
    path: &'static str,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

#[tokio::test(flavor = "current_thread")]
async fn hostile_bodies_stay_under_64_mb_and_their_answers_under_64_kb() {
    let db = TestDb::new().await;
    let pool = db.pool(2);
    let keys = integration_tests::test_keys();
    analytics::ensure_default_workspace(
        &pool,
        &keys,
        "memory",
        &[
            ("phc_memory", TokenKind::PosthogProject),
            ("mp_memory", TokenKind::MixpanelProject),
            (API_SECRET, TokenKind::MixpanelApiSecret),
        ],
    )
    .await
    .unwrap();
    let transport = Arc::new(PostgresTransport::new(pool.clone()));
    let container = shared::lambda::Container::new(pool, transport, shared::clock::Clock::system());
    let config = analytics::Config { keys };
    let router = analytics::router(Arc::new(AnalyticsDeps::new(&container, config)));

    let json = ("content-type", "application/json".to_string());
    let gzipped = ("content-encoding", "gzip".to_string());
    let import_auth = (
        "authorization",
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{API_SECRET}:"))
        ),
    );
    let small_bomb = gzip(&empty_objects(3 * 1024 * 1024));
    let full_bomb = gzip(&empty_objects(analytics::MAX_DECODED_BYTES));
    println!(
        "bombs: {} bytes of gzip → 1M `{{}}`, {} bytes → {}M",
        small_bomb.len(),
        full_bomb.len(),
        analytics::MAX_DECODED_BYTES / 3 / 1_000_000
    );
    assert!(
        small_bomb.len() < 4 * 1024,
        "about 3 KB: {}",
        small_bomb.len()
    );
    let cases = vec![
        Case {
            name: "capture, 3 KB of gzip → 1M {}",
            path: "/batch/",
            headers: vec![json.clone(), gzipped.clone()],
            body: small_bomb.clone(),
        },
        Case {
            name: "capture, gzip → [{},…] up to the decoded limit",
            path: "/batch/",
            headers: vec![json.clone(), gzipped.clone()],
            body: full_bomb.clone(),
        },
        Case {
            name: "capture, {batch: [{},…]} sniffed as gzip",
            path: "/e/",
            headers: vec![],
            body: gzip(
                &[
                    br#"{"api_key":"phc_memory","batch":"#.as_slice(),
                    &empty_objects(analytics::MAX_DECODED_BYTES - 64),
                    b"}",
                ]
                .concat(),
            ),
        },
        Case {
            name: "track, gzip → [{},…]",
            path: "/track",
            headers: vec![json.clone(), gzipped.clone()],
            body: full_bomb.clone(),
        },
        Case {
            name: "import, gzip → [{},…]",
            path: "/import",
            headers: vec![json.clone(), gzipped.clone(), import_auth.clone()],
            body: full_bomb,
        },
        Case {
            name: "capture, events of one-key objects",
            path: "/batch/",
            headers: vec![json.clone(), gzipped.clone()],
            body: gzip(&expanding_events(r#""api_key":"phc_memory","#)),
        },
        Case {
            name: "accepted: capture, the event cap of 4 KB events, stored",
            path: "/batch/",
            headers: vec![json.clone(), gzipped.clone()],
            body: gzip(&largest_accepted_batch()),
        },
        Case {
            name: "import, events of one-key objects (Mixpanel's limits)",
            path: "/import",
            headers: vec![json.clone(), gzipped.clone(), import_auth],
            body: gzip(&expanding_events("")),
        },
    ];
    for case in cases {
        let accepted = case.name.starts_with("accepted");
        let mut request = Request::post(case.path);
        for (name, value) in &case.headers {
            request = request.header(*name, value);
        }
        let request = request.body(Body::from(case.body)).unwrap();
        let baseline = LIVE.load(Ordering::SeqCst);
        PEAK.store(baseline, Ordering::SeqCst);
        let response = router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let answer = axum::body::to_bytes(response.into_body(), ANSWER_LIMIT + 1).await;
        let peak = PEAK.load(Ordering::SeqCst).saturating_sub(baseline);
        let answer = answer.expect("the answer is under 64 KB");
        println!(
            "{}: {status}, peak {:.1} MB, answer {} bytes: {}",
            case.name,
            peak as f64 / 1e6,
            answer.len(),
            String::from_utf8_lossy(&answer[..answer.len().min(160)])
        );
        assert!(peak < PEAK_LIMIT, "{}: peak {peak} bytes", case.name);
        assert!(answer.len() < ANSWER_LIMIT, "{}", case.name);
        if accepted {
            assert_eq!(status, StatusCode::OK, "{}", case.name);
        } else {
            assert!(
                status.is_client_error() && status != StatusCode::UNAUTHORIZED,
                "{}: a hostile body is refused, not stored: {status}",
                case.name
            );
        }
    }
}
