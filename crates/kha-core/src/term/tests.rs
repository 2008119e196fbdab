//! Table tests of the renderer: bytes in, lines out.

use super::*;
use std::fmt::Write as _;

/// A compact notation for expected lines: `[start NAME] `/`[end NAME] `,
/// then each span as plain text or `<classes|css>text</>`, then
/// ` [ns=D]` for a duration.
fn show(line: &Line) -> String {
    let mut s = match &line.kind {
        LineKind::Text => String::new(),
        LineKind::FoldStart(n) => format!("[start {n}] "),
        LineKind::FoldEnd(n) => format!("[end {n}] "),
    };
    for span in &line.spans {
        let classes = span.style.classes();
        let css = span.style.inline_css();
        if classes.is_empty() && css.is_none() {
            s.push_str(&span.text);
        } else {
            let _ = write!(s, "<{classes}|{}>{}</>", css.unwrap_or_default(), span.text);
        }
    }
    if let Some(ns) = line.duration_ns {
        let _ = write!(s, " [ns={ns}]");
    }
    s
}

fn render(pieces: &[&[u8]]) -> Vec<String> {
    let mut t = Terminal::new();
    let mut lines = Vec::new();
    for p in pieces {
        lines.extend(t.feed(p));
    }
    lines.extend(t.finish());
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l.number, i + 1, "numbering");
    }
    lines.iter().map(show).collect()
}

#[test]
fn table() {
    let table: &[(&[u8], &[&str])] = &[
        (b"", &[]),
        (b"plain", &["plain"]),
        (b"a\nb\n", &["a", "b"]),
        (b"a\r\nb\r\n", &["a", "b"]),
        (b"\n\n", &["", ""]),
        // SGR: 16 colours, bright, backgrounds, resets.
        (b"\x1b[31mred\x1b[0m plain", &["<fg-1|>red</> plain"]),
        (b"\x1b[1;32mok\x1b[m.", &["<fg-2 bold|>ok</>."]),
        (b"\x1b[91;104mx\x1b[39my\x1b[49mz", &["<fg-9 bg-12|>x</><bg-12|>y</>z"]),
        (b"\x1b[2;3;4ma\x1b[22;23;24mb", &["<dim italic underline|>a</>b"]),
        (b"\x1b[1;2ma\x1b[22mb", &["<bold dim|>a</>b"]),
        (b"\x1b[33;43ma\x1b[39;49mb", &["<fg-3 bg-3|>a</>b"]),
        // 256 colours: themed below 16, inline above.
        (b"\x1b[38;5;9ma\x1b[38;5;196mb", &["<fg-9|>a</><|color:#ff0000>b</>"]),
        (b"\x1b[48;5;232mg", &["<|background-color:#080808>g</>"]),
        (b"\x1b[38;5;16;48;5;231mc", &["<|color:#000000;background-color:#ffffff>c</>"]),
        // Truecolour, with `;` and `:` separators.
        (b"\x1b[38;2;1;2;3mt", &["<|color:#010203>t</>"]),
        (b"\x1b[48:2:255:128:0mt", &["<|background-color:#ff8000>t</>"]),
        (b"\x1b[38;2;1;2;3;1mtb", &["<bold|color:#010203>tb</>"]),
        // Inverse swaps before classes are chosen.
        (b"\x1b[7mi\x1b[27mn", &["<inverse|>i</>n"]),
        (b"\x1b[31;7mi", &["<bg-1 inverse|>i</>"]),
        (b"\x1b[31;42;7mi", &["<fg-2 bg-1|>i</>"]),
        (b"\x1b[7;38;5;100mi", &["<inverse|background-color:#878700>i</>"]),
        // Unknown SGR parameters are ignored; an unknown colour space
        // stops the sequence.
        (b"\x1b[5;9;31mx", &["<fg-1|>x</>"]),
        (b"\x1b[38;7;1mx", &["x"]),
        // Style carries over newlines.
        (b"\x1b[32ma\nb\x1b[0m\nc", &["<fg-2|>a</>", "<fg-2|>b</>", "c"]),
        // \r overwrites cell by cell, keeping the rest.
        (b"hello\rj", &["jello"]),
        (b"10%\r20%\r100%\n", &["100%"]),
        (b"abc\r\x1b[31mX", &["<fg-1|>X</>bc"]),
        (b"abcdef\rxy\x1b[K\n", &["xy"]),
        (b"abcdef\rxy\x1b[0K", &["xy"]),
        (b"abcdef\x1b[K", &["abcdef"]),
        (b"abcdef\rab\x1b[1Kz", &["  zdef"]),
        (b"abcdef\x08\x08\x1b[2Kz", &["    z"]),
        // Backspace moves left; overwriting follows.
        (b"ab\x08c", &["ac"]),
        (b"a\x08\x08\x08b", &["b"]),
        (b"a\tb", &["a       b"]),
        (b"abcdefghij\r\tX", &["abcdefghXj"]),
        // Other CSI, OSC, DCS, charset designations, C0 dropped.
        (b"a\x1b[2Jb\x1b[?25lc\x1b[10;20Hd", &["abcd"]),
        (b"\x1b]0;title\x07a\x1b]8;;http://x\x1b\\b", &["ab"]),
        (b"\x1bPq#0\x1b\\x\x1b(By\x1b=z", &["xyz"]),
        (b"a\x00\x07\x0e\x7fb", &["ab"]),
        (b"\x1b[3\x1b[31mr", &["<fg-1|>r</>"]),
        // A newline ends any unfinished sequence; style carries over.
        (b"a\x1b]0;title\nb", &["a", "b"]),
        (b"\x1b[1ma\x1b[31\nb", &["<bold|>a</>", "<bold|>b</>"]),
        (b"\x1bP\x1b\nc", &["", "c"]),
        (b"\x1b\xc3\xa9\x1b(\xc3\xa9", &["\u{e9}\u{e9}"]),
        // Controls inside CSI act; the sequence goes on.
        (b"ab\x1b[3\r1mX", &["<fg-1|>X</>b"]),
        // Invalid UTF-8 becomes U+FFFD; valid multibyte survives.
        (b"caf\xc3\xa9 \xff\xfe ok", &["café \u{FFFD}\u{FFFD} ok"]),
        (b"\xe2\x82\n", &["\u{FFFD}"]),
        (b"x\xf0\x9f", &["x\u{FFFD}"]),
        (b"\xc3\x28", &["\u{FFFD}("]),
        (b"\xed\xa0\x80", &["\u{FFFD}\u{FFFD}\u{FFFD}"]),
        // \r overwriting multibyte text.
        (b"\xc3\xa9\xc3\xa9\rx", &["x\u{e9}"]),
        // Travis markers.
        (
            b"travis_fold:start:install\r\x1b[0K$ pip install\r\nok\r\ntravis_fold:end:install\r\x1b[0K\r\n",
            &["[start install] $ pip install", "ok", "[end install] "],
        ),
        (
            b"travis_fold:start:git.checkout\r\x1b[0Ktravis_time:start:1bd6b0b0\r\x1b[0K$ git clone\r\n",
            &["[start git.checkout] $ git clone"],
        ),
        (
            b"travis_time:end:1bd6b0b0:start=1,finish=2,duration=1500000000\r\x1b[0K\r\n",
            &[" [ns=1500000000]"],
        ),
        (
            b"travis_time:end:ab:start=1,finish=2,duration=7\r\x1b[0K\x1b[32;1mThe command exited with 0.\x1b[0m\r\n",
            &["<fg-2 bold|>The command exited with 0.</> [ns=7]"],
        ),
        (b"travis_time:end:ab:garbage\r\x1b[0K\n", &[""]),
        // A marker followed by \n directly, and at the very end.
        (b"travis_fold:start:a\nx\ntravis_fold:end:a", &["[start a] ", "x", "[end a] "]),
        // Two fold markers on one line: the last one counts.
        (
            b"travis_fold:end:a\r\x1b[0Ktravis_fold:start:b\r\x1b[0K$ make\n",
            &["[start b] $ make"],
        ),
        // Not markers: text around them, or whitespace in the name.
        (b"see travis_fold:start:x\r\n", &["see travis_fold:start:x"]),
        (b"travis_fold:start:a b\r\n", &["travis_fold:start:a b"]),
        (b"travis_fold:middle:a\r\n", &["travis_fold:middle:a"]),
    ];
    for (input, want) in table {
        let got = render(&[input]);
        assert_eq!(got, *want, "input {:?}", String::from_utf8_lossy(input));
        // Every split point gives the same lines.
        for cut in 0..input.len() {
            let got = render(&[&input[..cut], &input[cut..]]);
            assert_eq!(got, *want, "input {input:?} cut at {cut}");
        }
        // And so does a byte at a time.
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(render(&bytes), *want, "input {input:?} byte by byte");
    }
}

#[test]
fn durations() {
    for (ns, want) in [
        (0, "0.00s"),
        (420_000_000, "0.42s"),
        (12_345_678_901, "12.34s"),
        (187_000_000_000, "3m 07s"),
        (3_720_000_000_000, "1h 02m"),
    ] {
        assert_eq!(format_duration_ns(ns), want);
    }
}

#[test]
fn large_log_renders_whole() {
    // 200,000 lines, ~16 MB, with colours and a fold every 1,000 lines.
    let mut log = Vec::new();
    for i in 0..200_000 {
        if i % 1000 == 0 {
            log.extend_from_slice(format!("travis_fold:start:f{i}\r\x1b[0K").as_bytes());
        }
        log.extend_from_slice(
            format!(
                "\x1b[32m{i:>8}\x1b[0m compiling crate number {i} of many, with padding to make it long enough\r\n"
            )
            .as_bytes(),
        );
    }
    assert!(log.len() > 15_000_000, "{}", log.len());
    let mut t = Terminal::new();
    let mut count = 0;
    let mut last = None;
    for chunk in log.chunks(65536) {
        let lines = t.feed(chunk);
        count += lines.len();
        last = lines.into_iter().last().or(last);
    }
    assert!(t.finish().is_none());
    assert_eq!(count, 200_000);
    let last = last.map(|l| (l.number, l.text()));
    assert_eq!(
        last,
        Some((
            200_000,
            "  199999 compiling crate number 199999 of many, with padding to make it long enough"
                .to_string()
        ))
    );
    // How fast is kha-bench's figure ("render 200,000 coloured lines"),
    // not a timed assertion that flakes on a loaded machine.
}
