//! Retries: the reaper asks the sender to probe a silent target again.

/// A probe to send again after a timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// The target's handle (index).
    pub cookie: u32,
    /// The target.
    pub target: core::net::IpAddr,
    /// Attempt number of the new probe (1 = first retry).
    pub attempt: u8,
    /// The probe template (packet size) to send it from, as the first try.
    pub class: u8,
}
