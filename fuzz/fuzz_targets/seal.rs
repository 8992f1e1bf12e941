//! The sealed session cookie and login state: arbitrary text → open → decode, and the round
//! trip. Oracles: a sealed value opens under its own purpose only, and not once altered;
//! a decoded session or state re-encodes to the same bytes.
#![no_main]
use barbican::oidc::{LoginState, Session};
use barbican::seal::Sealer;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

const SECRETS: [&str; 2] = [
    "0123456789abcdef0123456789abcdef-current",
    "0123456789abcdef0123456789abcdef-previous",
];

fn sealers() -> &'static (Sealer, Sealer) {
    static S: OnceLock<(Sealer, Sealer)> = OnceLock::new();
    S.get_or_init(|| {
        (
            Sealer::new(&SECRETS, "session"),
            Sealer::new(&SECRETS, "login-state"),
        )
    })
}

fuzz_target!(|input: (&str, &[u8], &[u8], bool)| {
    let (text, plain, fresh, as_state) = input;
    let (sessions, states) = sealers();
    // Arbitrary text: a value opens under one purpose at most. (libFuzzer's comparison
    // tracing can hand a value sealed in an earlier run back as input, so "never opens" is
    // not an oracle.)
    assert!(sessions.open(text).is_none() || states.open(text).is_none());
    // Decoding arbitrary plaintext (what a sealed value could hold): never a panic, and
    // anything decoded round-trips.
    if let Some(s) = Session::decode(plain) {
        assert_eq!(Session::decode(&s.encode()), Some(s));
    }
    if let Some(s) = LoginState::decode(plain) {
        assert_eq!(LoginState::decode(&s.encode()), Some(s));
    }
    // Round trip and tamper.
    let sealer = if as_state { states } else { sessions };
    let other = if as_state { sessions } else { states };
    let Some(sealed) = sealer.seal(plain, fresh) else {
        return;
    };
    assert_eq!(sealer.open(&sealed).as_deref(), Some(plain));
    assert!(
        other.open(&sealed).is_none(),
        "opened under another purpose"
    );
    if let Some(&b) = fresh.first() {
        let mut bytes = sealed.clone().into_bytes();
        let i = usize::from(b) % bytes.len();
        let c = bytes[i];
        bytes[i] = if c == b'A' { b'B' } else { b'A' };
        if let Ok(t) = String::from_utf8(bytes) {
            if t != sealed {
                assert!(sealer.open(&t).is_none(), "tampered value opened");
            }
        }
    }
});
