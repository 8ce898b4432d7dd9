//! What happened to a probe: the receiver's output, the analysis crate's input.

use core::net::IpAddr;

use asdic_wire::Family;

/// One thing that happened to probe `n`.
///
/// Every probe sent ends in exactly one *terminal* event ([`Outcome::Reply`],
/// [`Outcome::Error`], [`Outcome::Timeout`] or [`Outcome::SendFailed`]); duplicates and late
/// replies come in addition, never instead.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Event {
    /// Probe number within the run; `None` when not known (an ICMP error quoting too little
    /// of a stateless scan's probe).
    pub probe: Option<u64>,
    /// The handle the run's source gave the probe's target (`Next::Probe`'s or `Next::Try`'s
    /// cookie: ping's index in its target list, trace's (target, TTL) pair, sweep's member,
    /// a session's request), as given. Stateless scan probes have none (0): their answers name
    /// their target, and the try is [`Event::attempt`].
    pub cookie: u32,
    /// The probed address.
    pub target: IpAddr,
    /// When the probe left, ns since the Unix epoch; `None` when not known (a stateless
    /// scan's timeout, an ICMP error quoting too little of the probe to carry its stamp).
    pub sent_ns: Option<u64>,
    /// Which try at the target the probe was (0 = first, then retries), when the in-flight
    /// table still knew it (it does for every terminal outcome).
    pub attempt: u8,
    /// What happened.
    pub outcome: Outcome,
}

/// What happened, see [`Event`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome {
    /// An echo reply that validated: terminal.
    Reply {
        /// Round-trip time in nanoseconds.
        rtt_ns: u64,
        /// TTL / hop limit the reply arrived with, if known.
        ttl: Option<u8>,
        /// Who answered (the target itself, as the MAC proves).
        from: IpAddr,
    },
    /// An ICMP error about the probe: terminal.
    Error {
        /// ICMP family of the error.
        family: Family,
        /// Error type.
        icmp_type: u8,
        /// Error code.
        code: u8,
        /// The router or host that reported it.
        from: IpAddr,
        /// Time from send to the error, nanoseconds.
        rtt_ns: u64,
        /// The error's rest-of-header word: an ICMPv6 Packet Too Big's MTU, a Parameter
        /// Problem's pointer, an ICMPv4 redirect's gateway, 0 where the type defines none.
        rest: u32,
        /// The better first hop a redirect names (ICMPv4 type 5, ICMPv6 type 137).
        gateway: Option<IpAddr>,
    },
    /// No answer within the timeout: terminal.
    Timeout,
    /// The local stack refused to send it (no route, …): terminal.
    SendFailed {
        /// The OS error number.
        errno: i32,
    },
    /// A second (or later) valid reply to an answered probe.
    Duplicate {
        /// Its round-trip time in nanoseconds.
        rtt_ns: u64,
    },
    /// A valid reply that came after the probe had timed out.
    Late {
        /// Its round-trip time in nanoseconds.
        rtt_ns: u64,
    },
}

impl Outcome {
    /// Whether this outcome ends the probe.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Outcome::Reply { .. }
                | Outcome::Error { .. }
                | Outcome::Timeout
                | Outcome::SendFailed { .. }
        )
    }
}

/// Counters of what the receiver saw and dropped (not attributable to a probe).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Drops {
    /// Frames that failed to parse (truncated, malformed, bad checksum).
    pub malformed: u64,
    /// Echo replies of our session whose MAC did not verify.
    pub forged: u64,
    /// Echo replies of another session or program.
    pub foreign: u64,
    /// ICMP errors quoting an (id, seq) we never sent, or whose quoted target does not match.
    pub unmatched_errors: u64,
    /// Other ICMP (echo requests, neighbour discovery, errors about other traffic).
    pub other: u64,
    /// Valid replies whose slot was reused by a later probe (older than the table's lap).
    pub stale: u64,
    /// ICMP errors quoting only the (id, seq) of a probe in flight when the identifier is
    /// fixed (`--id N`, the session library): 16 guessable bits are no proof, so they are
    /// counted and the probe waits for its answer or timeout.
    pub unverified: u64,
    /// Replies and errors timed from the sender's stamp because the kernel's send stamp of
    /// their probe never came back (engines with kernel send stamps only; none is expected
    /// unless the receive buffer overflowed).
    pub unstamped: u64,
    /// Steps of CLOCK_REALTIME the receiver saw: RTTs and timeouts run on a clock no step
    /// moves, and sockets' kernel stamps are brought onto it across steps.
    pub clock_steps: u64,
    /// Answers whose kernel stamps were read around a step of CLOCK_REALTIME, so may lie on
    /// either side of it: their RTTs may be off by the step.
    pub across_step: u64,
}

impl core::fmt::Display for Drops {
    /// "N malformed, N forged, N foreign, N unmatched errors, N stale, N other ICMP", and
    /// ", N unverified errors" when there were any.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{} malformed, {} forged, {} foreign, {} unmatched errors, {} stale, {} other ICMP",
            self.malformed,
            self.forged,
            self.foreign,
            self.unmatched_errors,
            self.stale,
            self.other
        )?;
        if self.unverified > 0 {
            write!(f, ", {} unverified errors", self.unverified)?;
        }
        if self.unstamped > 0 {
            write!(f, ", {} timed without a kernel send stamp", self.unstamped)?;
        }
        if self.clock_steps + self.across_step > 0 {
            write!(
                f,
                ", the realtime clock stepped {} times ({} answers timed across a step)",
                self.clock_steps, self.across_step
            )?;
        }
        Ok(())
    }
}

impl Drops {
    /// Adds another set of counters to this one.
    pub fn add(&mut self, o: &Drops) {
        self.malformed += o.malformed;
        self.forged += o.forged;
        self.foreign += o.foreign;
        self.unmatched_errors += o.unmatched_errors;
        self.other += o.other;
        self.stale += o.stale;
        self.unverified += o.unverified;
        self.unstamped += o.unstamped;
        self.clock_steps += o.clock_steps;
        self.across_step += o.across_step;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_read_as_one_line() {
        let d = Drops {
            malformed: 1,
            forged: 2,
            foreign: 3,
            unmatched_errors: 4,
            other: 5,
            stale: 6,
            unverified: 0,
            unstamped: 0,
            clock_steps: 0,
            across_step: 0,
        };
        assert_eq!(
            d.to_string(),
            "1 malformed, 2 forged, 3 foreign, 4 unmatched errors, 6 stale, 5 other ICMP"
        );
    }
}
