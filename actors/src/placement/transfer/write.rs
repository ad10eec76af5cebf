//! Writing fetched chunks into the partial file.
//!
//! Chunks go to the disk with `O_DIRECT` where the file system takes it: a model file is
//! written once and read back by the model's loader, so copying it through the page cache
//! costs CPU (on a virtual machine, more than hashing it does) and the final `fsync` then
//! has it all to flush. A file system without `O_DIRECT` (tmpfs, for one) gets ordinary
//! writes. Direct writes need aligned memory, offsets and lengths: chunk offsets are
//! multiples of 4 MiB, buffers are aligned within a larger allocation, and the unaligned
//! tail of the last chunk is an ordinary write. Buffers are reused across chunks.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// The alignment direct I/O needs (the largest logical block size in use).
const ALIGN: usize = 4096;
/// Buffers kept for reuse.
const POOL: usize = 16;

/// One chunk's bytes, at an aligned place inside its allocation.
pub struct ChunkBuf {
    buf: Vec<u8>,
    start: usize,
    len: usize,
}

impl ChunkBuf {
    pub fn bytes(&self) -> &[u8] {
        &self.buf[self.start..self.start + self.len]
    }

    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.start + self.len]
    }
}

/// Writes the chunks of one partial file.
pub struct ChunkWriter {
    buffered: Arc<File>,
    direct: Option<File>,
    pool: Mutex<Vec<Vec<u8>>>,
}

impl ChunkWriter {
    /// A writer for the partial file at `path`, open as `buffered`; with direct writes when
    /// the file system allows them.
    pub fn open(path: &Path, buffered: Arc<File>) -> ChunkWriter {
        ChunkWriter {
            buffered,
            direct: open_direct(path),
            pool: Mutex::new(Vec::new()),
        }
    }

    /// A buffer for a chunk of `len` bytes (its contents are whatever it held before).
    pub fn buffer(&self, len: usize) -> ChunkBuf {
        let reused = self
            .pool
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop()
            .filter(|b| b.len() >= len + ALIGN);
        let buf = reused.unwrap_or_else(|| vec![0u8; len.max(super::CHUNK_BYTES as usize) + ALIGN]);
        let start = buf.as_ptr().align_offset(ALIGN).min(ALIGN);
        ChunkBuf { buf, start, len }
    }

    /// Gives a buffer back for the next chunk.
    pub fn give_back(&self, chunk: ChunkBuf) {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < POOL {
            pool.push(chunk.buf);
        }
    }

    /// Writes `chunk` at `offset` (a multiple of [`ALIGN`] for the direct path to be taken).
    pub fn write(&self, chunk: &ChunkBuf, offset: u64) -> std::io::Result<()> {
        let bytes = chunk.bytes();
        let aligned = match &self.direct {
            Some(_) if offset % ALIGN as u64 == 0 => bytes.len() - bytes.len() % ALIGN,
            _ => 0,
        };
        let mut done = 0;
        if let (Some(direct), true) = (&self.direct, aligned > 0) {
            // A refusal (a file system that opened the file but takes no direct writes at
            // this place) falls back to an ordinary write of the whole chunk.
            if direct.write_all_at(&bytes[..aligned], offset).is_ok() {
                done = aligned;
            }
        }
        self.buffered
            .write_all_at(&bytes[done..], offset + done as u64)
    }
}

#[cfg(target_os = "linux")]
fn open_direct(path: &Path) -> Option<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .ok()
}

#[cfg(not(target_os = "linux"))]
fn open_direct(_path: &Path) -> Option<File> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn chunks_land_at_their_offsets_whether_aligned_or_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.partial");
        let file = Arc::new(
            std::fs::OpenOptions::new()
                .create(true)
                .truncate(true)
                .read(true)
                .write(true)
                .open(&path)
                .unwrap(),
        );
        let size = 3 * ALIGN + 100;
        file.set_len(size as u64).unwrap();
        let w = ChunkWriter::open(&path, file.clone());
        let mut whole = vec![0u8; size];
        // An aligned chunk of two blocks, then the unaligned tail (a block and 100 bytes).
        for (offset, len) in [(0usize, 2 * ALIGN), (2 * ALIGN, ALIGN + 100)] {
            let mut c = w.buffer(len);
            assert_eq!(c.bytes().as_ptr().align_offset(ALIGN), 0, "aligned memory");
            for (k, b) in c.bytes_mut().iter_mut().enumerate() {
                *b = ((offset + k) % 251) as u8;
            }
            whole[offset..offset + len].copy_from_slice(c.bytes());
            w.write(&c, offset as u64).unwrap();
            w.give_back(c);
        }
        // A reused buffer keeps its alignment.
        assert_eq!(w.buffer(ALIGN).bytes().as_ptr().align_offset(ALIGN), 0);
        file.sync_all().unwrap();
        let mut got = Vec::new();
        std::fs::File::open(&path)
            .unwrap()
            .read_to_end(&mut got)
            .unwrap();
        assert_eq!(got.len(), size);
        assert!(got == whole, "the file holds what was written");
    }
}
