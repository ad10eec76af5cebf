//! The content-addressed model store: `<data_dir>/models/<sha256>`, one file per content hash.
//! A file enters only verified (written to `<sha256>.partial`, hashed, renamed); a node that has
//! a model at a local path adopts it (hashed, hard-linked or copied in) and shares it.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use golek_protocol::deploy::is_sha256;
use ring::digest::{Context, SHA256};

/// The bytes read at a time while hashing or copying.
const BUF: usize = 1 << 20;

pub fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// The sha256 of a file, as lowercase hex.
pub fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut cx = Context::new(&SHA256);
    let mut buf = vec![0u8; BUF];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        cx.update(&buf[..n]);
    }
    Ok(hex(cx.finish().as_ref()))
}

/// The sha256 of some bytes, as lowercase hex.
pub fn hash_bytes(bytes: &[u8]) -> String {
    hex(ring::digest::digest(&SHA256, bytes).as_ref())
}

pub struct ModelStore {
    dir: PathBuf,
    /// Hashes of local files already adopted, by path and size (hashing a model is slow).
    adopted: Mutex<Vec<(PathBuf, u64, String)>>,
    /// The hashes of the complete files, remade when the store changes (read every gossip
    /// round).
    shas: Mutex<Vec<String>>,
}

impl ModelStore {
    pub fn open(dir: PathBuf) -> std::io::Result<ModelStore> {
        std::fs::create_dir_all(&dir)?;
        let store = ModelStore {
            dir,
            adopted: Mutex::new(Vec::new()),
            shas: Mutex::new(Vec::new()),
        };
        store.refresh();
        Ok(store)
    }

    fn refresh(&self) {
        let shas = self.list().into_iter().map(|(s, _)| s).collect();
        *self.shas.lock().unwrap_or_else(|p| p.into_inner()) = shas;
    }

    /// The hashes of the files this store can send.
    pub fn shas(&self) -> Vec<String> {
        self.shas.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the file of `sha` lives (whether or not it is there yet).
    pub fn path(&self, sha: &str) -> Option<PathBuf> {
        is_sha256(sha).then(|| self.dir.join(sha))
    }

    /// Where a download of `sha` in progress is written.
    pub fn partial(&self, sha: &str) -> Option<PathBuf> {
        is_sha256(sha).then(|| self.dir.join(format!("{sha}.partial")))
    }

    /// The size of the stored file of `sha`, if the store has it.
    pub fn size(&self, sha: &str) -> Option<u64> {
        let p = self.path(sha)?;
        std::fs::metadata(p)
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len())
    }

    /// Every complete file: (sha256, size).
    pub fn list(&self) -> Vec<(String, u64)> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut out: Vec<(String, u64)> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                let meta = e.metadata().ok()?;
                (is_sha256(&name) && meta.is_file()).then_some((name, meta.len()))
            })
            .collect();
        out.sort();
        out
    }

    /// Puts a local file into the store under its hash (a hard link where the file system
    /// allows, else a copy); returns the hash. A file already adopted is not hashed again.
    pub fn adopt(&self, path: &Path) -> std::io::Result<String> {
        let size = std::fs::metadata(path)?.len();
        let known = self
            .adopted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|(p, s, _)| p == path && *s == size)
            .map(|(_, _, h)| h.clone());
        let sha = match known {
            Some(h) => h,
            None => hash_file(path)?,
        };
        let target = self.dir.join(&sha);
        if !target.exists() {
            let partial = self.dir.join(format!("{sha}.adopting"));
            let _ = std::fs::remove_file(&partial);
            if std::fs::hard_link(path, &partial).is_err() {
                copy(path, &partial)?;
            }
            std::fs::rename(&partial, &target)?;
            self.refresh();
        }
        self.adopted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((path.to_path_buf(), size, sha.clone()));
        Ok(sha)
    }

    /// Moves a finished download into place once its whole hash is `sha`; a mismatch removes
    /// it and says so.
    pub fn commit(&self, sha: &str, partial: &Path) -> Result<PathBuf, String> {
        let got = hash_file(partial).map_err(|e| format!("cannot read the download: {e}"))?;
        if got != sha {
            let _ = std::fs::remove_file(partial);
            return Err(format!("the downloaded file's sha256 is {got}, not {sha}"));
        }
        self.commit_checked(sha, partial)
    }

    /// Moves a finished peer-to-peer download into place without hashing it again: every chunk
    /// matched the manifest of a peer that hashed its whole copy before it vouched for it (see
    /// `transfer`), so the file is the one `sha` names as far as a cluster member can tell.
    pub fn commit_checked(&self, sha: &str, partial: &Path) -> Result<PathBuf, String> {
        let target = self.path(sha).ok_or("not a sha256")?;
        std::fs::rename(partial, &target).map_err(|e| format!("cannot store the file: {e}"))?;
        self.refresh();
        Ok(target)
    }

    /// Removes every complete or partial file whose hash is not in `keep`; returns what went.
    pub fn gc(&self, keep: &[String]) -> Vec<(String, u64)> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut removed = Vec::new();
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let sha = name.split('.').next().unwrap_or("").to_string();
            if !is_sha256(&sha) || keep.contains(&sha) {
                continue;
            }
            let size = e.metadata().map_or(0, |m| m.len());
            if std::fs::remove_file(e.path()).is_ok() {
                removed.push((name, size));
            }
        }
        self.refresh();
        removed
    }
}

fn copy(from: &Path, to: &Path) -> std::io::Result<()> {
    let mut r = std::fs::File::open(from)?;
    let mut w = std::fs::File::create(to)?;
    let mut buf = vec![0u8; BUF];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        w.write_all(&buf[..n])?;
    }
    w.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_enter_by_hash_verified_and_leave_by_gc() {
        let dir = tempfile::tempdir().unwrap();
        let store = ModelStore::open(dir.path().join("models")).unwrap();
        let src = dir.path().join("model.bin");
        std::fs::write(&src, b"weights").unwrap();
        let sha = store.adopt(&src).unwrap();
        assert_eq!(sha, hash_bytes(b"weights"));
        assert_eq!(store.size(&sha), Some(7));
        assert_eq!(store.list(), vec![(sha.clone(), 7)]);
        // A download whose bytes do not match is refused and removed.
        let other = hash_bytes(b"other");
        let partial = store.partial(&other).unwrap();
        std::fs::write(&partial, b"not other").unwrap();
        assert!(store.commit(&other, &partial).unwrap_err().contains("not"));
        assert!(!partial.exists());
        std::fs::write(&partial, b"other").unwrap();
        let stored = store.commit(&other, &partial).unwrap();
        assert_eq!(std::fs::read(stored).unwrap(), b"other");
        // gc keeps what is referenced.
        let removed = store.gc(std::slice::from_ref(&sha));
        assert_eq!(removed, vec![(other.clone(), 5)]);
        assert_eq!(store.list(), vec![(sha.clone(), 7)]);
        assert!(store.path("../etc").is_none());
    }
}
