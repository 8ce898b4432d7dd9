//! The crate's only `unsafe` code: interface-name lookup and the `bpf(2)` calls that load a
//! program, run it on test frames and link it to an interface, all through `libc` (the
//! route-netlink socket is asdic-netlink's). Objects are parsed, safely, in `object`.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// The index of interface `name` in the calling thread's network namespace.
pub(crate) fn if_nametoindex(name: &str) -> io::Result<u32> {
    let c = CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::ENODEV))?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call, which only reads it.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if index == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(index)
}

/// `bpf(2)` commands and constants used here (linux/bpf.h, linux/if_link.h).
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;
/// `XDP_FLAGS_SKB_MODE` and `XDP_FLAGS_DRV_MODE`.
pub(crate) const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
pub(crate) const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

/// The leading fields of `union bpf_attr` for `BPF_PROG_LOAD`, up to
/// `expected_attach_type`; the kernel reads a shorter attr as if the rest were zero.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// The leading fields of `union bpf_attr` for `BPF_LINK_CREATE`.
#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
}

/// The leading fields of `union bpf_attr` for `BPF_PROG_TEST_RUN`, up to `duration`.
#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
}

/// Runs XDP program `prog` on `frame` `repeat` times in the kernel (`BPF_PROG_TEST_RUN`, as
/// if it had arrived on queue 0 of the loopback device; nothing is sent or redirected):
/// its action and the mean time per run in nanoseconds, as the kernel measured it.
pub(crate) fn prog_test_run(
    prog: std::os::fd::BorrowedFd<'_>,
    frame: &[u8],
    repeat: u32,
) -> io::Result<(u32, u32)> {
    let mut attr = TestRunAttr {
        prog_fd: prog.as_raw_fd() as u32,
        data_size_in: u32::try_from(frame.len())
            .map_err(|_| io::Error::from_raw_os_error(libc::E2BIG))?,
        data_in: frame.as_ptr() as u64,
        repeat,
        ..TestRunAttr::default()
    };
    // SAFETY: `frame` (its length as given) outlives the call and is only read; no output
    // buffer is given (data_out 0), so the kernel writes only into `attr`.
    unsafe { bpf_call(BPF_PROG_TEST_RUN, &mut attr) }?;
    Ok((attr.retval, attr.duration))
}

/// `bpf(cmd, attr, size_of::<A>())`, returning the new descriptor it creates.
///
/// # Safety
/// As [`bpf_call`]; and `cmd` must be one that returns a new descriptor on success.
unsafe fn bpf_fd<A>(cmd: libc::c_long, attr: &mut A) -> io::Result<OwnedFd> {
    // SAFETY: the caller vouches for `attr` and `cmd`.
    let r = unsafe { bpf_call(cmd, attr) }?;
    // SAFETY: a successful BPF_PROG_LOAD / BPF_LINK_CREATE returns a new descriptor
    // that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(r as i32) })
}

/// `bpf(cmd, attr, size_of::<A>())`, returning what it returns.
///
/// # Safety
/// Every pointer inside `attr` must be valid for what the kernel does with it under `cmd`
/// (read the instructions and license, write the log buffer) for the call's duration.
unsafe fn bpf_call<A>(cmd: libc::c_long, attr: &mut A) -> io::Result<libc::c_long> {
    // Bounded: EAGAIN/EINTR (the verifier interrupted) are retried a few times, as libbpf does.
    let mut tries = 0;
    loop {
        tries += 1;
        // SAFETY: `attr` is a live, initialised `A` of the size passed; the caller vouches
        // for the pointers it holds.
        let r = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                cmd,
                (attr as *mut A).cast::<libc::c_void>(),
                size_of::<A>() as libc::c_uint,
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            let again =
                e.raw_os_error() == Some(libc::EAGAIN) || e.kind() == io::ErrorKind::Interrupted;
            if again && tries < 5 {
                continue;
            }
            return Err(e);
        }
        return Ok(r);
    }
}

/// Loads an XDP program: `insns` are `struct bpf_insn`s as the kernel lays them out, `name`
/// at most 15 bytes (longer is cut).
/// With `log`, the verifier writes its log there (level 1) and the load is slower.
pub(crate) fn prog_load_xdp(
    insns: &[[u8; 8]],
    license: &std::ffi::CStr,
    name: &str,
    log: Option<&mut [u8]>,
) -> io::Result<OwnedFd> {
    let mut prog_name = [0u8; 16];
    let n = name.len().min(15);
    prog_name[..n].copy_from_slice(&name.as_bytes()[..n]);
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_XDP,
        insn_cnt: u32::try_from(insns.len())
            .map_err(|_| io::Error::from_raw_os_error(libc::E2BIG))?,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        prog_name,
        expected_attach_type: BPF_XDP,
        ..ProgLoadAttr::default()
    };
    if let Some(buf) = log {
        attr.log_level = 1;
        attr.log_size = u32::try_from(buf.len()).unwrap_or(u32::MAX);
        attr.log_buf = buf.as_mut_ptr() as u64;
    }
    // SAFETY: `insns`, `license` (NUL-terminated) and the log buffer (its length as given)
    // outlive the call; the kernel reads the first two and writes at most `log_size` bytes.
    unsafe { bpf_fd(BPF_PROG_LOAD, &mut attr) }
}

/// Attaches XDP program `prog` to interface `ifindex` through a bpf_link (`flags`: the
/// XDP_FLAGS_*_MODE bit); the link's descriptor holds it there until it is closed.
pub(crate) fn xdp_link_create(
    prog: std::os::fd::BorrowedFd<'_>,
    ifindex: u32,
    flags: u32,
) -> io::Result<OwnedFd> {
    let mut attr = LinkCreateAttr {
        prog_fd: prog.as_raw_fd() as u32,
        target_ifindex: ifindex,
        attach_type: BPF_XDP,
        flags,
    };
    // SAFETY: the attr holds no pointers.
    unsafe { bpf_fd(BPF_LINK_CREATE, &mut attr) }
}
