//! Loading one of our embedded objects: its maps created, their references patched into
//! the program, the program loaded, all without the kernel's BTF.
//!
//! aya's `EbpfLoader` reads and parses `/sys/kernel/btf/vmlinux` (5.5 MB here) before it
//! can be told not to, for CO-RE relocations our programs do not have: about 9 MiB of a
//! scan's peak memory (issue 17). Here aya-obj parses the ELF (maps from `.maps`, the
//! program, its relocations), aya creates the maps and gives them its typed views, and the
//! program is loaded with one `bpf(2)` call in `sys`.

use std::collections::{HashMap, HashSet};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use aya::maps::{Map, MapData};
use aya_obj::Object;
use aya_obj::generated::bpf_insn;

use crate::error::{Errno, XdpError};
use crate::sys;

/// The verifier log asked for when a load fails, to say why (the end is what matters).
const LOG_BYTES: usize = 1 << 20;

/// An object's maps, by name.
#[derive(Debug, Default)]
pub(crate) struct Maps(HashMap<String, Map>);

impl Maps {
    /// Map `name`, if the object has it.
    pub(crate) fn get(&self, name: &str) -> Option<&Map> {
        self.0.get(name)
    }

    /// Map `name`, if the object has it, to change.
    pub(crate) fn get_mut(&mut self, name: &str) -> Option<&mut Map> {
        self.0.get_mut(name)
    }
}

/// An object's maps and its one loaded program (not attached).
#[derive(Debug)]
pub(crate) struct Loaded {
    pub(crate) maps: Maps,
    prog: OwnedFd,
}

fn load_err(what: String, errno: Option<Errno>, detail: String) -> XdpError {
    XdpError::Load {
        what,
        errno,
        detail,
    }
}

/// The kernel's layout of one instruction: opcode, dst (low nibble) and src registers,
/// offset, immediate (little-endian fields on a little-endian host, as the kernel wants).
fn encode(i: &bpf_insn) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[0] = i.code;
    let (dst, src) = (i.dst_reg() & 0xf, i.src_reg() & 0xf);
    b[1] = if cfg!(target_endian = "little") {
        dst | (src << 4)
    } else {
        (dst << 4) | src
    };
    b[2..4].copy_from_slice(&i.off.to_ne_bytes());
    b[4..8].copy_from_slice(&i.imm.to_ne_bytes());
    b
}

impl Loaded {
    /// Parses `object`, creates its maps, lets `configure` fill them, and loads program
    /// `prog` (an XDP program named after its function).
    pub(crate) fn load(
        object: &[u8],
        prog: &'static str,
        configure: impl FnOnce(&mut Maps) -> Result<(), XdpError>,
        verifier_tail: impl Fn(&str) -> String,
    ) -> Result<Loaded, XdpError> {
        let whole = |e: &dyn std::fmt::Display| {
            load_err(format!("the {prog} object"), None, format!(" ({e})"))
        };
        let map_err = |name: &str, e: &aya::maps::MapError| {
            load_err(format!("map {name}"), Errno::of(e), format!(" ({e})"))
        };
        let mut obj = Object::parse(object).map_err(|e| whole(&e))?;
        // Each map: its name, its definition (the relocations name it) and the kernel's map.
        let mut created = vec![];
        for (name, mut def) in obj.maps.drain() {
            // Without the object's BTF in the kernel, a map cannot name BTF types: sizes
            // alone describe it (what the kernel needs; BTF would only add pretty-printing).
            if let aya_obj::Map::Btf(m) = &mut def {
                m.def.btf_key_type_id = 0;
                m.def.btf_value_type_id = 0;
            }
            let data = MapData::create(def.clone(), &name, None).map_err(|e| map_err(&name, &e))?;
            created.push((name, def, data));
        }
        let text: HashSet<usize> = obj.functions.keys().map(|(section, _)| *section).collect();
        obj.relocate_maps(
            created
                .iter()
                .map(|(name, def, data)| (name.as_str(), data.fd().as_fd().as_raw_fd(), def)),
            &text,
        )
        .map_err(|e| whole(&e))?;
        obj.relocate_calls(&text).map_err(|e| whole(&e))?;
        let program = obj
            .programs
            .get(prog)
            .ok_or_else(|| XdpError::Config(format!("the object has no program {prog}")))?;
        let insns: Vec<[u8; 8]> = obj
            .functions
            .get(&program.function_key())
            .ok_or_else(|| XdpError::Config(format!("the object has no code for {prog}")))?
            .instructions
            .iter()
            .map(encode)
            .collect();
        let license = &program.license;
        let mut typed = Maps::default();
        for (name, _, data) in created {
            let map = Map::from_map_data(data).map_err(|e| map_err(&name, &e))?;
            typed.0.insert(name, map);
        }
        configure(&mut typed)?;
        let prog = match sys::prog_load_xdp(&insns, license, prog, None) {
            Ok(fd) => fd,
            Err(first) => {
                // Again with the verifier's log, to say why.
                let mut log = vec![0u8; LOG_BYTES];
                let e = sys::prog_load_xdp(&insns, license, prog, Some(&mut log))
                    .err()
                    .unwrap_or(first);
                let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
                let tail = verifier_tail(&String::from_utf8_lossy(&log[..end]));
                let detail = if tail.is_empty() {
                    String::new()
                } else {
                    format!("; verifier: {tail}")
                };
                return Err(load_err(
                    prog.to_string(),
                    e.raw_os_error().map(Errno),
                    detail,
                ));
            }
        };
        Ok(Loaded { maps: typed, prog })
    }

    /// The loaded program's descriptor.
    pub(crate) fn prog(&self) -> BorrowedFd<'_> {
        self.prog.as_fd()
    }
}
