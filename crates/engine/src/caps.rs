//! Capabilities: what each engine needs, what this process has, and dropping them all once the
//! engines are open.
//!
//! Measured on Linux 6.18 as an unprivileged user with file capabilities (tests/privilege_bed.rs):
//! the socket engines need CAP_NET_RAW; the XDP engine needs CAP_NET_RAW (the AF_XDP socket),
//! CAP_NET_ADMIN (attaching the program), CAP_BPF (loading it and its maps), CAP_PERFMON
//! (without it the verifier applies the Spectre mitigations of unprivileged programs and
//! refuses ours with EACCES) and CAP_IPC_LOCK (pinning the UMEM) unless RLIMIT_MEMLOCK is
//! large enough. CAP_SYS_ADMIN stands in for CAP_BPF and CAP_PERFMON, as on kernels before 5.8.
//!
//! The effective set is read from `/proc/thread-self/status`; the only system calls (capset,
//! prctl, getrlimit) live in the private `sys` module.

use std::fmt;
use std::io;

/// One capability, by its number in `linux/capability.h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cap {
    /// Writing where file permissions would not let the user (root's usual power over files).
    DacOverride = 1,
    /// Interfaces, routes, XDP attach.
    NetAdmin = 12,
    /// Raw and AF_XDP sockets.
    NetRaw = 13,
    /// Locking memory (the UMEM) beyond RLIMIT_MEMLOCK.
    IpcLock = 14,
    /// The old catch-all; stands in for CAP_BPF and CAP_PERFMON.
    SysAdmin = 21,
    /// Verifier privileges of trusted programs (pointer arithmetic without Spectre masking).
    Perfmon = 38,
    /// Loading BPF programs and creating maps.
    Bpf = 39,
}

impl Cap {
    /// Its name as the kernel and `capabilities(7)` spell it.
    pub fn name(self) -> &'static str {
        match self {
            Cap::DacOverride => "CAP_DAC_OVERRIDE",
            Cap::NetAdmin => "CAP_NET_ADMIN",
            Cap::NetRaw => "CAP_NET_RAW",
            Cap::IpcLock => "CAP_IPC_LOCK",
            Cap::SysAdmin => "CAP_SYS_ADMIN",
            Cap::Perfmon => "CAP_PERFMON",
            Cap::Bpf => "CAP_BPF",
        }
    }

    /// Its name as `setcap` takes it.
    pub fn setcap_name(self) -> String {
        self.name().to_ascii_lowercase()
    }
}

impl fmt::Display for Cap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the socket engines (raw, uring) need.
pub const SOCKET_ENGINES: &[Cap] = &[Cap::NetRaw];

/// What the XDP engine needs (CAP_IPC_LOCK only when the UMEM is over RLIMIT_MEMLOCK).
pub const XDP_ENGINE: &[Cap] = &[Cap::NetRaw, Cap::NetAdmin, Cap::Bpf, Cap::Perfmon];

/// What to grant for the XDP engine: its needs and CAP_IPC_LOCK.
pub const XDP_GRANT: &[Cap] = &[
    Cap::NetRaw,
    Cap::NetAdmin,
    Cap::Bpf,
    Cap::Perfmon,
    Cap::IpcLock,
];

/// A set of capabilities (a bit per number, as in `/proc/PID/status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CapSet(pub u64);

impl CapSet {
    /// The calling thread's effective set.
    pub fn effective() -> io::Result<CapSet> {
        let status = std::fs::read_to_string("/proc/thread-self/status")?;
        CapSet::parse_status(&status, "CapEff").ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "no CapEff line in /proc/thread-self/status",
            )
        })
    }

    /// The set named `field` ("CapEff", "CapPrm", …) in a `/proc/PID/status` text.
    pub fn parse_status(status: &str, field: &str) -> Option<CapSet> {
        status.lines().find_map(|l| {
            let v = l.strip_prefix(field)?.strip_prefix(':')?.trim();
            u64::from_str_radix(v, 16).ok().map(CapSet)
        })
    }

    /// Whether `cap` is in the set.
    pub fn has(self, cap: Cap) -> bool {
        self.0 & (1u64 << cap as u32) != 0
    }

    /// Whether the set grants what `cap` is needed for (CAP_SYS_ADMIN covers CAP_BPF and
    /// CAP_PERFMON).
    pub fn grants(self, cap: Cap) -> bool {
        self.has(cap) || (matches!(cap, Cap::Bpf | Cap::Perfmon) && self.has(Cap::SysAdmin))
    }

    /// Those of `needed` the set does not grant, in order.
    pub fn missing(self, needed: &[Cap]) -> Vec<Cap> {
        needed
            .iter()
            .copied()
            .filter(|&c| !self.grants(c))
            .collect()
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// "CAP_BPF and CAP_PERFMON" for an error message.
pub fn list(caps: &[Cap]) -> String {
    let names: Vec<&str> = caps.iter().map(|c| c.name()).collect();
    match names.as_slice() {
        [] => String::new(),
        [one] => (*one).to_string(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// The `setcap` line that grants `caps` to the installed binary.
pub fn setcap_line(caps: &[Cap]) -> String {
    let names: Vec<String> = caps.iter().map(|c| c.setcap_name()).collect();
    format!("sudo setcap {}+ep $(command -v asdic)", names.join(","))
}

/// What `engine` lacks in this process, as one sentence naming the missing capabilities and how
/// to grant the full set; None when it has them all (or the set cannot be read: the engine then
/// reports its own error).
///
/// `grant` is the full set to suggest (for XDP, `needed` plus CAP_IPC_LOCK for the UMEM).
pub fn lacking(engine: &str, needed: &[Cap], grant: &[Cap]) -> Option<String> {
    let have = CapSet::effective().ok()?;
    let missing = have.missing(needed);
    if missing.is_empty() {
        return None;
    }
    Some(format!(
        "missing {} (the {engine} engine needs {}; grant them: {})",
        list(&missing),
        list(needed),
        setcap_line(grant)
    ))
}

/// The soft RLIMIT_MEMLOCK in bytes (None = unlimited).
pub fn memlock_limit() -> io::Result<Option<u64>> {
    sys::memlock_limit()
}

/// Whether `bytes` of locked memory can be had: CAP_IPC_LOCK, or a large enough RLIMIT_MEMLOCK.
/// Err carries the sentence to show.
pub fn check_memlock(bytes: u64) -> Result<(), String> {
    if CapSet::effective().is_ok_and(|c| c.has(Cap::IpcLock)) {
        return Ok(());
    }
    match memlock_limit() {
        Ok(None) => Ok(()),
        Ok(Some(limit)) if limit >= bytes => Ok(()),
        Ok(Some(limit)) => Err(format!(
            "the UMEM's {} KiB of locked memory exceed RLIMIT_MEMLOCK ({} KiB) and CAP_IPC_LOCK \
             is missing (grant cap_ipc_lock with the others, or raise the limit: ulimit -l)",
            bytes >> 10,
            limit >> 10
        )),
        Err(_) => Ok(()),
    }
}

/// Drops every capability of the calling thread (effective, permitted, inheritable and
/// ambient) and sets no_new_privs, so nothing exec'd later can regain any. Threads started
/// afterwards inherit the empty sets; call it before starting any (capabilities are per thread).
pub fn drop_all() -> io::Result<()> {
    sys::clear_ambient()?;
    sys::capset_empty()?;
    sys::no_new_privs()
}

/// The unsafe system calls of this module.
mod sys {
    use std::io;

    /// `_LINUX_CAPABILITY_VERSION_3`: two 32-bit words per set.
    const VERSION_3: u32 = 0x2008_0522;

    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }

    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }

    fn check(r: libc::c_long) -> io::Result<()> {
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    pub(super) fn capset_empty() -> io::Result<()> {
        let mut header = Header {
            version: VERSION_3,
            pid: 0,
        };
        let data = [Data {
            effective: 0,
            permitted: 0,
            inheritable: 0,
        }; 2];
        // SAFETY: capset(2) reads one header and, for version 3, two data structs; both are
        // live locals of the layout `linux/capability.h` gives them.
        let r =
            unsafe { libc::syscall(libc::SYS_capset, &mut header as *mut Header, data.as_ptr()) };
        check(r)
    }

    pub(super) fn clear_ambient() -> io::Result<()> {
        // SAFETY: prctl(2) with integer arguments only.
        let r = unsafe {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
            )
        };
        check(r.into())
    }

    pub(super) fn no_new_privs() -> io::Result<()> {
        // SAFETY: prctl(2) with integer arguments only.
        let r = unsafe {
            libc::prctl(
                libc::PR_SET_NO_NEW_PRIVS,
                1 as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
            )
        };
        check(r.into())
    }

    pub(super) fn memlock_limit() -> io::Result<Option<u64>> {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit(2) writes one rlimit into `lim`, a live local.
        let r = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) };
        check(r.into())?;
        Ok((lim.rlim_cur != libc::RLIM_INFINITY).then_some(lim.rlim_cur))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_status() {
        let s = "Name:\tasdic\nCapInh:\t0000000000000000\nCapPrm:\t000000c000003000\n\
                 CapEff:\t000000c000003000\n";
        let eff = CapSet::parse_status(s, "CapEff").unwrap();
        assert!(eff.has(Cap::NetRaw) && eff.has(Cap::NetAdmin));
        assert!(eff.has(Cap::Bpf) && eff.has(Cap::Perfmon));
        assert!(!eff.has(Cap::IpcLock) && !eff.has(Cap::SysAdmin));
        assert!(eff.missing(XDP_ENGINE).is_empty());
        assert_eq!(CapSet::parse_status(s, "CapInh"), Some(CapSet(0)));
        assert_eq!(CapSet::parse_status(s, "CapBnd"), None);
        assert_eq!(CapSet::parse_status("CapEff:\tzz\n", "CapEff"), None);
    }

    #[test]
    fn names_exactly_what_is_missing() {
        let raw_admin = CapSet((1 << 13) | (1 << 12));
        assert_eq!(raw_admin.missing(XDP_ENGINE), vec![Cap::Bpf, Cap::Perfmon]);
        assert_eq!(
            list(&raw_admin.missing(XDP_ENGINE)),
            "CAP_BPF and CAP_PERFMON"
        );
        assert!(raw_admin.missing(SOCKET_ENGINES).is_empty());
        // CAP_SYS_ADMIN stands in for CAP_BPF and CAP_PERFMON, not for the network ones.
        let sys_admin = CapSet(1 << 21);
        assert_eq!(
            sys_admin.missing(XDP_ENGINE),
            vec![Cap::NetRaw, Cap::NetAdmin]
        );
        assert_eq!(
            list(&CapSet(0).missing(XDP_ENGINE)),
            "CAP_NET_RAW, CAP_NET_ADMIN, CAP_BPF and CAP_PERFMON"
        );
        assert_eq!(
            setcap_line(SOCKET_ENGINES),
            "sudo setcap cap_net_raw+ep $(command -v asdic)"
        );
    }

    #[test]
    fn reads_this_threads_set() {
        // Whatever the test runs as, the set parses and is consistent with the kernel's view of
        // one well-known capability: a raw socket opens exactly when CAP_NET_RAW is effective.
        let eff = CapSet::effective().unwrap();
        let opened = crate::sys::raw_socket(false).is_ok();
        assert_eq!(opened, eff.has(Cap::NetRaw));
        assert!(memlock_limit().is_ok());
    }
}
