//! The configuration document: bytes → parse (with a secret resolver) → validate → engine.
//! A document either yields problems with a JSON path each, or an engine; never a panic.
#![no_main]
use barbican::config::SecretRef;
use barbican::Engine;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut read = |r: SecretRef<'_>| -> Result<String, String> {
        match r {
            SecretRef::Env(n) if n.len() % 2 == 0 => {
                Ok(format!("secret-from-env-{n}-0123456789abcdef"))
            }
            SecretRef::File(p) if p.ends_with(".ok") => {
                Ok("secret-from-file-0123456789abcdef\n".into())
            }
            _ => Err("not set".into()),
        }
    };
    match Engine::from_json_with(data, &mut read) {
        Ok(e) => {
            let _ = e.needs_peer();
            let _ = e.jwks_files();
        }
        Err(problems) => {
            assert!(!problems.is_empty());
            for p in &problems {
                let _ = p.to_string();
            }
        }
    }
});
