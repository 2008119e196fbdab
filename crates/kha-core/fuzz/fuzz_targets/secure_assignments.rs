//! `NAME=value` assignments of decrypted `secure:` values, as their owner
//! wrote them: parsed, never a panic; names are shell names.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(pairs) = kha_core::travis::secure::parse_assignments(text) {
        for (name, _) in pairs {
            let mut b = name.bytes();
            assert!(matches!(b.next(), Some(c) if c == b'_' || c.is_ascii_alphabetic()));
            assert!(b.all(|c| c == b'_' || c.is_ascii_alphanumeric()));
        }
    }
    let _ = kha_core::travis::secure::parse_assignments_raw(text);
});
