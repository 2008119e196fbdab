//! A terminal renderer for job logs: raw bytes in, styled lines out, the
//! way a terminal would have shown them. The control node uses it to render
//! logs for readers without JavaScript; `kha.js` implements the same
//! semantics in the browser, so both must change together.
//!
//! What it understands (and nothing else, on purpose: a log is not a
//! screen, and anything cursor-addressed would need a grid):
//! - SGR: 0/1/2/3/4/7/22/23/24/27, 30–37/39/40–47/49/90–97/100–107,
//!   38;5;n / 48;5;n (256 colours), 38;2;r;g;b / 48;2;r;g;b (truecolour);
//! - `\n` ends a line; a bare `\r` returns to column 0 and later text
//!   overwrites cell by cell (so `\r\n` is a plain newline and progress bars
//!   collapse to their last state); backspace moves left; a tab moves to
//!   the next multiple of 8;
//! - `ESC[K` / `ESC[0K` erase to the end of the line, `ESC[1K` from its
//!   start to the cursor, `ESC[2K` all of it;
//! - every other CSI, OSC, DCS/SOS/PM/APC string and two-byte escape is
//!   dropped; other C0 controls are dropped; a `\n` ends any unfinished
//!   sequence (so a broken OSC cannot swallow the rest of the log, and each
//!   line starts in the ground state: only the style carries over, which is
//!   what lets the script render any line from a style checkpoint); ESC
//!   followed by a non-ASCII byte is dropped and the byte is text;
//! - Travis markers: a line whose whole text, when `\r` or `\n` arrives, is
//!   `travis_fold:start:NAME` / `travis_fold:end:NAME` marks the line as a
//!   fold start / end; `travis_time:start:ID` and
//!   `travis_time:end:ID:start=S,finish=F,duration=D` are hidden, the latter
//!   recording `D` (nanoseconds) on the line. The marker's text is removed
//!   (Travis follows each with `\r ESC[0K`, so a terminal never shows it
//!   either) and what follows on the same line is the line's text. Every
//!   line is one `\n` of the raw log, so a line carries one fold marker: the
//!   last one on it. Folds do not nest (Travis never nests them): a fold
//!   start ends any open fold just before it, a fold end ends the open fold
//!   of that name and is otherwise ignored.
//! - invalid UTF-8 becomes U+FFFD; escapes and UTF-8 sequences may be split
//!   across `feed` calls.

mod line;
mod markers;
mod style;

pub use style::{Color, Style};

use line::LineBuf;

/// A run of text in one style.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    pub text: String,
    pub style: Style,
}

/// What a line is, for the log viewer's folds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineKind {
    Text,
    FoldStart(String),
    FoldEnd(String),
}

/// One finished line of output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// 1-based, counting every `\n` of the raw log (so permalinks agree
    /// between this renderer and the script).
    pub number: usize,
    pub kind: LineKind,
    pub spans: Vec<Span>,
    /// The duration of a `travis_time:end` marker on this line, in
    /// nanoseconds; the viewer shows the last one inside a fold on its header.
    pub duration_ns: Option<u64>,
}

impl Line {
    /// The line's text without styles.
    pub fn text(&self) -> String {
        self.spans.iter().map(|s| s.text.as_str()).collect()
    }
}

/// How a fold header shows a `travis_time` duration: `0.42s`, `12.35s`,
/// `3m 07s`, `1h 02m` (the script formats it the same way).
pub fn format_duration_ns(ns: u64) -> String {
    let ms = ns / 1_000_000;
    if ms < 60_000 {
        format!("{}.{:02}s", ms / 1000, ms % 1000 / 10)
    } else if ms < 3_600_000 {
        format!("{}m {:02}s", ms / 60_000, ms % 60_000 / 1000)
    } else {
        format!("{}h {:02}m", ms / 3_600_000, ms % 3_600_000 / 60_000)
    }
}

/// Where the escape-sequence parser is; kept across `feed` calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Ground,
    /// After ESC.
    Esc,
    /// After ESC and intermediates (0x20–0x2F), waiting for the final byte.
    EscIntermediate,
    Csi,
    /// OSC, DCS, SOS, PM, APC: a string up to BEL or ESC \.
    Str,
    /// ESC inside a string (the start of ST, or of something new).
    StrEsc,
}

/// Longest CSI parameter string kept; a longer one is still consumed.
const MAX_CSI: usize = 64;

/// The renderer. Feed it the log's bytes in any pieces; it returns each
/// line as its `\n` arrives.
pub struct Terminal {
    state: State,
    style: Style,
    line: LineBuf,
    number: usize,
    csi: Vec<u8>,
    /// An incomplete UTF-8 sequence at the end of the last `feed`.
    pending: Vec<u8>,
}

impl Default for Terminal {
    fn default() -> Self {
        Self::new()
    }
}

impl Terminal {
    pub fn new() -> Self {
        Terminal {
            state: State::Ground,
            style: Style::default(),
            line: LineBuf::default(),
            number: 1,
            csi: Vec::new(),
            pending: Vec::new(),
        }
    }

    /// Feeds more bytes; returns the lines they completed.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Line> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if self.state == State::Ground {
                // A run of printable bytes (UTF-8 continuation bytes are
                // >= 0x80, so a run never splits a valid character).
                let start = i;
                while i < bytes.len() && bytes[i] >= 0x20 && bytes[i] != 0x7f {
                    i += 1;
                }
                if i > start || !self.pending.is_empty() {
                    self.text(&bytes[start..i], i == bytes.len());
                }
                if i == bytes.len() {
                    break;
                }
            }
            let b = bytes[i];
            if b >= 0x80 && matches!(self.state, State::Esc | State::EscIntermediate) {
                self.state = State::Ground;
                continue;
            }
            i += 1;
            if b == b'\n' {
                self.state = State::Ground;
            }
            self.byte(b, &mut out);
        }
        out
    }

    /// Ends the log: returns the unterminated last line, if it has anything.
    pub fn finish(mut self) -> Option<Line> {
        if !self.pending.is_empty() {
            self.pending.clear();
            self.line.write("\u{FFFD}", &self.style);
        }
        self.line.take_marker();
        let line = self.line;
        (line.chars > 0 || line.kind.is_some() || line.duration_ns.is_some())
            .then(|| line.finish(self.number))
    }

    /// Decodes printable bytes (plus any UTF-8 left over from the last
    /// feed) and writes them at the cursor.
    fn text(&mut self, run: &[u8], at_end: bool) {
        let joined;
        let mut bytes = run;
        if !self.pending.is_empty() {
            if run.is_empty() && !at_end {
                // A control byte cut the sequence short.
                self.pending.clear();
                self.line.write("\u{FFFD}", &self.style);
                return;
            }
            let mut v = std::mem::take(&mut self.pending);
            v.extend_from_slice(run);
            joined = v;
            bytes = &joined;
        }
        loop {
            match std::str::from_utf8(bytes) {
                Ok(s) => {
                    self.line.write(s, &self.style);
                    return;
                }
                Err(e) => {
                    let (valid, rest) = bytes.split_at(e.valid_up_to());
                    if let Ok(s) = std::str::from_utf8(valid) {
                        self.line.write(s, &self.style);
                    }
                    match e.error_len() {
                        Some(n) => {
                            self.line.write("\u{FFFD}", &self.style);
                            bytes = &rest[n..];
                        }
                        None if at_end => {
                            self.pending = rest.to_vec();
                            return;
                        }
                        None => {
                            self.line.write("\u{FFFD}", &self.style);
                            return;
                        }
                    }
                }
            }
        }
    }

    fn end_line(&mut self, out: &mut Vec<Line>) {
        let line = std::mem::take(&mut self.line);
        out.push(line.finish(self.number));
        self.number += 1;
    }

    fn byte(&mut self, b: u8, out: &mut Vec<Line>) {
        match self.state {
            State::Ground => match b {
                b'\n' => {
                    self.line.take_marker();
                    self.end_line(out);
                }
                b'\r' => {
                    self.line.take_marker();
                    self.line.cursor = 0;
                }
                0x08 => self.line.cursor = self.line.cursor.saturating_sub(1),
                b'\t' => {
                    let next = (self.line.cursor / 8 + 1) * 8;
                    if next <= self.line.chars {
                        self.line.cursor = next;
                    } else {
                        self.line.cursor = next;
                        self.line.pad_to_cursor();
                    }
                }
                0x1b => self.state = State::Esc,
                _ => {}
            },
            State::Esc => match b {
                b'[' => {
                    self.csi.clear();
                    self.state = State::Csi;
                }
                b']' | b'P' | b'X' | b'^' | b'_' => self.state = State::Str,
                0x20..=0x2f => self.state = State::EscIntermediate,
                0x1b => {}
                _ => self.state = State::Ground,
            },
            State::EscIntermediate => match b {
                0x20..=0x2f => {}
                0x1b => self.state = State::Esc,
                _ => self.state = State::Ground,
            },
            State::Csi => match b {
                0x40..=0x7e => {
                    self.state = State::Ground;
                    self.csi_final(b);
                }
                0x1b => self.state = State::Esc,
                // A control character inside CSI is executed (as in a
                // terminal) without ending the sequence.
                0x00..=0x1f => {
                    self.state = State::Ground;
                    self.byte(b, out);
                    self.state = State::Csi;
                }
                _ => {
                    if self.csi.len() < MAX_CSI {
                        self.csi.push(b);
                    } else {
                        // Too long to be anything we interpret.
                        self.csi.clear();
                        self.csi.push(b'?');
                    }
                }
            },
            State::Str => match b {
                0x07 => self.state = State::Ground,
                0x1b => self.state = State::StrEsc,
                _ => {}
            },
            State::StrEsc => match b {
                b'\\' => self.state = State::Ground,
                0x1b => {}
                _ => self.state = State::Str,
            },
        }
    }

    fn csi_final(&mut self, fin: u8) {
        // Private (`ESC[?25l`) or intermediate-carrying sequences are
        // never SGR or EL.
        if self
            .csi
            .iter()
            .any(|&c| !(c.is_ascii_digit() || c == b';' || c == b':'))
        {
            return;
        }
        let params: Vec<u32> = if self.csi.is_empty() {
            Vec::new()
        } else {
            self.csi
                .split(|&c| c == b';' || c == b':')
                .map(|p| {
                    p.iter().fold(0u32, |n, &d| {
                        n.saturating_mul(10).saturating_add(u32::from(d - b'0'))
                    })
                })
                .collect()
        };
        match fin {
            b'm' => self.style.apply_sgr(&params),
            b'K' => {
                let line = &mut self.line;
                match params.first().copied().unwrap_or(0) {
                    0 => line.truncate(line.cursor),
                    1 => {
                        let mut cells = line.cells();
                        for cell in cells.iter_mut().take(line.cursor + 1) {
                            *cell = (' ', Style::default());
                        }
                        line.set_cells(cells);
                        line.pad_to_cursor();
                    }
                    2 => {
                        line.truncate(0);
                        line.pad_to_cursor();
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests;
