//! Temporaries: a file asdic creates under a name no one can guess, writes, syncs and then
//! publishes under its final name in one rename that does not replace what is there.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

use rustix::fs::OFlags;
use rustix::io::Errno;

use crate::dir::Dir;
use crate::error::{Error, Result};

/// How a temporary takes its final name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Publish {
    /// Only if nothing has the name (`RENAME_NOREPLACE`).
    NoReplace,
    /// Replacing what has the name (the operator said `--force`, or it is asdic's own
    /// snapshot): the entry is replaced, a link there is never followed.
    Replace,
}

/// A new file `.NAME.RANDOM.tmp` in a directory, for final name `NAME`; removed when dropped
/// unless it was published (or could not be, see [`Error::Kept`]).
#[derive(Debug)]
pub struct TempFile {
    dir: Dir,
    name: OsString,
    target: OsString,
    file: File,
    keep: bool,
}

/// A name for a temporary of `target`: hidden (dataset readers skip names starting with `.`),
/// with 64 random bits, and short enough for any file system (255 bytes).
fn temp_name(target: &OsStr) -> Result<OsString> {
    let mut r = [0u8; 8];
    getrandom::fill(&mut r).map_err(|e| Error::io(target, io::Error::other(e.to_string())))?;
    let b = target.as_bytes();
    let mut name = b".".to_vec();
    name.extend_from_slice(&b[..b.len().min(200)]);
    name.push(b'.');
    for x in r {
        name.extend_from_slice(format!("{x:02x}").as_bytes());
    }
    name.extend_from_slice(b".tmp");
    Ok(OsString::from_vec(name))
}

impl TempFile {
    /// Creates a temporary for `target` in `dir` (`O_CREAT | O_EXCL | O_NOFOLLOW`, mode 0666
    /// less the umask).
    ///
    /// # Errors
    /// [`Error::Io`] when it cannot be created (the directory is not writable, the disk full).
    pub fn new(dir: &Dir, target: &OsStr) -> Result<TempFile> {
        // 64 random bits: a name in use is as good as impossible, but never opened if it is.
        let mut tries = 0;
        loop {
            let name = temp_name(target)?;
            match dir.open_file(
                &name,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW,
            ) {
                Ok(fd) => {
                    return Ok(TempFile {
                        dir: dir.clone(),
                        name,
                        target: target.to_os_string(),
                        file: File::from(fd),
                        keep: false,
                    });
                }
                Err(Error::Io { source, .. })
                    if source.raw_os_error() == Some(Errno::EXIST.raw_os_error()) && tries < 3 =>
                {
                    tries += 1;
                }
                // Named by the file it is for: the temporary's name means nothing to a reader.
                Err(Error::Io { source, .. }) => {
                    return Err(Error::io(
                        dir.join(target),
                        io::Error::new(
                            source.kind(),
                            format!("cannot create files in {}: {source}", dir.path().display()),
                        ),
                    ));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The file.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The temporary's path (for messages).
    pub fn path(&self) -> PathBuf {
        self.dir.join(&self.name)
    }

    /// The final path.
    pub fn target(&self) -> PathBuf {
        self.dir.join(&self.target)
    }

    /// The directory it is in.
    pub fn dir(&self) -> &Dir {
        &self.dir
    }

    /// Syncs the file, renames it to its final name as `how` says, and syncs the directory:
    /// once this returns, the file is durable under its name. Returns the final path.
    ///
    /// # Errors
    /// [`Error::Io`] when syncing fails (the temporary is removed); [`Error::Kept`] when the
    /// rename fails (the final name appeared meanwhile): the temporary, holding everything,
    /// stays.
    pub fn publish(mut self, how: Publish) -> Result<PathBuf> {
        self.file.flush().map_err(|e| Error::io(self.path(), e))?;
        self.file
            .sync_all()
            .map_err(|e| Error::io(self.path(), e))?;
        if let Err(e) = self
            .dir
            .rename(&self.name, &self.target, how == Publish::Replace)
        {
            self.keep = true;
            return Err(Error::Kept {
                path: self.target(),
                kept: self.path(),
                source: e.into(),
            });
        }
        self.keep = true;
        self.dir.sync()?;
        Ok(self.target())
    }
}

impl Write for TempFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.file.write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.keep {
            // Best effort: there is no one to report to. It is the name asdic created.
            let _ = self.dir.remove(&self.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dir::tests::scratch;
    use std::os::unix::fs::symlink;

    #[test]
    fn a_temporary_is_published_without_replacing_and_gone_when_dropped() {
        let d = scratch("temp");
        let dir = Dir::open(&d).unwrap();
        let mut t = TempFile::new(&dir, OsStr::new("r.parquet")).unwrap();
        let tmp = t.path();
        let name = tmp.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with(".r.parquet.") && name.ends_with(".tmp"),
            "{name}"
        );
        t.write_all(b"results").unwrap();
        assert_eq!(t.publish(Publish::NoReplace).unwrap(), d.join("r.parquet"));
        assert!(!tmp.exists());
        assert_eq!(std::fs::read(d.join("r.parquet")).unwrap(), b"results");

        // The name exists now: not replaced, the new results kept.
        let mut t = TempFile::new(&dir, OsStr::new("r.parquet")).unwrap();
        t.write_all(b"second").unwrap();
        let e = t.publish(Publish::NoReplace).unwrap_err();
        let Error::Kept { kept, .. } = &e else {
            panic!("{e}")
        };
        assert_eq!(std::fs::read(kept).unwrap(), b"second");
        assert_eq!(std::fs::read(d.join("r.parquet")).unwrap(), b"results");
        std::fs::remove_file(kept).unwrap();

        // Replacing replaces a link there, never what it points to.
        std::fs::write(d.join("victim"), b"victim").unwrap();
        std::fs::remove_file(d.join("r.parquet")).unwrap();
        symlink(d.join("victim"), d.join("r.parquet")).unwrap();
        let mut t = TempFile::new(&dir, OsStr::new("r.parquet")).unwrap();
        t.write_all(b"third").unwrap();
        t.publish(Publish::Replace).unwrap();
        assert_eq!(std::fs::read(d.join("victim")).unwrap(), b"victim");
        assert_eq!(std::fs::read(d.join("r.parquet")).unwrap(), b"third");

        // Dropped: removed.
        let t = TempFile::new(&dir, OsStr::new("x")).unwrap();
        let tmp = t.path();
        assert!(tmp.exists());
        drop(t);
        assert!(!tmp.exists());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn temporary_names_are_unpredictable_and_short_enough() {
        let a = temp_name(OsStr::new("x")).unwrap();
        let b = temp_name(OsStr::new("x")).unwrap();
        assert_ne!(a, b);
        let long = "y".repeat(255);
        assert!(temp_name(OsStr::new(&long)).unwrap().len() <= 255);
    }
}
