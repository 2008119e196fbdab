//! The line being written, cell by cell: text with style runs and a
//! cursor, so a `\r` or a backspace overwrites what is there.

use super::markers::{parse_marker, Marker};
use super::{Line, LineKind, Span, Style};

/// The line being written: text plus style runs, and a cursor in chars.
/// Appending at the end (nearly all log output) is a `push_str`; only
/// overwriting after a `\r` or backspace goes through cells.
#[derive(Default)]
pub(super) struct LineBuf {
    text: String,
    /// (byte offset in `text`, style from there on); starts ascending.
    runs: Vec<(usize, Style)>,
    pub(super) chars: usize,
    pub(super) cursor: usize,
    pub(super) kind: Option<LineKind>,
    pub(super) duration_ns: Option<u64>,
}

impl LineBuf {
    pub(super) fn push_run(&mut self, s: &str, style: &Style) {
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

    pub(super) fn write(&mut self, s: &str, style: &Style) {
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

    pub(super) fn cells(&self) -> Vec<(char, Style)> {
        let mut cells = Vec::with_capacity(self.chars);
        for (i, (start, style)) in self.runs.iter().enumerate() {
            let end = self.runs.get(i + 1).map_or(self.text.len(), |r| r.0);
            for c in self.text[*start..end].chars() {
                cells.push((c, style.clone()));
            }
        }
        cells
    }

    pub(super) fn set_cells(&mut self, cells: Vec<(char, Style)>) {
        self.text.clear();
        self.runs.clear();
        self.chars = cells.len();
        let mut buf = [0u8; 4];
        for (c, style) in cells {
            self.push_run(c.encode_utf8(&mut buf), &style);
        }
    }

    pub(super) fn byte_at(&self, char_index: usize) -> usize {
        self.text
            .char_indices()
            .nth(char_index)
            .map_or(self.text.len(), |(i, _)| i)
    }

    pub(super) fn truncate(&mut self, chars: usize) {
        if chars >= self.chars {
            return;
        }
        let at = self.byte_at(chars);
        self.text.truncate(at);
        self.runs.retain(|(start, _)| *start < at);
        self.chars = chars;
    }

    /// Pads with blanks up to the cursor (after a tab or `ESC[2K`).
    pub(super) fn pad_to_cursor(&mut self) {
        if self.cursor > self.chars {
            let blanks = " ".repeat(self.cursor - self.chars);
            self.push_run(&blanks, &Style::default());
            self.chars = self.cursor;
        }
    }

    /// If the whole text is a Travis marker, records it and clears the text.
    pub(super) fn take_marker(&mut self) {
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

    pub(super) fn finish(self, number: usize) -> Line {
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
