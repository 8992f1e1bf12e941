//! `/metrics` in the Prometheus text format (exposition format 0.0.4): the engine's counters
//! (drained with `take_counters` and summed here), callouts by cluster and status class,
//! key-set refreshes, answers by status, and a latency histogram of auth requests.
//! Labels are cluster names, status codes and outcome names: never request data.

use barbican::decision::Counters;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Upper bounds of the latency buckets, in seconds.
pub const BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Default)]
pub struct Metrics {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
    /// Answers to auth requests by status code (a handful of codes).
    answers: Mutex<BTreeMap<u16, u64>>,
    /// Callouts by (cluster, status class).
    callouts: Mutex<BTreeMap<(String, &'static str), u64>>,
    jwks_ok: AtomicU64,
    jwks_failed: AtomicU64,
    refused: Mutex<BTreeMap<&'static str, u64>>,
}

fn bump<K: Ord>(m: &Mutex<BTreeMap<K, u64>>, k: K) {
    if let Ok(mut g) = m.lock() {
        *g.entry(k).or_insert(0) += 1;
    }
}

/// A callout's status as a label: the class, or `error` when there was no answer.
pub fn status_class(status: u16) -> &'static str {
    match status {
        0 => "error",
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

impl Metrics {
    pub fn answered(&self, status: u16, elapsed: std::time::Duration) {
        let s = elapsed.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if s <= *b {
                if let Some(c) = self.buckets.get(i) {
                    c.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(
            u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        bump(&self.answers, status);
    }

    pub fn callout(&self, cluster: &str, status: u16) {
        bump(&self.callouts, (cluster.to_string(), status_class(status)));
    }

    pub fn jwks_refresh(&self, ok: bool) {
        if ok { &self.jwks_ok } else { &self.jwks_failed }.fetch_add(1, Ordering::Relaxed);
    }

    /// A request refused before the engine saw it (front protocol, bounds).
    pub fn refused(&self, reason: &'static str) {
        bump(&self.refused, reason);
    }

    pub fn render(&self, engine: &Counters, ready: bool, in_flight: usize) -> String {
        let mut o = String::with_capacity(4096);
        let c = engine;
        let _ = writeln!(o, "# HELP barbican_decisions_total Decisions by outcome.");
        let _ = writeln!(o, "# TYPE barbican_decisions_total counter");
        for (outcome, v) in [
            ("allow", c.allowed),
            ("deny", c.denied),
            ("redirect", c.redirected),
            ("unavailable", c.unavailable),
            ("invalid", c.requests_invalid),
        ] {
            let _ = writeln!(o, "barbican_decisions_total{{outcome=\"{outcome}\"}} {v}");
        }
        let _ = writeln!(
            o,
            "# HELP barbican_requests_total Requests by route policy."
        );
        let _ = writeln!(o, "# TYPE barbican_requests_total counter");
        for (policy, v) in [
            ("bypass", c.requests_bypass),
            ("protected", c.requests_protected),
            ("api", c.requests_api),
            ("deny", c.requests_deny),
        ] {
            let _ = writeln!(o, "barbican_requests_total{{policy=\"{policy}\"}} {v}");
        }
        let _ = writeln!(
            o,
            "# HELP barbican_cache_total Session decision cache lookups."
        );
        let _ = writeln!(o, "# TYPE barbican_cache_total counter");
        for (result, v) in [
            ("hit", c.cache_hit),
            ("miss", c.cache_miss),
            ("coalesced", c.coalesced),
            ("stale_served", c.stale_served),
        ] {
            let _ = writeln!(o, "barbican_cache_total{{result=\"{result}\"}} {v}");
        }
        let _ = writeln!(o, "# HELP barbican_engine_callouts_total Callouts the engine asked for, and those that failed.");
        let _ = writeln!(o, "# TYPE barbican_engine_callouts_total counter");
        let _ = writeln!(
            o,
            "barbican_engine_callouts_total{{result=\"started\"}} {}",
            c.callouts
        );
        let _ = writeln!(
            o,
            "barbican_engine_callouts_total{{result=\"error\"}} {}",
            c.callout_errors
        );
        let _ = writeln!(o, "# HELP barbican_callouts_total Callouts performed, by cluster and answer status class (error: no answer).");
        let _ = writeln!(o, "# TYPE barbican_callouts_total counter");
        if let Ok(g) = self.callouts.lock() {
            for ((cluster, class), v) in g.iter() {
                let _ = writeln!(
                    o,
                    "barbican_callouts_total{{cluster=\"{}\",status=\"{class}\"}} {v}",
                    escape(cluster)
                );
            }
        }
        let _ = writeln!(o, "# HELP barbican_jwks_refreshes_total Background key-set fetches (and discovery) by result.");
        let _ = writeln!(o, "# TYPE barbican_jwks_refreshes_total counter");
        let _ = writeln!(
            o,
            "barbican_jwks_refreshes_total{{result=\"ok\"}} {}",
            self.jwks_ok.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            o,
            "barbican_jwks_refreshes_total{{result=\"error\"}} {}",
            self.jwks_failed.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            o,
            "# HELP barbican_answers_total Answers to auth requests by HTTP status."
        );
        let _ = writeln!(o, "# TYPE barbican_answers_total counter");
        if let Ok(g) = self.answers.lock() {
            for (code, v) in g.iter() {
                let _ = writeln!(o, "barbican_answers_total{{code=\"{code}\"}} {v}");
            }
        }
        let _ = writeln!(
            o,
            "# HELP barbican_refused_total Auth requests refused before a decision, by reason."
        );
        let _ = writeln!(o, "# TYPE barbican_refused_total counter");
        if let Ok(g) = self.refused.lock() {
            for (reason, v) in g.iter() {
                let _ = writeln!(o, "barbican_refused_total{{reason=\"{reason}\"}} {v}");
            }
        }
        let _ = writeln!(
            o,
            "# HELP barbican_request_duration_seconds Time to answer an auth request."
        );
        let _ = writeln!(o, "# TYPE barbican_request_duration_seconds histogram");
        for (i, b) in BUCKETS.iter().enumerate() {
            let v = self.buckets.get(i).map_or(0, |c| c.load(Ordering::Relaxed));
            let _ = writeln!(
                o,
                "barbican_request_duration_seconds_bucket{{le=\"{b}\"}} {v}"
            );
        }
        let n = self.count.load(Ordering::Relaxed);
        let _ = writeln!(
            o,
            "barbican_request_duration_seconds_bucket{{le=\"+Inf\"}} {n}"
        );
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(o, "barbican_request_duration_seconds_sum {sum}");
        let _ = writeln!(o, "barbican_request_duration_seconds_count {n}");
        let _ = writeln!(
            o,
            "# HELP barbican_ready 1 when the configuration is loaded and every key set fetched."
        );
        let _ = writeln!(o, "# TYPE barbican_ready gauge");
        let _ = writeln!(o, "barbican_ready {}", u8::from(ready));
        let _ = writeln!(o, "# HELP barbican_in_flight Auth requests being decided.");
        let _ = writeln!(o, "# TYPE barbican_in_flight gauge");
        let _ = writeln!(o, "barbican_in_flight {in_flight}");
        o
    }
}

/// Label values per the exposition format: backslash, quote and newline escaped.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Adds `b` into `a` (the engine's counters are drained on every scrape and tick).
pub fn add(a: &mut Counters, b: &Counters) {
    a.requests_bypass += b.requests_bypass;
    a.requests_protected += b.requests_protected;
    a.requests_api += b.requests_api;
    a.requests_deny += b.requests_deny;
    a.requests_invalid += b.requests_invalid;
    a.cache_hit += b.cache_hit;
    a.cache_miss += b.cache_miss;
    a.coalesced += b.coalesced;
    a.callouts += b.callouts;
    a.callout_errors += b.callout_errors;
    a.stale_served += b.stale_served;
    a.allowed += b.allowed;
    a.denied += b.denied;
    a.redirected += b.redirected;
    a.unavailable += b.unavailable;
}
