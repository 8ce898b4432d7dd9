//! Loading an embedded object and attaching its XDP program through a bpf_link, after
//! looking at what the interface already carries: a leftover of our own program attached
//! the legacy (netlink) way is removed and reported, a live link of ours is refused as
//! busy, anything else is refused and left alone.
//!
//! "Our own" is told by a mark, not a name: each of our programs looks up a one-entry array
//! map `asdic_marker` that the loader fills with the program's constant
//! ([`crate::filter::FILTER_MARKER`], [`crate::responder::RESPONDER_MARKER`]), so the map is
//! among the program's `map_ids`. A foreign program that happens to be named `asdic_filter`
//! has no such map and is left alone.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use aya::maps::{Array, Map, MapData, MapInfo};

use crate::error::{Errno, XdpError};
use crate::netlink::{self, AttachMode, Reply};
use crate::object::{Loaded, Maps};
use crate::sys;
use crate::{AttachedProgram, Mode};
use asdic_netlink::{RouteSocket, next_seq};

/// The index of `ifname`, or [`XdpError::NoSuchInterface`].
pub(crate) fn ifindex(ifname: &str) -> Result<u32, XdpError> {
    sys::if_nametoindex(ifname).map_err(|_| XdpError::NoSuchInterface(ifname.to_string()))
}

fn netlink_err(op: &'static str, ifname: &str, e: &std::io::Error) -> XdpError {
    XdpError::Netlink {
        op,
        ifname: ifname.to_string(),
        errno: e.raw_os_error().map(Errno),
        msg: None,
    }
}

/// The XDP programs on interface `ifindex`, with their names.
pub(crate) fn attached(ifname: &str, ifindex: u32) -> Result<Vec<AttachedProgram>, XdpError> {
    let sock = RouteSocket::open().map_err(|e| netlink_err("socket", ifname, &e))?;
    let seq = next_seq();
    let reply = netlink::request(&sock, seq, &netlink::getlink_request(seq, ifindex))
        .map_err(|e| netlink_err("RTM_GETLINK", ifname, &e))?;
    let progs = match reply {
        Reply::Link(p) => p,
        Reply::Error(k) if k.errno == libc::ENODEV => {
            return Err(XdpError::NoSuchInterface(ifname.to_string()));
        }
        Reply::Error(k) => {
            return Err(XdpError::Netlink {
                op: "RTM_GETLINK",
                ifname: ifname.to_string(),
                errno: Some(Errno(k.errno)),
                msg: k.msg,
            });
        }
        Reply::Ack | Reply::Other => vec![],
    };
    Ok(progs
        .into_iter()
        .map(|(mode, id)| AttachedProgram {
            id,
            name: program_name(id).unwrap_or_else(|| "?".into()),
            mode,
        })
        .collect())
}

/// The name of loaded program `id`, if it can be read.
fn program_name(id: u32) -> Option<String> {
    aya::programs::loaded_programs()
        .flatten()
        .find(|p| p.id() == id)
        .and_then(|p| p.name_as_str().map(str::to_string))
}

/// The name of the map that marks our programs.
pub(crate) const MARKER_MAP: &str = "asdic_marker";

/// Writes `marker` into the object's `asdic_marker` map (before the program loads).
pub(crate) fn write_marker(maps: &mut Maps, marker: u64) -> Result<(), XdpError> {
    let map = maps
        .get_mut(MARKER_MAP)
        .ok_or_else(|| XdpError::Config(format!("the object has no map {MARKER_MAP}")))?;
    let mut m: Array<&mut MapData, u64> = Array::try_from(map)
        .map_err(|e| crate::filter::map_err(format!("{MARKER_MAP}: open"), &e))?;
    m.set(0, marker, 0)
        .map_err(|e| crate::filter::map_err(format!("{MARKER_MAP}: write the marker"), &e))
}

/// Writes a program's configuration `value` into slot 0 of its array map `name`, then its
/// `marker` ([`write_marker`]): what the filter and the responder do before they load.
pub(crate) fn configure<const N: usize>(
    maps: &mut Maps,
    name: &str,
    value: [u8; N],
    marker: u64,
) -> Result<(), XdpError> {
    let map = maps
        .get_mut(name)
        .ok_or_else(|| XdpError::Config(format!("the object has no map {name}")))?;
    let mut cfg: Array<&mut MapData, [u8; N]> =
        Array::try_from(map).map_err(|e| crate::filter::map_err(format!("{name}: open"), &e))?;
    cfg.set(0, value, 0)
        .map_err(|e| crate::filter::map_err(format!("{name}: write the configuration"), &e))?;
    write_marker(maps, marker)
}

/// Whether loaded program `id` carries `marker`: one of its maps is an `asdic_marker` array
/// of one u64 holding it. Anything that cannot be read says no (the program is then foreign
/// and left alone).
fn has_marker(id: u32, marker: u64) -> bool {
    let Some(info) = aya::programs::loaded_programs()
        .flatten()
        .find(|p| p.id() == id)
    else {
        return false;
    };
    let Ok(Some(maps)) = info.map_ids() else {
        return false;
    };
    maps.into_iter().any(|map_id| {
        let named = MapInfo::from_id(map_id)
            .ok()
            .is_some_and(|m| m.name_as_str() == Some(MARKER_MAP));
        if !named {
            return false;
        }
        let Ok(data) = MapData::from_id(map_id) else {
            return false;
        };
        let Ok(map) = Map::from_map_data(data) else {
            return false;
        };
        let Ok(arr) = Array::<MapData, u64>::try_from(map) else {
            return false;
        };
        arr.get(&0, 0).is_ok_and(|v| v == marker)
    })
}

/// Writes `marker` into the `asdic_marker` map of loaded program `id`: what our loader does
/// before loading, done afterwards to a program loaded from our object by another loader
/// (`ip link set xdp obj …`), which leaves the map at zero. For tests.
pub(crate) fn mark_loaded(id: u32, marker: u64) -> Result<(), XdpError> {
    let info = aya::programs::loaded_programs()
        .flatten()
        .find(|p| p.id() == id)
        .ok_or_else(|| XdpError::Config(format!("no loaded program {id}")))?;
    let maps = info
        .map_ids()
        .ok()
        .flatten()
        .ok_or_else(|| XdpError::Config(format!("program {id}: no map ids")))?;
    for map_id in maps {
        if MapInfo::from_id(map_id)
            .ok()
            .is_none_or(|m| m.name_as_str() != Some(MARKER_MAP))
        {
            continue;
        }
        let data = MapData::from_id(map_id)
            .map_err(|e| crate::filter::map_err(format!("map {map_id}"), &e))?;
        let map = Map::from_map_data(data)
            .map_err(|e| crate::filter::map_err(format!("map {map_id}"), &e))?;
        let mut arr = Array::<MapData, u64>::try_from(map)
            .map_err(|e| crate::filter::map_err(format!("map {map_id}"), &e))?;
        return arr
            .set(0, marker, 0)
            .map_err(|e| crate::filter::map_err(format!("map {map_id}: set"), &e));
    }
    Err(XdpError::Config(format!(
        "program {id} has no {MARKER_MAP}"
    )))
}

/// Clears the way for `ours` (whose programs carry `marker`) on `ifname`: see the module doc.
/// Returns the note to report when a leftover was removed.
pub(crate) fn clear_leftover(
    ifname: &str,
    ifindex: u32,
    ours: &'static str,
    marker: u64,
) -> Result<Option<String>, XdpError> {
    let mut notes = vec![];
    for p in attached(ifname, ifindex)? {
        if !has_marker(p.id, marker) {
            return Err(XdpError::Foreign {
                ifname: ifname.to_string(),
                name: p.name,
                id: p.id,
                mode: p.mode,
                ours,
            });
        }
        detach_legacy(ifname, ifindex, &p, ours)?;
        notes.push(format!(
            "removed a leftover {ours} (prog id {}, {}) from {ifname}, attached the legacy (netlink) way by an earlier run",
            p.id, p.mode
        ));
    }
    Ok((!notes.is_empty()).then(|| notes.join("; ")))
}

/// Removes program `p` from the interface through netlink, only if it is still `p`
/// (`XDP_FLAGS_REPLACE` with an fd of `p`).
fn detach_legacy(
    ifname: &str,
    ifindex: u32,
    p: &AttachedProgram,
    ours: &'static str,
) -> Result<(), XdpError> {
    let Some(info) = aya::programs::loaded_programs()
        .flatten()
        .find(|i| i.id() == p.id)
    else {
        // Gone meanwhile: nothing to remove.
        return Ok(());
    };
    let fd = info.fd().map_err(|e| XdpError::Netlink {
        op: "BPF_PROG_GET_FD_BY_ID",
        ifname: ifname.to_string(),
        errno: Errno::of(&e),
        msg: None,
    })?;
    let sock = RouteSocket::open().map_err(|e| netlink_err("socket", ifname, &e))?;
    let seq = next_seq();
    let req = netlink::detach_request(seq, ifindex, p.mode, fd.as_fd().as_raw_fd());
    match netlink::request(&sock, seq, &req)
        .map_err(|e| netlink_err("RTM_SETLINK (detach)", ifname, &e))?
    {
        Reply::Ack => Ok(()),
        Reply::Error(k) if k.errno == libc::EBUSY => Err(XdpError::Busy {
            name: ours.to_string(),
            id: p.id,
            ifname: ifname.to_string(),
        }),
        Reply::Error(k) => Err(XdpError::Netlink {
            op: "RTM_SETLINK (detach)",
            ifname: ifname.to_string(),
            errno: Some(Errno(k.errno)),
            msg: k.msg,
        }),
        Reply::Link(_) | Reply::Other => Ok(()),
    }
}

/// A loaded object with its program attached.
#[derive(Debug)]
pub(crate) struct Attached {
    /// The bpf_link holding the program on the interface: closed first, on drop.
    _link: OwnedFd,
    pub loaded: Loaded,
    pub mode: Mode,
    pub ifindex: u32,
    pub replaced: Option<String>,
}

/// The verifier's last words before its statistics ("processed N insns", "verification
/// time", "stack depth", …): the line that says why, and the one before it.
pub(crate) fn verifier_tail(log: &str) -> String {
    let stats = |l: &str| {
        l.starts_with("processed ")
            || l.starts_with("verification time")
            || l.starts_with("stack depth")
            || l.trim().is_empty()
    };
    let mut last: Vec<&str> = log.lines().rev().filter(|l| !stats(l)).take(2).collect();
    last.reverse();
    last.join(" / ")
}

/// Loads `object`, lets `configure` fill its maps (the marker too: [`write_marker`]), loads
/// program `prog`, clears the interface (see [`clear_leftover`]: leftovers carrying `marker`)
/// and attaches: `mode` None = native, then generic.
pub(crate) fn load_and_attach(
    object: &[u8],
    prog: &'static str,
    marker: u64,
    ifname: &str,
    mode: Option<Mode>,
    configure: impl FnOnce(&mut Maps) -> Result<(), XdpError>,
) -> Result<Attached, XdpError> {
    let ifindex = ifindex(ifname)?;
    let loaded = Loaded::load(object, prog, configure, verifier_tail)?;
    let replaced = clear_leftover(ifname, ifindex, prog, marker)?;

    let modes: &[Mode] = match mode {
        None => &[Mode::Native, Mode::Generic],
        Some(Mode::Native) => &[Mode::Native],
        Some(Mode::Generic) => &[Mode::Generic],
    };
    let mut attempts = vec![];
    for &m in modes {
        let flags = match m {
            Mode::Native => sys::XDP_FLAGS_DRV_MODE,
            Mode::Generic => sys::XDP_FLAGS_SKB_MODE,
        };
        match sys::xdp_link_create(loaded.prog(), ifindex, flags) {
            Ok(link) => {
                return Ok(Attached {
                    _link: link,
                    loaded,
                    mode: m,
                    ifindex,
                    replaced,
                });
            }
            Err(e) => attempts.push((m, e.raw_os_error().map(Errno))),
        }
    }
    Err(XdpError::Attach {
        ifname: ifname.to_string(),
        attempts,
    })
}

impl From<Mode> for AttachMode {
    fn from(m: Mode) -> AttachMode {
        match m {
            Mode::Native => AttachMode::Native,
            Mode::Generic => AttachMode::Generic,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::verifier_tail;

    #[test]
    fn verifier_tail_skips_the_statistics() {
        let log = "0: R1=ctx() R10=fp0\n50: (0f) r4 += r3\nR4 pointer arithmetic prohibited\n\
                   processed 50 insns (limit 1000000) max_states_per_insn 0\n\
                   verification time 446 usec\nstack depth 8\n";
        assert_eq!(
            verifier_tail(log),
            "50: (0f) r4 += r3 / R4 pointer arithmetic prohibited"
        );
        assert_eq!(verifier_tail(""), "");
    }
}
