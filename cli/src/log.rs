//! A one-line logger on stderr. Level from `--log-level`, else `BARBICAN_LOG`, else
//! `RUST_LOG` (a bare level name: error, warn, info, debug), else info. Callers never pass
//! a token, cookie or secret value: lines carry names, codes and sizes.

use std::sync::atomic::{AtomicU8, Ordering};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error = 1,
    Warn = 2,
    Info = 3,
    Debug = 4,
}

static LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);

pub fn parse(s: &str) -> Option<Level> {
    match s.trim().to_ascii_lowercase().as_str() {
        "error" => Some(Level::Error),
        "warn" | "warning" => Some(Level::Warn),
        "info" => Some(Level::Info),
        "debug" | "trace" => Some(Level::Debug),
        _ => None,
    }
}

/// Sets the level from the flag or the environment.
pub fn init(flag: Option<&str>) {
    let level = flag
        .and_then(parse)
        .or_else(|| {
            std::env::var("BARBICAN_LOG")
                .ok()
                .as_deref()
                .and_then(parse)
        })
        .or_else(|| std::env::var("RUST_LOG").ok().as_deref().and_then(parse))
        .unwrap_or(Level::Info);
    LEVEL.store(level as u8, Ordering::Relaxed);
}

pub fn enabled(l: Level) -> bool {
    (l as u8) <= LEVEL.load(Ordering::Relaxed)
}

pub fn line(l: Level, msg: std::fmt::Arguments<'_>) {
    if !enabled(l) {
        return;
    }
    let name = match l {
        Level::Error => "error",
        Level::Warn => "warn",
        Level::Info => "info",
        Level::Debug => "debug",
    };
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    // One write per line: stderr is unbuffered, and `eprintln!` writes each formatted piece
    // with its own syscall (measured: debug level, one line per decision, halved serve's
    // throughput that way). One write also keeps lines whole between threads.
    let mut s = format!("{t:.3} {name} barbican: {msg}");
    s.push('\n');
    let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), s.as_bytes());
}

#[macro_export]
macro_rules! log {
    ($l:ident, $($arg:tt)*) => {
        $crate::log::line($crate::log::Level::$l, format_args!($($arg)*))
    };
}
