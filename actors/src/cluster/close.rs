//! The QUIC application close codes of Golek's protocols, for connections and streams: one
//! enum, mapped to and from the wire's varint, so no code is a bare number at a call site.

/// Why a connection or stream was closed or reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum CloseCode {
    /// Normal end: the work is done, or the node is shutting down.
    Done = 0,
    /// The peer broke a rule of the protocol (no certificate, wrong ALPN, bad frame).
    Refused = 1,
    /// The failure detector marked the peer dead.
    PeerDead = 2,
    /// The node is shutting down.
    Shutdown = 3,
    /// The caller went away: the work on the other side should stop.
    Cancelled = 4,
}

impl CloseCode {
    /// The code a peer sent; unknown numbers are `None`.
    pub fn from_code(code: u64) -> Option<Self> {
        Some(match code {
            0 => CloseCode::Done,
            1 => CloseCode::Refused,
            2 => CloseCode::PeerDead,
            3 => CloseCode::Shutdown,
            4 => CloseCode::Cancelled,
            _ => return None,
        })
    }
}

impl From<CloseCode> for quinn::VarInt {
    fn from(code: CloseCode) -> Self {
        quinn::VarInt::from_u32(code as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_unknown_ones_are_none() {
        for code in [
            CloseCode::Done,
            CloseCode::Refused,
            CloseCode::PeerDead,
            CloseCode::Shutdown,
            CloseCode::Cancelled,
        ] {
            let wire: quinn::VarInt = code.into();
            assert_eq!(CloseCode::from_code(wire.into_inner()), Some(code));
        }
        assert_eq!(CloseCode::from_code(99), None);
    }
}
