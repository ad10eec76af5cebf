//! What the OS says about the machine's memory, read from `/proc/meminfo`.

/// The memory figures of `/proc/meminfo`, in bytes.
pub struct MemInfo(String);

impl MemInfo {
    /// Reads `/proc/meminfo`; `None` where it cannot be read (not Linux).
    pub fn read() -> Option<MemInfo> {
        std::fs::read_to_string("/proc/meminfo").ok().map(MemInfo)
    }

    /// The value of `key` (`MemTotal`, `MemAvailable`), in bytes.
    pub fn bytes(&self, key: &str) -> Option<u64> {
        self.0
            .lines()
            .find(|l| l.split(':').next() == Some(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map(|kib| kib.saturating_mul(1024))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kibibytes_become_bytes_and_keys_match_whole() {
        let info = MemInfo("MemTotal:       1000 kB\nMemAvailable:    500 kB\n".into());
        assert_eq!(info.bytes("MemTotal"), Some(1_024_000));
        assert_eq!(info.bytes("MemAvailable"), Some(512_000));
        assert_eq!(info.bytes("Mem"), None);
    }
}
