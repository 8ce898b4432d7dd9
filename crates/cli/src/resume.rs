//! Resuming a scan: `asdic scan --resume PATH`, and a job runner's retry of a dataset
//! partition (`--dataset` with `--shard env`).
//!
//! Where the earlier run wrote is found and locked first (a `flock` on the directory
//! itself, held until this run ends: a replacement pod or a Slurm requeue never runs beside a
//! dying run of the same shard), then its parts are read back
//! ([`asdic_analysis::resume::EarlierScan`]). The scan's fingerprint ([`digest`]) must be the
//! earlier run's: rate, cooldown, probe size, sync interval and engine may change, nothing
//! that changes which addresses are probed in which order.

use std::ffi::{OsStr, OsString};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use asdic_analysis::resume::{EarlierScan, Fnv};
use asdic_analysis::{STOPPED, SUCCESS, part_names, parts_dir};
use asdic_core::permute::Cycle;
use asdic_core::space::Space;
use asdic_fs::Dir;

use crate::{Fail, usage};

/// Where the earlier run's results are.
#[derive(Debug)]
pub enum Place {
    /// The parts of `-o` file `out` (`<out>.parts`).
    File {
        /// The results file the run merges into.
        out: PathBuf,
        /// `out` itself is the earlier run's results (a stopped run's file): it becomes the
        /// first part once the run starts (after every check).
        stopped: bool,
    },
    /// A dataset partition (its parts are the results).
    Partition {
        /// The partition, open.
        dir: Dir,
    },
}

/// An earlier, unfinished run this one continues: where, what it left, and the lock.
#[derive(Debug)]
pub struct Resume {
    /// Where its results are (and this run's go).
    pub place: Place,
    /// What its parts' footers say.
    pub earlier: EarlierScan,
    /// Its parts' directory, open, and their names in order (their rows are read when the
    /// scan's space is known: [`asdic_analysis::resume::for_each_row`]).
    pub dir: Dir,
    /// The parts' names.
    pub names: Vec<OsString>,
    /// The lock on its directory, held for the run (closed, and so released, with it); a
    /// stopped run's file is locked once it is moved into its parts directory.
    pub _lock: Option<OwnedFd>,
}

/// What a dataset partition holds when a run of it starts.
#[derive(Debug)]
pub enum Partition {
    /// Missing or empty: a fresh run.
    Fresh,
    /// `_SUCCESS`: an earlier run finished it.
    Finished,
    /// Parts (or `_STOPPED`): an earlier run left it unfinished.
    Unfinished(Box<Resume>),
}

/// Takes the lock on `dir`, or says who has it.
fn lock(dir: &Dir) -> Result<OwnedFd, Fail> {
    dir.try_lock()
        .map_err(|e| usage(e.to_string()))?
        .ok_or_else(|| {
            usage(format!(
                "{}: another asdic holds it (a run of this scan is still going, e.g. a pod or \
                 job being replaced): wait for it to end",
                dir.path().display()
            ))
        })
}

/// Reads the earlier run's parts `names` in `dir`.
fn read(
    dir: &Dir,
    names: Vec<OsString>,
    place: Place,
    lock: Option<OwnedFd>,
) -> Result<Resume, Fail> {
    let earlier = EarlierScan::read(dir, &names).map_err(|e| usage(format!("--resume {e}")))?;
    Ok(Resume {
        place,
        earlier,
        dir: dir.clone(),
        names,
        _lock: lock,
    })
}

/// The partition `dir` of a dataset (`root/schema_version=2/run=…/shard=…`), when it
/// exists: locked, and what it holds.
///
/// # Errors
/// A usage error when another process holds it, or its parts cannot be read.
pub fn partition(dir: &Path) -> Result<Partition, Fail> {
    let Ok(d) = Dir::open(dir) else {
        return Ok(Partition::Fresh);
    };
    let held = lock(&d)?;
    let has = |n: &str| d.has(OsStr::new(n)).map_err(|e| usage(e.to_string()));
    if has(SUCCESS)? {
        return Ok(Partition::Finished);
    }
    let parts = part_names(&d).map_err(|e| usage(e.to_string()))?;
    if parts.is_empty() && !has(STOPPED)? {
        // Nothing of an earlier run: the lock is taken again when the run opens it.
        return Ok(Partition::Fresh);
    }
    let dir = d.clone();
    read(&d, parts, Place::Partition { dir }, Some(held))
        .map(|r| Partition::Unfinished(Box::new(r)))
}

/// The earlier run `--resume PATH` names: an `-o` file (or its `.parts` directory) whose
/// run was killed (parts, no file) or stopped (a file marked incomplete: it becomes the
/// first part again), or a dataset partition.
///
/// # Errors
/// A usage error naming what is missing or refused.
pub fn at(path: &Path) -> Result<Resume, Fail> {
    let given = path.as_os_str().to_string_lossy();
    let out = given
        .strip_suffix(".parts/")
        .or_else(|| given.strip_suffix(".parts"))
        .map(PathBuf::from);
    if out.is_none() && path.is_dir() {
        return match partition(path)? {
            Partition::Unfinished(r) => Ok(*r),
            Partition::Finished => Err(usage(format!(
                "--resume {}: finished (_SUCCESS): nothing to resume",
                path.display()
            ))),
            Partition::Fresh => Err(usage(format!(
                "--resume {}: holds no parts of a scan",
                path.display()
            ))),
        };
    }
    let out = out.unwrap_or_else(|| path.to_path_buf());
    let parts = parts_dir(&out);
    let fs = |e: asdic_fs::Error| usage(format!("--resume {e}"));
    if !parts.exists() {
        // A stopped run's file: read where it is; moved only once every check passed.
        let meta = asdic_analysis::RunMeta::read(&out).map_err(|e| {
            usage(format!(
                "--resume {}: neither its parts nor a stopped scan's file ({e})",
                out.display()
            ))
        })?;
        if meta.complete != Some(false) || meta.watermark.is_none() {
            return Err(usage(format!(
                "--resume {}: a finished scan's file (asdic.complete is not false): nothing \
                 to resume",
                out.display()
            )));
        }
        let (parent, name) = parent_and_name(&out)?;
        let names = vec![name.to_os_string()];
        return read(&parent, names, Place::File { out, stopped: true }, None);
    }
    let dir = Dir::open(&parts).map_err(fs)?;
    let held = lock(&dir)?;
    let names = part_names(&dir).map_err(|e| usage(format!("--resume {e}")))?;
    read(
        &dir,
        names,
        Place::File {
            out,
            stopped: false,
        },
        Some(held),
    )
}

/// The directory of file `out`, open, and its name.
fn parent_and_name(out: &Path) -> Result<(Dir, &OsStr), Fail> {
    let parent = Dir::open(asdic_analysis::dir_of(out)).map_err(|e| usage(e.to_string()))?;
    let name = out
        .file_name()
        .ok_or_else(|| usage(format!("--resume {}: not a file name", out.display())))?;
    Ok((parent, name))
}

/// A stopped run's file (`asdic.complete` false) becomes the first part of the resumed run:
/// moved, never copied, into a new `<out>.parts/` (never over anything there).
///
/// # Errors
/// A usage error naming the file when it cannot be moved.
pub fn stopped_file_to_part(out: &Path) -> Result<(), Fail> {
    let (parent, name) = parent_and_name(out)?;
    let mut parts = name.to_os_string();
    parts.push(".parts");
    let into = parent
        .create_dir(&parts)
        .map_err(|e| usage(e.to_string()))?;
    parent
        .rename_into(name, &into, OsStr::new("part-000000.parquet"))
        .map_err(|e| {
            usage(format!(
                "--resume {}: moving it into {}: {e}",
                out.display(),
                into.path().display()
            ))
        })?;
    let _ = into.sync();
    let _ = parent.sync();
    Ok(())
}

/// A scan's fingerprint: per family its resolved space ([`Space::feed`]) and permutation
/// (size, prime, generator, start), then the shard, the retries and `words` (TTL, outcome
/// filter…), as 16 hex digits.
pub fn digest<'a>(
    families: impl IntoIterator<Item = (&'a Space, &'a Cycle)>,
    words: &[u128],
) -> String {
    let mut h = Fnv::default();
    for (space, cycle) in families {
        space.feed(&mut |w| h.word(w));
        for w in [cycle.len(), cycle.prime(), cycle.generator(), cycle.start()] {
            h.word(u128::from(w));
        }
    }
    for &w in words {
        h.word(w);
    }
    h.hex()
}
