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

use std::fmt::Write as _;

/// A colour: one of the 256 indexed colours, or a truecolour value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Color {
    /// 0–15 are the themed ANSI colours (CSS classes), 16–255 the xterm
    /// cube and grey ramp (inline CSS).
    Indexed(u8),
    Rgb(u8, u8, u8),
}

impl Color {
    /// `#rrggbb` for this colour (the 16 themed ones get xterm's defaults;
    /// they are normally shown through classes instead).
    pub fn hex(self) -> String {
        let (r, g, b) = match self {
            Color::Rgb(r, g, b) => (r, g, b),
            Color::Indexed(n) => xterm_rgb(n),
        };
        format!("#{r:02x}{g:02x}{b:02x}")
    }
}

/// xterm's palette: 16 base colours, a 6×6×6 cube, a 24-step grey ramp.
fn xterm_rgb(n: u8) -> (u8, u8, u8) {
    const BASE: [(u8, u8, u8); 16] = [
        (0, 0, 0),
        (205, 0, 0),
        (0, 205, 0),
        (205, 205, 0),
        (0, 0, 238),
        (205, 0, 205),
        (0, 205, 205),
        (229, 229, 229),
        (127, 127, 127),
        (255, 0, 0),
        (0, 255, 0),
        (255, 255, 0),
        (92, 92, 255),
        (255, 0, 255),
        (0, 255, 255),
        (255, 255, 255),
    ];
    const LEVELS: [u8; 6] = [0, 95, 135, 175, 215, 255];
    match n {
        0..=15 => BASE[n as usize],
        16..=231 => {
            let i = n - 16;
            (
                LEVELS[(i / 36) as usize],
                LEVELS[(i / 6 % 6) as usize],
                LEVELS[(i % 6) as usize],
            )
        }
        _ => {
            let v = 8 + 10 * (n - 232);
            (v, v, v)
        }
    }
}

/// The graphic rendition of a cell.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Style {
    pub fg: Option<Color>,
    pub bg: Option<Color>,
    pub bold: bool,
    pub dim: bool,
    pub italic: bool,
    pub underline: bool,
    pub inverse: bool,
}

impl Style {
    /// Foreground and background as shown: inverse swaps them.
    fn effective(&self) -> (Option<Color>, Option<Color>) {
        if self.inverse {
            (self.bg, self.fg)
        } else {
            (self.fg, self.bg)
        }
    }

    /// CSS classes (defined in `kha.css`): `fg-N`/`bg-N` for the 16 themed
    /// colours, `bold dim italic underline`, and `inverse` when inverse
    /// leaves a default colour to swap (the stylesheet gives it the log's
    /// background as text colour and vice versa; explicit colours win).
    pub fn classes(&self) -> String {
        let (fg, bg) = self.effective();
        let mut out = String::new();
        let mut add = |s: &str| {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(s);
        };
        if let Some(Color::Indexed(n @ 0..=15)) = fg {
            add(&format!("fg-{n}"));
        }
        if let Some(Color::Indexed(n @ 0..=15)) = bg {
            add(&format!("bg-{n}"));
        }
        for (on, name) in [
            (self.bold, "bold"),
            (self.dim, "dim"),
            (self.italic, "italic"),
            (self.underline, "underline"),
            (self.inverse && (fg.is_none() || bg.is_none()), "inverse"),
        ] {
            if on {
                add(name);
            }
        }
        out
    }

    /// Inline CSS for the colours classes cannot express (16–255, rgb).
    pub fn inline_css(&self) -> Option<String> {
        let (fg, bg) = self.effective();
        let themed = |c: Option<Color>| matches!(c, None | Some(Color::Indexed(0..=15)));
        let mut out = String::new();
        if let Some(c) = fg.filter(|_| !themed(fg)) {
            let _ = write!(out, "color:{}", c.hex());
        }
        if let Some(c) = bg.filter(|_| !themed(bg)) {
            if !out.is_empty() {
                out.push(';');
            }
            let _ = write!(out, "background-color:{}", c.hex());
        }
        (!out.is_empty()).then_some(out)
    }

    /// Applies one SGR sequence's parameters (already split; empty = 0).
    fn apply_sgr(&mut self, params: &[u32]) {
        if params.is_empty() {
            *self = Style::default();
            return;
        }
        let mut i = 0;
        while i < params.len() {
            let p = params[i];
            i += 1;
            match p {
                0 => *self = Style::default(),
                1 => self.bold = true,
                2 => self.dim = true,
                3 => self.italic = true,
                4 => self.underline = true,
                7 => self.inverse = true,
                22 => {
                    self.bold = false;
                    self.dim = false;
                }
                23 => self.italic = false,
                24 => self.underline = false,
                27 => self.inverse = false,
                30..=37 => self.fg = Some(Color::Indexed((p - 30) as u8)),
                39 => self.fg = None,
                40..=47 => self.bg = Some(Color::Indexed((p - 40) as u8)),
                49 => self.bg = None,
                90..=97 => self.fg = Some(Color::Indexed((p - 90 + 8) as u8)),
                100..=107 => self.bg = Some(Color::Indexed((p - 100 + 8) as u8)),
                38 | 48 => {
                    let color = match params.get(i) {
                        Some(5) => {
                            let c = params.get(i + 1).map(|&n| Color::Indexed(n.min(255) as u8));
                            i += 2;
                            c
                        }
                        Some(2) => {
                            let c = match (params.get(i + 1), params.get(i + 2), params.get(i + 3))
                            {
                                (Some(&r), Some(&g), Some(&b)) => Some(Color::Rgb(
                                    r.min(255) as u8,
                                    g.min(255) as u8,
                                    b.min(255) as u8,
                                )),
                                _ => None,
                            };
                            i += 4;
                            c
                        }
                        // Unknown colour space: the rest of the sequence
                        // cannot be interpreted safely.
                        _ => return,
                    };
                    if let Some(c) = color {
                        if p == 38 {
                            self.fg = Some(c);
                        } else {
                            self.bg = Some(c);
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

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

/// The line being written: text plus style runs, and a cursor in chars.
/// Appending at the end (nearly all log output) is a `push_str`; only
/// overwriting after a `\r` or backspace goes through cells.
#[derive(Default)]
struct LineBuf {
    text: String,
    /// (byte offset in `text`, style from there on); starts ascending.
    runs: Vec<(usize, Style)>,
    chars: usize,
    cursor: usize,
    kind: Option<LineKind>,
    duration_ns: Option<u64>,
}

impl LineBuf {
    fn push_run(&mut self, s: &str, style: &Style) {
        if s.is_empty() {
            return;
        }
        match self.runs.last_mut() {
            Some((_, last)) if last == style => {}
            Some((start, last)) if *start == self.text.len() => *last = style.clone(),
            _ => self.runs.push((self.text.len(), style.clone())),
        }
        self.text.push_str(s);
    }

    fn write(&mut self, s: &str, style: &Style) {
        if self.cursor == self.chars {
            self.push_run(s, style);
            let n = if s.is_ascii() {
                s.len()
            } else {
                s.chars().count()
            };
            self.chars += n;
            self.cursor += n;
            return;
        }
        let mut cells = self.cells();
        for c in s.chars() {
            if self.cursor < cells.len() {
                cells[self.cursor] = (c, style.clone());
            } else {
                cells.push((c, style.clone()));
            }
            self.cursor += 1;
        }
        self.set_cells(cells);
    }

    fn cells(&self) -> Vec<(char, Style)> {
        let mut cells = Vec::with_capacity(self.chars);
        for (i, (start, style)) in self.runs.iter().enumerate() {
            let end = self.runs.get(i + 1).map_or(self.text.len(), |r| r.0);
            for c in self.text[*start..end].chars() {
                cells.push((c, style.clone()));
            }
        }
        cells
    }

    fn set_cells(&mut self, cells: Vec<(char, Style)>) {
        self.text.clear();
        self.runs.clear();
        self.chars = cells.len();
        let mut buf = [0u8; 4];
        for (c, style) in cells {
            self.push_run(c.encode_utf8(&mut buf), &style);
        }
    }

    fn byte_at(&self, char_index: usize) -> usize {
        self.text
            .char_indices()
            .nth(char_index)
            .map_or(self.text.len(), |(i, _)| i)
    }

    fn truncate(&mut self, chars: usize) {
        if chars >= self.chars {
            return;
        }
        let at = self.byte_at(chars);
        self.text.truncate(at);
        self.runs.retain(|(start, _)| *start < at);
        self.chars = chars;
    }

    /// Pads with blanks up to the cursor (after a tab or `ESC[2K`).
    fn pad_to_cursor(&mut self) {
        if self.cursor > self.chars {
            let blanks = " ".repeat(self.cursor - self.chars);
            self.push_run(&blanks, &Style::default());
            self.chars = self.cursor;
        }
    }

    /// If the whole text is a Travis marker, records it and clears the text.
    fn take_marker(&mut self) {
        let Some(marker) = parse_marker(&self.text) else {
            return;
        };
        match marker {
            Marker::Fold(kind) => self.kind = Some(kind),
            Marker::TimeStart => {}
            Marker::TimeEnd(ns) => self.duration_ns = ns.or(self.duration_ns),
        }
        self.text.clear();
        self.runs.clear();
        self.chars = 0;
        self.cursor = 0;
    }

    fn finish(self, number: usize) -> Line {
        let spans = self
            .runs
            .iter()
            .enumerate()
            .map(|(i, (start, style))| {
                let end = self.runs.get(i + 1).map_or(self.text.len(), |r| r.0);
                Span {
                    text: self.text[*start..end].to_string(),
                    style: style.clone(),
                }
            })
            .collect();
        Line {
            number,
            kind: self.kind.unwrap_or(LineKind::Text),
            spans,
            duration_ns: self.duration_ns,
        }
    }
}

enum Marker {
    Fold(LineKind),
    TimeStart,
    TimeEnd(Option<u64>),
}

/// A name in a marker: non-empty, no whitespace, no control characters.
fn marker_name(s: &str) -> Option<&str> {
    (!s.is_empty() && !s.chars().any(|c| c.is_whitespace() || c.is_control())).then_some(s)
}

fn parse_marker(text: &str) -> Option<Marker> {
    if let Some(rest) = text.strip_prefix("travis_fold:") {
        if let Some(name) = rest.strip_prefix("start:").and_then(marker_name) {
            return Some(Marker::Fold(LineKind::FoldStart(name.to_string())));
        }
        if let Some(name) = rest.strip_prefix("end:").and_then(marker_name) {
            return Some(Marker::Fold(LineKind::FoldEnd(name.to_string())));
        }
        return None;
    }
    let rest = text.strip_prefix("travis_time:")?;
    if rest.strip_prefix("start:").and_then(marker_name).is_some() {
        return Some(Marker::TimeStart);
    }
    let rest = marker_name(rest.strip_prefix("end:")?)?;
    // `ID:start=S,finish=F,duration=D`; a malformed tail is still a marker
    // (hidden), just without a duration.
    let duration = rest
        .split_once(':')
        .map(|(_, fields)| fields)
        .into_iter()
        .flat_map(|f| f.split(','))
        .find_map(|kv| kv.strip_prefix("duration="))
        .and_then(|d| d.parse().ok());
    Some(Marker::TimeEnd(duration))
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
mod tests {
    use super::*;

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
    fn large_log_is_fast() {
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
        let started = std::time::Instant::now();
        let mut t = Terminal::new();
        let mut count = 0;
        let mut last = None;
        for chunk in log.chunks(65536) {
            let lines = t.feed(chunk);
            count += lines.len();
            last = lines.into_iter().last().or(last);
        }
        assert!(t.finish().is_none());
        let elapsed = started.elapsed();
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
        // Generous: debug builds on a shared machine. Release is ~10x faster.
        assert!(elapsed.as_secs_f64() < 5.0, "{elapsed:?}");
        eprintln!("200,000 lines, {} bytes: {elapsed:?}", log.len());
    }
}
