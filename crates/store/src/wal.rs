//! The write-ahead log: append-only JSON-lines segments of finished generations.
//!
//! Each line is one [`WalSegment::append`] call: a JSON array of the generations given to it
//! (the pipeline appends all samples of a prompt at once, so a prompt is recovered whole or not
//! at all), then a tab and the CRC-32 of the JSON as 8 hex digits. A record whose bytes changed
//! after it was written (bit rot, a stray write) is an error naming the file and line, never
//! data. Lines without a checksum (written by earlier versions) are read as they are. Appends are buffered in memory; [`WalSegment::commit`] writes them with one
//! `write` and one `fsync` (group commit). Only committed generations may count as done.
//!
//! A process killed in the middle of a commit leaves at most one incomplete line, at the end
//! of the file and without its newline: readers drop it and say so in [`TornTail`]. Any other
//! line that does not parse is corruption and an error naming the file and line.
//!
//! A failed write (a full disk) poisons the segment: the segment tries to cut the partial
//! line off, and refuses further appends, so nothing is ever written after a partial line.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Result, StoreError};
use crate::record::Generation;

/// An incomplete last line dropped by a reader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TornTail {
    pub path: PathBuf,
    /// 1-based line number of the incomplete line.
    pub line: u64,
    /// Its length in bytes.
    pub bytes: u64,
}

/// Fault injection for tests: fail writes once the file would exceed this many bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FailAfter(pub u64);

/// An open WAL segment being appended to.
#[derive(Debug)]
pub struct WalSegment {
    path: PathBuf,
    file: File,
    pending: Vec<u8>,
    pending_generations: u64,
    committed_len: u64,
    committed_generations: u64,
    poisoned: bool,
    pub(crate) fail_after: Option<FailAfter>,
}

impl WalSegment {
    /// Creates a new, empty segment (refusing to overwrite one) and makes its name durable.
    pub fn create(path: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(path)
            .map_err(StoreError::io("create WAL segment", path))?;
        if let Some(dir) = path.parent() {
            sync_dir(dir)?;
        }
        Ok(Self {
            path: path.to_owned(),
            file,
            pending: Vec::new(),
            pending_generations: 0,
            committed_len: 0,
            committed_generations: 0,
            poisoned: false,
            fail_after: None,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Generations committed to this segment.
    pub fn committed_generations(&self) -> u64 {
        self.committed_generations
    }

    /// Generations appended but not yet committed.
    pub fn pending_generations(&self) -> u64 {
        self.pending_generations
    }

    fn check_poisoned(&self) -> Result<()> {
        if self.poisoned {
            return Err(StoreError::Io {
                op: "append to WAL segment (an earlier write failed)",
                path: self.path.clone(),
                source: std::io::Error::other("segment is poisoned by an earlier write failure"),
            });
        }
        Ok(())
    }

    /// Buffers generations as one WAL line. Nothing reaches the disk before [`Self::commit`].
    pub fn append(&mut self, generations: &[Generation]) -> Result<()> {
        self.check_poisoned()?;
        if generations.is_empty() {
            return Ok(());
        }
        let start = self.pending.len();
        serde_json::to_writer(&mut self.pending, generations).map_err(|e| StoreError::Io {
            op: "serialise a generation for",
            path: self.path.clone(),
            source: e.into(),
        })?;
        let checksum = crc32(&self.pending[start..]);
        // JSON escapes control characters inside strings: a raw tab only ever separates the
        // checksum.
        writeln!(self.pending, "\t{checksum:08x}").map_err(StoreError::io("buffer", &self.path))?;
        self.pending_generations += generations.len() as u64;
        Ok(())
    }

    /// Writes everything appended since the last commit and fsyncs it.
    pub fn commit(&mut self) -> Result<()> {
        self.check_poisoned()?;
        if self.pending.is_empty() {
            return Ok(());
        }
        match self.write_pending() {
            Ok(()) => {
                self.committed_len += self.pending.len() as u64;
                self.committed_generations += self.pending_generations;
                self.pending.clear();
                self.pending_generations = 0;
                Ok(())
            }
            Err(error) => {
                self.poisoned = true;
                // Cut off whatever part of the line reached the file; if that fails too, the
                // partial line is the last one and readers drop it as a torn tail.
                let _ = self.file.set_len(self.committed_len);
                Err(error)
            }
        }
    }

    fn write_pending(&mut self) -> Result<()> {
        let io = StoreError::io("write WAL segment", &self.path);
        if let Some(FailAfter(limit)) = self.fail_after {
            let room = limit.saturating_sub(self.committed_len) as usize;
            if self.pending.len() > room {
                // Like a full disk: part of the data lands, then ENOSPC.
                let _ = self.file.write_all(&self.pending[..room]);
                return Err(io(std::io::Error::new(
                    std::io::ErrorKind::StorageFull,
                    "No space left on device (simulated)",
                )));
            }
        }
        self.file.write_all(&self.pending).map_err(io)?;
        self.file
            .sync_data()
            .map_err(StoreError::io("fsync WAL segment", &self.path))
    }
}

/// Reads a WAL segment line by line: `on_line` gets the generations of each complete line.
/// Returns the torn tail if the last line was incomplete.
pub fn scan_segment(
    path: &Path,
    mut on_line: impl FnMut(Vec<Generation>) -> Result<()>,
) -> Result<Option<TornTail>> {
    let file = File::open(path).map_err(StoreError::io("open WAL segment", path))?;
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let mut bytes = Vec::new();
    let mut line = 0u64;
    loop {
        bytes.clear();
        let n = reader
            .read_until(b'\n', &mut bytes)
            .map_err(StoreError::io("read WAL segment", path))?;
        if n == 0 {
            return Ok(None);
        }
        line += 1;
        if bytes.last() != Some(&b'\n') {
            return Ok(Some(TornTail {
                path: path.to_owned(),
                line,
                bytes: bytes.len() as u64,
            }));
        }
        let text = &bytes[..bytes.len() - 1];
        if text.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let text = verify_checksum(text).map_err(|message| StoreError::Corrupt {
            path: path.to_owned(),
            line,
            message,
        })?;
        let generations: Vec<Generation> =
            serde_json::from_slice(text).map_err(|e| StoreError::Corrupt {
                path: path.to_owned(),
                line,
                message: e.to_string(),
            })?;
        on_line(generations)?;
    }
}

/// The JSON of a WAL line, once its checksum (if it has one) matches.
pub(crate) fn verify_checksum(text: &[u8]) -> std::result::Result<&[u8], String> {
    const SUFFIX: usize = 9; // a tab and 8 hex digits
    if text.len() < SUFFIX || text[text.len() - SUFFIX] != b'\t' {
        return Ok(text); // written before records had checksums
    }
    let (json, suffix) = text.split_at(text.len() - SUFFIX);
    let expected = std::str::from_utf8(&suffix[1..])
        .ok()
        .and_then(|hex| u32::from_str_radix(hex, 16).ok())
        .ok_or_else(|| "the record's checksum is not 8 hex digits".to_owned())?;
    let actual = crc32(json);
    if actual != expected {
        return Err(format!(
            "checksum mismatch (stored {expected:08x}, computed {actual:08x}): the record changed \
             after it was written"
        ));
    }
    Ok(json)
}

/// CRC-32 (IEEE 802.3, as zlib and gzip compute it).
pub fn crc32(bytes: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    let mut crc = !0u32;
    for &b in bytes {
        crc = TABLE[((crc ^ u32::from(b)) & 0xFF) as usize] ^ (crc >> 8);
    }
    !crc
}

/// Everything in a WAL segment.
#[derive(Debug, Clone, PartialEq)]
pub struct WalContents {
    pub generations: Vec<Generation>,
    pub torn_tail: Option<TornTail>,
}

/// Reads a whole WAL segment (see [`scan_segment`] to stream it).
pub fn read_segment(path: &Path) -> Result<WalContents> {
    let mut generations = Vec::new();
    let torn_tail = scan_segment(path, |mut line| {
        generations.append(&mut line);
        Ok(())
    })?;
    Ok(WalContents {
        generations,
        torn_tail,
    })
}

/// Cuts an incomplete last line off a JSON-lines file so appends can continue after it.
pub(crate) fn truncate_torn_tail(path: &Path) -> Result<Option<TornTail>> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::io("read", path)(e)),
    };
    if bytes.is_empty() || bytes.ends_with(b"\n") {
        return Ok(None);
    }
    let keep = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let line = bytes[..keep].iter().filter(|&&b| b == b'\n').count() as u64 + 1;
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(StoreError::io("open", path))?;
    file.set_len(keep as u64)
        .map_err(StoreError::io("truncate", path))?;
    file.sync_all().map_err(StoreError::io("fsync", path))?;
    Ok(Some(TornTail {
        path: path.to_owned(),
        line,
        bytes: (bytes.len() - keep) as u64,
    }))
}

/// Makes the entries of a directory (creations, renames, removals) durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(StoreError::io("fsync directory", dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::sample;

    #[test]
    fn group_commit_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000.jsonl");
        let mut wal = WalSegment::create(&path).unwrap();
        wal.append(&[sample("a", 0, true), sample("a", 1, false)])
            .unwrap();
        wal.append(&[sample("b", 0, true)]).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            0,
            "nothing before commit"
        );
        wal.commit().unwrap();
        wal.commit().unwrap();
        assert_eq!(wal.committed_generations(), 3);
        let contents = read_segment(&path).unwrap();
        assert_eq!(contents.torn_tail, None);
        assert_eq!(
            contents.generations,
            vec![
                sample("a", 0, true),
                sample("a", 1, false),
                sample("b", 0, true)
            ]
        );
        assert!(
            WalSegment::create(&path).is_err(),
            "create refuses to overwrite"
        );
    }

    #[test]
    fn torn_tail_is_dropped_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000.jsonl");
        let mut wal = WalSegment::create(&path).unwrap();
        wal.append(&[sample("a", 0, true)]).unwrap();
        wal.append(&[sample("b", 0, true)]).unwrap();
        wal.commit().unwrap();
        drop(wal);
        let full = std::fs::read(&path).unwrap();
        // Simulate kill -9 in the middle of writing the second line.
        let first_len = full.iter().position(|&b| b == b'\n').unwrap() + 1;
        for cut in [first_len + 1, first_len + 40, full.len() - 1] {
            std::fs::write(&path, &full[..cut]).unwrap();
            let contents = read_segment(&path).unwrap();
            assert_eq!(contents.generations, vec![sample("a", 0, true)]);
            let torn = contents.torn_tail.unwrap();
            assert_eq!((torn.line, torn.bytes), (2, (cut - first_len) as u64));
        }
        // Cut exactly at a line end: nothing torn.
        std::fs::write(&path, &full[..first_len]).unwrap();
        assert_eq!(read_segment(&path).unwrap().torn_tail, None);
    }

    #[test]
    fn corrupt_line_in_the_middle_is_an_error_naming_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00003.jsonl");
        let good = serde_json::to_string(&[sample("a", 0, true)]).unwrap();
        std::fs::write(&path, format!("{good}\n{{garbage\n{good}\n")).unwrap();
        let error = read_segment(&path).unwrap_err().to_string();
        assert!(error.contains("00003.jsonl:2:"), "{error}");
    }

    #[test]
    fn failed_write_poisons_and_leaves_only_committed_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000.jsonl");
        let mut wal = WalSegment::create(&path).unwrap();
        wal.append(&[sample("a", 0, true)]).unwrap();
        wal.commit().unwrap();
        wal.fail_after = Some(FailAfter(wal.committed_len + 10));
        wal.append(&[sample("b", 0, true)]).unwrap();
        let error = wal.commit().unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("00000.jsonl") && text.contains("No space left"),
            "{text}"
        );
        assert!(wal.append(&[sample("c", 0, true)]).is_err());
        let contents = read_segment(&path).unwrap();
        assert_eq!(contents.generations, vec![sample("a", 0, true)]);
        assert_eq!(contents.torn_tail, None, "partial line was cut off");
    }

    #[test]
    fn crc32_is_the_ieee_one() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn a_changed_byte_inside_a_record_is_an_error_and_old_lines_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00004.jsonl");
        let mut wal = WalSegment::create(&path).unwrap();
        wal.append(&[sample("a", 0, true)]).unwrap();
        wal.append(&[sample("b", 0, true)]).unwrap();
        wal.commit().unwrap();
        drop(wal);
        let good = std::fs::read(&path).unwrap();
        assert_eq!(read_segment(&path).unwrap().generations.len(), 2);
        // Still valid JSON after the change: only the checksum can tell.
        let second = good.iter().position(|&b| b == b'\n').unwrap() + 1;
        let at = second + good[second..].windows(2).position(|w| w == b"\"b").unwrap() + 1;
        let mut rotten = good.clone();
        rotten[at] = b'c';
        std::fs::write(&path, &rotten).unwrap();
        let error = read_segment(&path).unwrap_err().to_string();
        assert!(
            error.contains("00004.jsonl:2:") && error.contains("checksum mismatch"),
            "{error}"
        );
        // A line from before checksums: read as it is.
        let legacy = serde_json::to_string(&[sample("z", 0, true)]).unwrap();
        std::fs::write(&path, format!("{legacy}\n")).unwrap();
        assert_eq!(
            read_segment(&path).unwrap().generations,
            vec![sample("z", 0, true)]
        );
    }

    #[test]
    fn truncate_torn_tail_makes_file_appendable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.jsonl");
        std::fs::write(&path, "{\"a\":1}\n{\"b\":").unwrap();
        let torn = truncate_torn_tail(&path).unwrap().unwrap();
        assert_eq!((torn.line, torn.bytes), (2, 5));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"a\":1}\n");
        assert_eq!(truncate_torn_tail(&path).unwrap(), None);
    }
}
