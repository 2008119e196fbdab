//! A job's output, in chunks cut where the input says: the terminal
//! renderer (what the log viewer shows) takes any bytes, and the masker
//! never lets a secret through, however the output is cut.
#![no_main]

use kha_core::mask::Masker;
use kha_core::term::Terminal;
use libfuzzer_sys::fuzz_target;

const SECRET: &[u8] = b"s3cr3t-Value";

fuzz_target!(|data: &[u8]| {
    // The first byte sets the chunk size; the rest is the output, with the
    // secret spliced in where the second byte says.
    let (Some(&size), Some(&at)) = (data.first(), data.get(1)) else {
        return;
    };
    let mut output = data[2..].to_vec();
    let at = usize::from(at).min(output.len());
    output.splice(at..at, SECRET.iter().copied());
    let size = usize::from(size).max(1);

    let mut term = Terminal::new();
    let mut masker = Masker::new([SECRET]);
    let mut shown = Vec::new();
    for chunk in output.chunks(size) {
        let _ = term.feed(chunk);
        shown.extend(masker.push(chunk));
    }
    let _ = term.finish();
    shown.extend(masker.finish());
    assert!(
        !shown.windows(SECRET.len()).any(|w| w == SECRET),
        "the secret got through"
    );
});
