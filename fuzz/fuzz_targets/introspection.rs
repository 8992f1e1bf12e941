//! RFC 7662 introspection answers: status + body → parse. Oracles: only a 200 parses; an
//! answer parsed active carries `"active": true` somewhere in its text; errors display.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (status, claim, body) = match data.split_first() {
        Some((&b, rest)) => (
            if b < 240 { 200 } else { u16::from(b) * 2 },
            if b % 2 == 0 { "groups" } else { "roles" },
            rest,
        ),
        None => (200, "groups", data),
    };
    match barbican::idp::introspection::parse(status, body, claim) {
        Ok(i) => {
            assert_eq!(status, 200);
            if i.active {
                assert!(body.windows(4).any(|w| w == b"true"));
            }
        }
        Err(e) => {
            let _ = (e.to_string(), e.reason());
        }
    }
});
