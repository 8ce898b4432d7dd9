//! The crate's only `unsafe` code: a route-netlink socket (open, send, receive) through
//! `libc`. Messages are built and parsed, safely, in the crate root.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// A `NETLINK_ROUTE` socket of the calling thread's network namespace, with extended
/// acknowledgements (the kernel's error text) and a receive timeout so that no wait is endless.
#[derive(Debug)]
pub struct RouteSocket {
    fd: OwnedFd,
}

impl RouteSocket {
    /// Opens one (its receives time out after 2 s).
    ///
    /// # Errors
    /// The `socket(2)` or `setsockopt(2)` error.
    pub fn open() -> io::Result<RouteSocket> {
        // SAFETY: socket(2) with constant arguments; it returns a new descriptor or -1.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a descriptor we just opened and nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let sock = RouteSocket { fd };
        // Older kernels lack extended acks; the error code alone is still enough.
        let _ = sock.set_int(libc::SOL_NETLINK, libc::NETLINK_EXT_ACK, 1);
        let timeout = libc::timeval {
            tv_sec: 2,
            tv_usec: 0,
        };
        sock.set_opt(libc::SOL_SOCKET, libc::SO_RCVTIMEO, &timeout)?;
        Ok(sock)
    }

    fn set_int(&self, level: i32, name: i32, value: i32) -> io::Result<()> {
        self.set_opt(level, name, &value)
    }

    fn set_opt<T>(&self, level: i32, name: i32, value: &T) -> io::Result<()> {
        // SAFETY: `value` points to a live `T` of the size we pass; the kernel only reads it.
        let r = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                level,
                name,
                (value as *const T).cast(),
                size_of::<T>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Sends one message to the kernel (port 0).
    pub fn send(&self, msg: &[u8]) -> io::Result<()> {
        // SAFETY: sockaddr_nl is plain integers, for which all-zero bytes are a valid value;
        // the family is set next, and port id 0 addresses the kernel.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: `msg` and `addr` are valid for the lengths passed and outlive the call.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                msg.as_ptr().cast(),
                msg.len(),
                0,
                (&addr as *const libc::sockaddr_nl).cast(),
                size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if n as usize != msg.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "short netlink send",
            ));
        }
        Ok(())
    }

    /// Receives one datagram (one or more messages) into `buf`; its length.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            // SAFETY: `buf` is valid for writes of `buf.len()` bytes during the call.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_TRUNC,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let n = n as usize;
            if n > buf.len() {
                return Err(io::Error::from_raw_os_error(libc::EMSGSIZE));
            }
            return Ok(n);
        }
    }
}
