//! What an attempt's output becomes in the store. Output is kept exactly, byte for
//! byte, up to `output-limit` per attempt; past it the first and last halves stay
//! with one line `[... N bytes omitted ...]` between, so both how a command started
//! and how it ended survive a runaway log. Pure functions: the worker feeds them what
//! it read from its spool, `logs` uses the same omission line for gaps it sees while
//! following.

/// An attempt's combined stdout and stderr as kept: at most about `output-limit`
/// bytes (plus the omission line) and how many bytes were printed in all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeptOutput {
    pub bytes: Vec<u8>,
    /// Everything the attempt printed, kept or not.
    pub total: u64,
}

/// The line that stands for `omitted` bytes that were not kept.
pub fn omission_line(omitted: u64) -> String {
    format!("[... {omitted} bytes omitted ...]\n")
}

/// How many bytes of the head (and of the tail) are kept under `limit`.
pub fn half(limit: u64) -> u64 {
    limit / 2
}

/// Builds the kept output of an attempt that printed `total` bytes, given its first
/// bytes `head` and its last bytes `tail` (each at most [`half`] of `limit`; when
/// `total <= limit`, `head` is the whole output and `tail` is empty).
pub fn keep(head: &[u8], tail: &[u8], total: u64, limit: u64) -> KeptOutput {
    if total <= limit {
        let mut bytes = head.to_vec();
        bytes.extend_from_slice(tail);
        return KeptOutput { bytes, total };
    }
    let omitted = total.saturating_sub((head.len() + tail.len()) as u64);
    let line = omission_line(omitted);
    let mut bytes = Vec::with_capacity(head.len() + line.len() + tail.len() + 1);
    bytes.extend_from_slice(head);
    if !head.ends_with(b"\n") {
        bytes.push(b'\n');
    }
    bytes.extend_from_slice(line.as_bytes());
    bytes.extend_from_slice(tail);
    KeptOutput { bytes, total }
}

/// The last `max` bytes of `bytes` as text (invalid UTF-8 and NUL replaced by
/// U+FFFD), starting at a character boundary: the short tail `show` and `export`
/// carry. NUL goes because PostgreSQL's `text` cannot hold it: a tail with one was
/// refused at every retry of the round trip, and the job's result never landed.
/// The exact bytes stay in the kept output (`logs`).
pub fn tail_text(bytes: &[u8], max: usize) -> Option<String> {
    if bytes.is_empty() {
        return None;
    }
    let mut start = bytes.len().saturating_sub(max);
    // Skip UTF-8 continuation bytes so the tail does not start mid-character.
    while start < bytes.len() && bytes[start] & 0b1100_0000 == 0b1000_0000 {
        start += 1;
    }
    let text = String::from_utf8_lossy(&bytes[start..]);
    Some(if text.contains('\0') {
        text.replace('\0', "\u{FFFD}")
    } else {
        text.into_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tail_holds_no_nul() {
        assert_eq!(
            tail_text(b"a\0b\xff", 100).as_deref(),
            Some("a\u{FFFD}b\u{FFFD}")
        );
    }

    #[test]
    fn short_output_is_kept_whole() {
        let kept = keep(b"hello\n", b"", 6, 1024);
        assert_eq!((kept.bytes.as_slice(), kept.total), (&b"hello\n"[..], 6));
    }

    #[test]
    fn long_output_keeps_head_marker_and_tail() {
        let kept = keep(b"first", b"last\n", 10_000, 10);
        assert_eq!(
            String::from_utf8_lossy(&kept.bytes),
            "first\n[... 9990 bytes omitted ...]\nlast\n"
        );
        assert_eq!(kept.total, 10_000);
    }

    #[test]
    fn tails_start_on_a_character() {
        assert_eq!(tail_text("aé".as_bytes(), 1).as_deref(), Some(""));
        assert_eq!(tail_text("aé".as_bytes(), 2).as_deref(), Some("é"));
        assert_eq!(tail_text(b"", 10), None);
    }
}
