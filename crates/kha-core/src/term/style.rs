//! Styles: the 256 indexed colours and truecolour, the SGR attributes a
//! log uses, and how a style becomes CSS classes or an inline colour.

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
    pub(super) fn apply_sgr(&mut self, params: &[u32]) {
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
