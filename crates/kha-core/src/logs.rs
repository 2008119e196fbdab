//! Log chunks are addressed by byte offset. The control node appends only
//! at its committed length: a chunk it already has is skipped, a chunk that
//! overlaps has its new tail appended, and a chunk past the end is answered
//! with the committed offset so the builder rewinds.

/// What to do with a chunk `[offset, offset + len)` given `committed` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkAction {
    /// Append `data[skip..]`.
    Append { skip: usize },
    /// Everything in the chunk is stored already.
    Duplicate,
    /// The chunk starts past the committed end: a gap. Tell the builder.
    Gap,
}

pub fn classify_chunk(committed: u64, offset: u64, len: usize) -> ChunkAction {
    let end = offset + len as u64;
    if offset > committed {
        ChunkAction::Gap
    } else if end <= committed {
        ChunkAction::Duplicate
    } else {
        ChunkAction::Append {
            skip: (committed - offset) as usize,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ChunkAction::*;
    use super::*;

    #[test]
    fn offsets() {
        let table = [
            // committed, offset, len, action
            (0, 0, 10, Append { skip: 0 }),
            (10, 10, 5, Append { skip: 0 }),
            (10, 0, 10, Duplicate),
            (10, 5, 5, Duplicate),
            (10, 5, 10, Append { skip: 5 }),
            (10, 11, 5, Gap),
            (10, 10, 0, Duplicate),
            (0, 0, 0, Duplicate),
        ];
        for (committed, offset, len, want) in table {
            assert_eq!(
                classify_chunk(committed, offset, len),
                want,
                "{committed} {offset} {len}"
            );
        }
    }
}
