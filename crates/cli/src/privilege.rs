//! Least privilege: once every engine is open the process drops all its capabilities, and
//! checks right then that it can still create the files it will write.

use std::path::Path;

use asdic_engine::caps;

use crate::Fail;
use crate::inputs::random_u64;

/// Where a run creates files once it is under way: the directory, and the option and path
/// the operator gave (for the error).
pub struct Writes<'a> {
    /// The option, as the subcommand spells it (`-o`, `--output`).
    pub flag: &'static str,
    /// The path given with it.
    pub given: &'a Path,
    /// The directory files are created (and renamed) in.
    pub dir: &'a Path,
}

impl<'a> Writes<'a> {
    /// An output file: files are created beside it (`FILE.tmp`, `FILE.partial`).
    pub fn beside(flag: &'static str, file: &'a Path) -> Self {
        Writes {
            flag,
            given: file,
            dir: asdic_analysis::dir_of(file),
        }
    }

    /// An output directory: files are created in it.
    pub fn inside(flag: &'static str, dir: &'a Path) -> Self {
        Writes {
            flag,
            given: dir,
            dir,
        }
    }
}

/// Every engine of the run is open: drops every capability the process holds (nothing after
/// this point needs one: sockets, UMEM and XDP links are open, and closing them needs none)
/// before any thread starts, since capabilities are per thread; then checks that the output
/// can still be written (see [`check_writable`]).
pub fn drop_capabilities(writes: Option<Writes<'_>>) -> Result<(), Fail> {
    let held = caps::CapSet::effective().ok();
    if held.is_none_or(|c| !c.is_empty())
        && let Err(e) = caps::drop_all()
    {
        eprintln!("asdic: warning: could not drop capabilities after setup: {e}");
    }
    if let Some(w) = writes {
        let dropped_dac = held.is_some_and(|c| c.has(caps::Cap::DacOverride));
        check_writable(&w, dropped_dac)?;
    }
    Ok(())
}

/// Creates and removes a file in `w.dir`, so that an output that cannot be written is found
/// before anything is sent, not when the results are due. Root is the case in point: with
/// CAP_DAC_OVERRIDE dropped (`dropped_dac`) it can no longer write into another user's
/// directory, which it could when the run started.
pub fn check_writable(w: &Writes<'_>, dropped_dac: bool) -> Result<(), Fail> {
    let probe = w
        .dir
        .join(format!(".asdic-write-check-{:016x}", random_u64()));
    let e = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => return std::fs::remove_file(&probe).map_err(|e| file_error(w, e, false)),
        Err(e) => e,
    };
    Err(file_error(w, e, dropped_dac))
}

fn file_error(w: &Writes<'_>, e: std::io::Error, dropped_dac: bool) -> Fail {
    let why = if dropped_dac && e.kind() == std::io::ErrorKind::PermissionDenied {
        "; asdic drops its capabilities once its engines are open (CAP_DAC_OVERRIDE too, \
         which lets root write anywhere): write to a directory its user owns or that is \
         world-writable (e.g. -o /var/tmp/NAME), or run asdic as yourself with the \
         capabilities `setcap` grants (README, Least privilege)"
    } else {
        ""
    };
    let where_ = if w.dir == w.given {
        String::new()
    } else {
        format!(": cannot create files in {}", w.dir.display())
    };
    Fail::Usage(format!(
        "{} {}{where_}: {e}{why}",
        w.flag,
        w.given.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_output_directory_is_checked_by_writing_and_left_as_it_was() {
        let dir = std::env::temp_dir().join(format!("asdic-writable-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir); // from an earlier process with this pid
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("scan.parquet");
        check_writable(&Writes::beside("-o", &file), false).unwrap();
        check_writable(&Writes::inside("--output", &dir), true).unwrap();
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            0,
            "a probe file stayed"
        );

        let gone = dir.join("missing").join("scan.parquet");
        let e = check_writable(&Writes::beside("-o", &gone), true).unwrap_err();
        let m = e.to_string();
        assert!(matches!(e, Fail::Usage(_)), "{m}");
        assert!(
            m.starts_with(&format!(
                "-o {}: cannot create files in {}: ",
                gone.display(),
                dir.join("missing").display()
            )),
            "{m}"
        );
        // Only a refused permission is explained by the dropped capability.
        assert!(!m.contains("CAP_DAC_OVERRIDE"), "{m}");
        std::fs::remove_dir(&dir).unwrap();

        // A bare file name is written in the working directory.
        assert_eq!(
            Writes::beside("-o", Path::new("x.parquet")).dir,
            Path::new(".")
        );
    }
}
