//! The log of what each stand-in received and how it answered, for tests to assert what
//! a client asked: every stand-in records one [`LoggedRequest`] per request, kept in a
//! bounded [`RequestLog`] behind its [`Switches`](crate::Switches).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::lock;
use crate::query::first;

/// Which stand-in a logged request reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    Meta,
    TikTok,
    Shopify,
}

/// How a stand-in answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Data served (possibly an empty page).
    Ok,
    /// The platform's throttling signal (Meta 400 + code 4/17/613/80000, TikTok 40100,
    /// Shopify 429).
    Throttled,
    /// Missing, wrong or expired token.
    AuthFailed,
    /// An injected HTTP 500.
    ServerError,
    /// The request itself was rejected (bad or unsupported parameters, unknown account).
    Rejected,
}

/// One request a stand-in received, for tests to assert what was asked.
#[derive(Debug, Clone)]
pub struct LoggedRequest {
    pub api: Api,
    pub path: String,
    /// The decoded query string, in order.
    pub query: Vec<(String, String)>,
    /// The 1-based page this request asked for, when it got that far.
    pub page: Option<u32>,
    pub outcome: Outcome,
    /// Rows (insights rows, report rows, orders) in the answer.
    pub rows: usize,
}

impl LoggedRequest {
    /// The first value of a query parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        first(&self.query, name)
    }
}

/// How many requests the log keeps (the oldest are dropped; the counter keeps counting),
/// so a benchmark's hundreds of thousands of requests do not grow it without bound.
const LOG_CAPACITY: usize = 20_000;

#[derive(Debug, Default)]
pub(crate) struct RequestLog {
    received: AtomicU64,
    entries: Mutex<VecDeque<LoggedRequest>>,
}

impl RequestLog {
    pub(crate) fn record(&self, entry: LoggedRequest) {
        self.received.fetch_add(1, Ordering::SeqCst);
        let mut entries = lock::unpoisoned(&self.entries);
        if entries.len() == LOG_CAPACITY {
            entries.pop_front();
        }
        entries.push_back(entry);
    }

    /// The kept entries, oldest first.
    pub(crate) fn entries(&self) -> Vec<LoggedRequest> {
        lock::unpoisoned(&self.entries).iter().cloned().collect()
    }

    /// How many requests were recorded in total (not capped).
    pub(crate) fn received(&self) -> u64 {
        self.received.load(Ordering::SeqCst)
    }

    /// How many kept entries ended with `outcome`.
    pub(crate) fn count(&self, outcome: Outcome) -> usize {
        lock::unpoisoned(&self.entries)
            .iter()
            .filter(|entry| entry.outcome == outcome)
            .count()
    }

    pub(crate) fn clear(&self) {
        lock::unpoisoned(&self.entries).clear();
        self.received.store(0, Ordering::SeqCst);
    }
}
