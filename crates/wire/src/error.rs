//! The one error type of the wire crate.

/// Why bytes could not be read as the packet asked for. Never a panic: every parser returns
/// one of these for short, malformed or foreign input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireError {
    /// The buffer is shorter than the header or than a length field claims.
    Truncated,
    /// A field holds a value this parser does not accept (version, header length, …).
    Malformed,
    /// A checksum does not verify.
    Checksum,
    /// Well-formed, but not something asdic deals with (other protocol, fragment, …).
    Unsupported,
}

impl core::fmt::Display for WireError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            WireError::Truncated => "truncated packet",
            WireError::Malformed => "malformed packet",
            WireError::Checksum => "bad checksum",
            WireError::Unsupported => "unsupported packet",
        })
    }
}

impl std::error::Error for WireError {}

/// Result alias of the wire crate.
pub type Result<T> = core::result::Result<T, WireError>;
