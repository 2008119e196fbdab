//! Masking secret values in a job's output, as a pure streaming function:
//! bytes go in as they come (in chunks of any size), and what comes out has
//! every occurrence of every secret value replaced by `[secure]`, even when
//! a value is split across two chunks.
//!
//! Travis filters "secure environment variables and tokens that are longer
//! than three characters" (docs: Best Practices in Securing Your Data), so
//! values of one to three bytes are not masked (they would turn every
//! `a` or `on` of a log into `[secure]` and hide nothing).
//!
//! Overlapping occurrences (of one value or of several) are masked as one
//! run, so no byte of any occurrence is shown. At most `longest value - 1`
//! bytes are held back between chunks: a tail that could still become a
//! value.

/// What a masked run is shown as.
pub const MASK: &[u8] = b"[secure]";

/// Values shorter than this are not masked (Travis: "longer than three
/// characters").
pub const MIN_MASKED_LEN: usize = 4;

/// The streaming masker of one job's output.
#[derive(Debug, Default)]
pub struct Masker {
    values: Vec<Vec<u8>>,
    /// Bytes not yet emitted: a tail that may still be the start of a value.
    held: Vec<u8>,
    /// The first `carry` bytes of `held` are inside an occurrence already
    /// found (one that ran into the held tail): they are masked whatever
    /// follows.
    /// Their mask was shown already, so they join it rather than showing
    /// a second `[secure]`.
    carry: usize,
}

impl Masker {
    /// A masker for these values; empty and short ones are ignored.
    pub fn new<I, V>(values: I) -> Masker
    where
        I: IntoIterator<Item = V>,
        V: AsRef<[u8]>,
    {
        let mut values: Vec<Vec<u8>> = values
            .into_iter()
            .map(|v| v.as_ref().to_vec())
            .filter(|v| v.len() >= MIN_MASKED_LEN)
            .collect();
        values.sort();
        values.dedup();
        Masker {
            values,
            ..Masker::default()
        }
    }

    /// Nothing to mask: output passes through unchanged.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Takes the next chunk; returns what may be shown now.
    pub fn push(&mut self, input: &[u8]) -> Vec<u8> {
        if self.values.is_empty() {
            return input.to_vec();
        }
        self.held.extend_from_slice(input);
        // Where a value could start and run past the end: nothing from there
        // on is decided yet.
        let cut = (0..self.held.len())
            .find(|&i| self.could_continue(&self.held[i..]))
            .unwrap_or(self.held.len());
        self.emit(cut)
    }

    /// The output ended: shows what was held back, masked (a tail that
    /// never became a longer value may still hold a shorter one).
    pub fn finish(&mut self) -> Vec<u8> {
        let out = self.emit(self.held.len());
        self.held.clear();
        self.carry = 0;
        out
    }

    /// Shows `held[..cut]`, masked; keeps the rest.
    fn emit(&mut self, cut: usize) -> Vec<u8> {
        if cut == 0 {
            return Vec::new();
        }
        let buf = std::mem::take(&mut self.held);
        let mut out = Vec::with_capacity(cut + MASK.len());
        let mut pos = 0;
        let mut carry = 0;
        for (start, end) in self.runs(&buf) {
            if start >= cut {
                break;
            }
            out.extend_from_slice(&buf[pos..start]);
            // The carried bytes' mask was shown with the chunk before.
            if !(start == 0 && self.carry > 0) {
                out.extend_from_slice(MASK);
            }
            if end > cut {
                carry = end - cut;
                pos = cut;
                break;
            }
            pos = end;
        }
        out.extend_from_slice(&buf[pos..cut]);
        self.held = buf[cut..].to_vec();
        self.carry = carry;
        out
    }

    /// Is `tail` the start of a value (and shorter than it)?
    fn could_continue(&self, tail: &[u8]) -> bool {
        self.values
            .iter()
            .any(|v| v.len() > tail.len() && v.starts_with(tail))
    }

    /// The masked runs of `buf`: every occurrence of every value, and the
    /// carried bytes, merged where they overlap; sorted.
    fn runs(&self, buf: &[u8]) -> Vec<(usize, usize)> {
        let mut found: Vec<(usize, usize)> = Vec::new();
        if self.carry > 0 {
            found.push((0, self.carry.min(buf.len())));
        }
        for i in 0..buf.len() {
            for v in &self.values {
                if buf[i..].starts_with(v) {
                    found.push((i, i + v.len()));
                }
            }
        }
        found.sort();
        let mut merged: Vec<(usize, usize)> = Vec::new();
        for (s, e) in found {
            match merged.last_mut() {
                Some(last) if s < last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        merged
    }
}

#[cfg(test)]
mod tests {
    use super::Masker;

    /// Feeds `chunks` one by one and returns everything shown.
    fn run(values: &[&str], chunks: &[&str]) -> String {
        let mut m = Masker::new(values.iter().map(|v| v.as_bytes()));
        let mut out = Vec::new();
        for c in chunks {
            out.extend(m.push(c.as_bytes()));
        }
        out.extend(m.finish());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn table() {
        let table: &[(&[&str], &[&str], &str)] = &[
            // (values, chunks, shown)
            (&[], &["anything"], "anything"),
            (&["hunter2"], &["pw=hunter2\n"], "pw=[secure]\n"),
            (&["hunter2"], &["hunter2 hunter2"], "[secure] [secure]"),
            // Split across chunks, at every boundary.
            (&["hunter2"], &["pw=hun", "ter2!"], "pw=[secure]!"),
            (
                &["hunter2"],
                &["pw=h", "u", "n", "t", "e", "r", "2"],
                "pw=[secure]",
            ),
            (&["hunter2"], &["pw=hunter", "2"], "pw=[secure]"),
            (&["hunter2"], &["", "hunter2", ""], "[secure]"),
            // A start that never completes is shown as it was.
            (&["hunter2"], &["pw=hunt", "ing"], "pw=hunting"),
            (&["hunter2"], &["pw=hunt"], "pw=hunt"),
            // A value that is a prefix of another: the longer one wins.
            (&["abcd", "abcdef"], &["x abcdef y"], "x [secure] y"),
            (&["abcd", "abcdef"], &["x abcd", "ef y"], "x [secure] y"),
            (&["abcd", "abcdef"], &["x abcd", "e y"], "x [secure]e y"),
            (&["abcd", "abcdef"], &["x abcd"], "x [secure]"),
            // Overlapping values: no byte of either is shown.
            (&["abcd", "cdef"], &["abcdef"], "[secure]"),
            (&["abcd", "cdef"], &["xabc", "def"], "x[secure]"),
            (&["abcd", "cdef"], &["ab", "cd", "ef"], "[secure]"),
            (&["abab"], &["ababab"], "[secure]"),
            (&["abab"], &["abab", "ab"], "[secure]"),
            (&["aaaa"], &["aaaaa", "aaaaa", "b"], "[secure]b"),
            // A value ending in a held tail that then fails to continue.
            (&["abcd", "cdef"], &["abcd", "ex"], "[secure]ex"),
            // A shorter value inside a longer one's unfinished start.
            (&["abcdefgh", "cdef"], &["abcdef"], "ab[secure]"),
            (&["abcdefgh", "cdef"], &["abcdef", "gh!"], "[secure]!"),
            // Empty and short values are not masked (Travis: longer than
            // three characters).
            (&["", "on", "abc"], &["on abc"], "on abc"),
            (&["abc", "secret"], &["abc secret"], "abc [secure]"),
            // Bytes that are not UTF-8 pass through.
            (&["tok\u{e9}n"], &["a tok\u{e9}", "n b"], "a [secure] b"),
        ];
        for (values, chunks, want) in table {
            assert_eq!(
                run(values, chunks),
                *want,
                "values {values:?} chunks {chunks:?}"
            );
        }
    }

    #[test]
    fn every_split_of_a_line() {
        let line = "curl -u bot:s3cr3t-t0ken https://x/ -- s3cr3t-t0ken.";
        let want = "curl -u bot:[secure] https://x/ -- [secure].";
        for i in 0..=line.len() {
            for j in i..=line.len() {
                let got = run(&["s3cr3t-t0ken"], &[&line[..i], &line[i..j], &line[j..]]);
                assert_eq!(got, want, "split at {i}, {j}");
            }
        }
    }

    #[test]
    fn holds_back_at_most_a_value() {
        let mut m = Masker::new(["0123456789"]);
        let shown = m.push(&[b'x'; 100_000]);
        assert_eq!(shown.len(), 100_000);
        let shown = m.push(b"012345678");
        assert!(shown.is_empty());
        assert_eq!(m.finish(), b"012345678");
        // A long run of overlapping occurrences is masked as it streams.
        let mut m = Masker::new(["aaaa"]);
        let mut total = Vec::new();
        for _ in 0..1000 {
            total.extend(m.push(&[b'a'; 100]));
            assert!(m.held.len() < 4);
        }
        total.extend(m.finish());
        assert_eq!(total, b"[secure]");
    }
}
