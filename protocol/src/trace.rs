//! W3C trace context (`traceparent`): `00-<trace id, 32 hex>-<parent span id, 16 hex>-<flags>`.
//! Parsed from clients and peers (an invalid header is ignored, as the specification says:
//! the request starts a new trace) and written into responses and peer frames.

/// One hop's trace context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// The "sampled" flag: the caller records this trace.
    pub sampled: bool,
}

fn hex_to<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != N * 2 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

fn to_hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

impl TraceParent {
    /// Reads a `traceparent` header value; `None` when it is malformed, all-zero, or of a
    /// version this build cannot read (version `ff` is invalid; later versions are read by
    /// their first four fields, as the specification asks).
    pub fn parse(value: &str) -> Option<TraceParent> {
        let value = value.trim();
        let mut parts = value.split('-');
        let version = parts.next()?;
        let trace = parts.next()?;
        let span = parts.next()?;
        let flags = parts.next()?;
        if version.len() != 2
            || version.eq_ignore_ascii_case("ff")
            || version.bytes().any(|b| b.is_ascii_uppercase())
        {
            return None;
        }
        if version == "00" && parts.next().is_some() {
            return None;
        }
        let _ = hex_to::<1>(version)?;
        if trace.bytes().any(|b| b.is_ascii_uppercase())
            || span.bytes().any(|b| b.is_ascii_uppercase())
        {
            return None;
        }
        let trace_id = hex_to::<16>(trace)?;
        let span_id = hex_to::<8>(span)?;
        let flags = hex_to::<1>(flags)?[0];
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(TraceParent {
            trace_id,
            span_id,
            sampled: flags & 1 == 1,
        })
    }

    pub fn trace_id_hex(&self) -> String {
        to_hex(&self.trace_id)
    }

    pub fn span_id_hex(&self) -> String {
        to_hex(&self.span_id)
    }

    /// The header value (version 00).
    pub fn header(&self) -> String {
        // 00-<32 hex>-<16 hex>-<2 hex>, written in place (on every request's answer).
        let mut out = [0u8; 55];
        out[..3].copy_from_slice(b"00-");
        let _ = hex::encode_to_slice(self.trace_id, &mut out[3..35]);
        out[35] = b'-';
        let _ = hex::encode_to_slice(self.span_id, &mut out[36..52]);
        out[52..].copy_from_slice(if self.sampled { b"-01" } else { b"-00" });
        String::from_utf8_lossy(&out).into_owned()
    }

    /// The same trace with `span_id` as the parent (what this hop sends on).
    pub fn child(&self, span_id: [u8; 8]) -> TraceParent {
        TraceParent { span_id, ..*self }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes_the_w3c_header() {
        let h = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let t = TraceParent::parse(h).unwrap();
        assert!(t.sampled);
        assert_eq!(t.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(t.header(), h);
        let child = t.child([1; 8]);
        assert_eq!(
            child.header(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0101010101010101-01"
        );
        // A later version is read by its first fields.
        assert!(TraceParent::parse(
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-extra"
        )
        .is_some());
    }

    #[test]
    fn malformed_headers_are_ignored() {
        for bad in [
            "",
            "00",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-zz",
            "00-ébf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad}");
        }
    }
}
