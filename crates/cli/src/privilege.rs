//! Least privilege: once every engine is open the process drops all its capabilities; every
//! output is opened after that (`output`), so that nothing is written with a privilege the
//! run no longer needs, and a file the run cannot write is found before anything is sent.

use asdic_engine::caps;

/// Every engine of the run is open: drops every capability the process holds (nothing after
/// this point needs one: sockets, UMEM and XDP links are open, and closing them needs none)
/// before any thread starts, since capabilities are per thread. Returns whether
/// CAP_DAC_OVERRIDE was among them (to explain a refused permission).
pub fn drop_capabilities() -> bool {
    let held = caps::CapSet::effective().ok();
    if held.is_none_or(|c| !c.is_empty())
        && let Err(e) = caps::drop_all()
    {
        say!("asdic: warning: could not drop capabilities after setup: {e}");
    }
    held.is_some_and(|c| c.has(caps::Cap::DacOverride))
}

/// Why a permission was refused, when the run dropped CAP_DAC_OVERRIDE (`dropped_dac`): root
/// can no longer write into another user's directory, which it could when the run started.
pub fn why_denied(dropped_dac: bool) -> &'static str {
    if dropped_dac {
        "; asdic drops its capabilities once its engines are open (CAP_DAC_OVERRIDE too, \
         which lets root write anywhere): write to a directory its user owns or that is \
         world-writable and sticky (e.g. -o /var/tmp/NAME), or run asdic as yourself with the \
         capabilities `setcap` grants (README, Least privilege)"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use crate::output::open_fail;

    #[test]
    fn a_refused_permission_is_explained_only_after_the_drop() {
        let denied = || asdic_fs::Error::Io {
            path: "/srv/x/out.parquet".into(),
            source: std::io::ErrorKind::PermissionDenied.into(),
        };
        let m = open_fail("-o", denied(), true).to_string();
        assert!(m.starts_with("-o /srv/x/out.parquet: "), "{m}");
        assert!(m.contains("CAP_DAC_OVERRIDE"), "{m}");
        assert!(
            !open_fail("-o", denied(), false)
                .to_string()
                .contains("CAP_")
        );
        // Only a refused permission is explained by the dropped capability.
        let gone = asdic_fs::Error::Io {
            path: "/srv/x/out.parquet".into(),
            source: std::io::ErrorKind::NotFound.into(),
        };
        let m = open_fail("-o", gone, true);
        assert!(matches!(m, crate::Fail::Usage(_)));
        assert!(!m.to_string().contains("CAP_"), "{m}");
    }
}
