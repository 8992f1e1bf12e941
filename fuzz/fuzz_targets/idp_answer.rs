//! Each forward-auth dialect's answer (status + headers), and the callout it builds from an
//! arbitrary original request. Oracles: no answer outside the success statuses allows; 0 and
//! 5xx are "unavailable"; a deny relays only Location/Set-Cookie/WWW-Authenticate.
#![no_main]
use arbitrary::Arbitrary;
use barbican::config::ForwardAuthConfig;
use barbican::idp::{ForwardAuth, Original, Verdict};
use barbican_fuzz::{header_list, Name};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    dialect: u8,
    copy_headers: Option<Vec<String>>,
    groups_header: Option<String>,
    groups_separator: Option<String>,
    success: Option<Vec<u16>>,
    status: u16,
    answer: Vec<(Name, String)>,
    request: Vec<(Name, String)>,
    method: String,
    authority: String,
    path_and_query: String,
}

fuzz_target!(|i: Input| {
    let dialect = ["authentik", "authelia", "oauth2-proxy", "custom"][usize::from(i.dialect % 4)];
    let mut c = serde_json::json!({"dialect": dialect, "cluster": "idp", "path": "/auth"});
    if dialect == "custom" {
        c["copy_headers"] = serde_json::json!(i.copy_headers);
        c["groups_header"] = serde_json::json!(i.groups_header);
        c["groups_separator"] = serde_json::json!(i.groups_separator);
        c["success_statuses"] = serde_json::json!(i.success);
    }
    // Through the config document, so only what validation lets through is interpreted.
    let doc = serde_json::json!({"session": {"mode": "forward_auth", "forward_auth": c}});
    let Ok(cfg) = barbican::config::parse(doc.to_string().as_bytes()) else {
        return;
    };
    let Some(fa_cfg): Option<&ForwardAuthConfig> =
        cfg.session.as_ref().and_then(|s| s.forward_auth.as_ref())
    else {
        return;
    };
    let fa = ForwardAuth::new(fa_cfg);
    let answer = header_list(&i.answer);
    let success = i.success.clone().filter(|_| dialect == "custom");
    match fa.interpret(i.status, &answer) {
        Verdict::Unavailable => assert!(i.status == 0 || i.status >= 500),
        Verdict::Allow { identity, .. } => {
            assert!(i.status != 0 && i.status < 500);
            if let Some(s) = &success {
                assert!(s.contains(&i.status));
            } else {
                assert!((200..300).contains(&i.status));
            }
            assert!(identity.iter().all(|(n, _)| !n.starts_with(':')));
            let _: Vec<&str> = fa.groups(&identity).collect();
        }
        Verdict::Deny {
            status, headers, ..
        } => {
            assert!((300..500).contains(&status));
            assert!(headers.iter().all(|(n, _)| matches!(
                n.as_str(),
                "location" | "set-cookie" | "www-authenticate"
            )));
        }
    }
    let request = header_list(&i.request);
    let built = fa.build(&Original {
        method: &i.method,
        scheme: "https",
        authority: &i.authority,
        path_and_query: &i.path_and_query,
        headers: &barbican::request::borrow_all(&request),
    });
    assert!(built.iter().any(|(n, _)| n == ":path"));
});
