//! An attempt's output on its way from the spool to the store: what is kept when the
//! attempt ends, what is shipped while it runs, and how its working file is capped.
//!
//! The shell writes to the slot's working file (`O_APPEND`), so a byte's offset in the
//! file is its offset in everything the attempt printed, and the file's size is the
//! total printed so far. Invariants:
//! - Past `output-limit` only the first and last [`half`] of the limit matter. The
//!   middle is punched out of the file ([`punch_range`], `FALLOC_FL_KEEP_SIZE`, so
//!   offsets and the size stay true) and is never read or shipped
//!   ([`next_piece`]): a job printing 50 MiB costs about `output-limit` of disk.
//! - Punched ranges never reach into the head or the last half of the file as it is
//!   when punched; since the file only grows while the attempt runs, the bytes read
//!   at the end ([`read_kept`]) and the bytes shipped were never punched.
//! - Everything here takes offsets and sizes as arguments, so the arithmetic is
//!   tested without files; [`read_kept`] and [`punch`] are the only I/O.

use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::time::Duration;

use crate::job::output::{KeptOutput, half, keep};

/// A running attempt ships at most this often.
pub const SHIP_EVERY: Duration = Duration::from_secs(1);

/// An attempt's first output is shipped this long after it started, so `logs -f`
/// shows the first lines of a long job within about half a second; attempts that
/// end sooner ship nothing while they run.
pub const FIRST_SHIP: Duration = Duration::from_millis(500);

/// The most one attempt ships in one round trip, so a round trip stays short even
/// behind a job that prints fast; what is left goes with the next one.
pub const MAX_CHUNK: u64 = 256 * 1024;

/// Holes are punched in whole pages: a partial page would only be zeroed, not freed.
const PAGE: u64 = 4096;

/// How far a running attempt's output has been shipped and punched.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// The attempt's `output-limit` (as when it started).
    pub limit: u64,
    /// Every byte before this offset that is kept has been shipped.
    pub shipped: u64,
    /// The file holds no data between [`half`] of the limit and this offset.
    pub punched: u64,
}

/// The kept output of an attempt whose working file is `file`: all of it up to
/// `limit` bytes, else its first and last halves around the omission line.
pub fn read_kept(file: &File, limit: u64) -> io::Result<KeptOutput> {
    let total = file.metadata()?.len();
    if total <= limit {
        let whole = read_at(file, 0, total)?;
        return Ok(keep(&whole, &[], total, limit));
    }
    let half = half(limit);
    let head = read_at(file, 0, half)?;
    let tail = read_at(file, total - half, half)?;
    Ok(keep(&head, &tail, total, limit))
}

/// Up to `len` bytes of `file` from `offset` (fewer at its end).
pub fn read_at(file: &File, offset: u64, len: u64) -> io::Result<Vec<u8>> {
    let mut bytes = vec![0u8; usize::try_from(len).unwrap_or(usize::MAX)];
    let mut filled = 0;
    while filled < bytes.len() {
        match file.read_at(&mut bytes[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    bytes.truncate(filled);
    Ok(bytes)
}

/// The bytes to ship next of an attempt that printed `size` bytes so far, of which
/// those before `shipped` went out already: never the omitted middle (past the
/// limit, the head up to [`half`], then only the last half), at most `max` bytes.
pub fn next_piece(shipped: u64, size: u64, limit: u64, max: u64) -> Option<Range<u64>> {
    let half = half(limit);
    let past_limit = size > limit;
    let start = if past_limit && shipped >= half {
        shipped.max(size - half)
    } else {
        shipped
    };
    let end = if past_limit && start < half {
        half
    } else {
        size
    };
    let end = end.min(start.saturating_add(max));
    (start < end).then_some(start..end)
}

/// What the store may drop of an attempt's shipped chunks once `shipped` bytes have
/// gone out: `(keep_head, drop_before)` for [`crate::store::OutputChunk`]. Past the
/// limit, chunks after the head that end a half or more before the newest byte;
/// else nothing (`(0, 0)`).
pub fn trim_marks(shipped: u64, limit: u64) -> (u64, u64) {
    let half = half(limit);
    if shipped > limit {
        (half, shipped - half)
    } else {
        (0, 0)
    }
}

/// The range to punch out of a working file of `size` bytes whose middle is already
/// punched up to `punched`: whole pages after the head and before the last half.
pub fn punch_range(punched: u64, size: u64, limit: u64) -> Option<Range<u64>> {
    if size <= limit {
        return None;
    }
    let half = half(limit);
    let start = half.max(punched).next_multiple_of(PAGE);
    let end = (size - half) / PAGE * PAGE;
    (start < end).then_some(start..end)
}

/// Frees `range` of `file` on disk, keeping its size (reads there return zeros).
pub fn punch(file: &File, range: &Range<u64>) -> io::Result<()> {
    let (Ok(offset), Ok(len)) = (
        libc::off_t::try_from(range.start),
        libc::off_t::try_from(range.end - range.start),
    ) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "range too large",
        ));
    };
    // SAFETY: fallocate only acts on the open descriptor; no memory is passed.
    let rc = unsafe {
        libc::fallocate(
            file.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            offset,
            len,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const LIMIT: u64 = 1 << 20;
    const HALF: u64 = LIMIT / 2;

    #[test]
    fn below_the_limit_everything_new_is_shipped_in_bounded_pieces() {
        assert_eq!(next_piece(0, 100, LIMIT, MAX_CHUNK), Some(0..100));
        assert_eq!(next_piece(100, 100, LIMIT, MAX_CHUNK), None, "nothing new");
        assert_eq!(
            next_piece(10, 900_000, LIMIT, MAX_CHUNK),
            Some(10..10 + MAX_CHUNK)
        );
        assert_eq!(trim_marks(900_000, LIMIT), (0, 0));
    }

    #[test]
    fn past_the_limit_the_head_is_finished_then_only_the_last_half_is_shipped() {
        let size = 50 * LIMIT;
        assert_eq!(
            next_piece(HALF - 10, size, LIMIT, MAX_CHUNK),
            Some(HALF - 10..HALF),
            "the head is completed, never running into the middle"
        );
        assert_eq!(
            next_piece(HALF, size, LIMIT, MAX_CHUNK),
            Some(size - HALF..size - HALF + MAX_CHUNK),
            "the omitted middle is skipped"
        );
        let near_end = size - 100;
        assert_eq!(
            next_piece(near_end, size, LIMIT, MAX_CHUNK),
            Some(near_end..size)
        );
        assert_eq!(trim_marks(size, LIMIT), (HALF, size - HALF));
    }

    #[test]
    fn the_punched_middle_spares_the_head_and_the_last_half_in_whole_pages() {
        assert_eq!(punch_range(0, LIMIT, LIMIT), None, "not past the limit");
        let size = 3 * LIMIT + 123;
        let range = punch_range(0, size, LIMIT).expect("past the limit");
        assert_eq!(range.start, HALF);
        assert!(range.end <= size - HALF && size - HALF - range.end < PAGE);
        assert!(range.end.is_multiple_of(PAGE));
        assert_eq!(
            punch_range(range.end, size, LIMIT),
            None,
            "nothing new to punch"
        );
        let odd_limit = 10_001;
        let odd = punch_range(0, 100_000, odd_limit).expect("past the limit");
        assert!(odd.start >= odd_limit / 2 && odd.start.is_multiple_of(PAGE));
    }

    #[test]
    fn a_punched_file_keeps_its_size_and_its_head_and_tail() {
        let mut file = tempfile::tempfile().expect("temp file");
        let limit = 64 * 1024;
        let mut printed = Vec::new();
        for n in 0..20_000 {
            printed.extend_from_slice(format!("line {n}\n").as_bytes());
        }
        file.write_all(&printed).expect("write");
        let size = printed.len() as u64;
        let range = punch_range(0, size, limit).expect("past the limit");
        punch(&file, &range).expect("punch a hole");
        let kept = read_kept(&file, limit).expect("read");
        assert_eq!(kept.total, size);
        let half = half(limit) as usize;
        let text = String::from_utf8_lossy(&kept.bytes);
        assert!(text.starts_with("line 0\n"));
        assert!(text.ends_with("line 19999\n"));
        assert!(text.contains(&format!(
            "[... {} bytes omitted ...]",
            printed.len() - 2 * half
        )));
        assert!(!kept.bytes.contains(&0), "no punched zeros were kept");
    }
}
