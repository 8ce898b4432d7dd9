//! What an output name the operator gave resolves to, decided once and then held open: a new
//! name in a directory, an existing file the operator said to replace, or a stream.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use crate::dir::{Dir, may_follow};
use crate::error::{Error, Result};
use crate::temp::{Publish, TempFile};

/// Where an output name leads.
#[derive(Debug)]
pub enum Place {
    /// `-`: this process's standard output.
    Stdout,
    /// A FIFO, character device or socket, open for writing (without `O_TRUNC`).
    Stream(File),
    /// A name in a directory. `exists`: a regular file has it, and the operator said to
    /// replace it.
    Name {
        /// The directory, open.
        dir: Dir,
        /// The name in it.
        name: OsString,
        /// Whether a file has the name already (only with `force`).
        exists: bool,
    },
}

/// An output name, resolved (see [`Dest::resolve`]).
#[derive(Debug)]
pub struct Dest {
    path: PathBuf,
    place: Place,
}

fn kind(t: FileType) -> &'static str {
    match t {
        FileType::RegularFile => "a regular file",
        FileType::Directory => "a directory",
        FileType::Symlink => "a symbolic link",
        FileType::Fifo => "a FIFO",
        FileType::Socket => "a socket",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        FileType::Unknown => "a file of unknown type",
    }
}

fn is_stream(t: FileType) -> bool {
    matches!(
        t,
        FileType::Fifo | FileType::CharacterDevice | FileType::Socket
    )
}

impl Dest {
    /// Resolves `path` as an output: `-` is stdout; a FIFO, character device or socket (or a
    /// link to one that [`may_follow`] allows, such as `/dev/stdout`) is opened as a stream;
    /// a missing name is a new file; an existing regular file is refused unless `force`.
    /// Anything else (a directory, any other link, a block device, a special file planted by
    /// another user where others may write) is refused. The directory is opened and checked
    /// ([`Dir::open`]) and held from here on.
    ///
    /// # Errors
    /// The [`Error`] saying why, with `path`.
    pub fn resolve(path: &Path, force: bool) -> Result<Dest> {
        if path.as_os_str() == "-" {
            return Ok(Dest {
                path: path.to_path_buf(),
                place: Place::Stdout,
            });
        }
        let trailing_slash = path.as_os_str().as_bytes().last() == Some(&b'/');
        let (Some(name), false) = (path.file_name(), trailing_slash) else {
            return Err(Error::IsDir {
                path: path.to_path_buf(),
            });
        };
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let dir = Dir::open(parent)?;
        let place = Self::look(&dir, name, path, force)?;
        Ok(Dest {
            path: path.to_path_buf(),
            place,
        })
    }

    /// Resolves `name` in open directory `dir` as [`Dest::resolve`] does a path.
    ///
    /// # Errors
    /// As [`Dest::resolve`].
    pub fn in_dir(dir: &Dir, name: &OsStr, force: bool) -> Result<Dest> {
        let path = dir.join(name);
        let place = Self::look(dir, name, &path, force)?;
        Ok(Dest { path, place })
    }

    fn look(dir: &Dir, name: &OsStr, path: &Path, force: bool) -> Result<Place> {
        let new = |exists| Place::Name {
            dir: dir.clone(),
            name: name.to_os_string(),
            exists,
        };
        let Some(st) = dir.entry(name)? else {
            return Ok(new(false));
        };
        let refused = |what: String| Error::Refused {
            path: path.to_path_buf(),
            what,
        };
        let here = rustix::fs::fstat(dir.fd()).map_err(|e| Error::io(dir.path(), e))?;
        match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile if force => Ok(new(true)),
            FileType::RegularFile => Err(Error::Exists {
                path: path.to_path_buf(),
            }),
            FileType::Directory => Err(Error::IsDir {
                path: path.to_path_buf(),
            }),
            FileType::Symlink => {
                if let Some(why) = may_follow(&st, &here) {
                    return Err(Error::Symlink {
                        path: path.to_path_buf(),
                        why,
                    });
                }
                let to = match rustix::fs::statat(dir.fd(), name, AtFlags::empty()) {
                    Ok(to) => FileType::from_raw_mode(to.st_mode),
                    Err(Errno::NOENT) => FileType::Unknown,
                    Err(e) => return Err(Error::io(path, e)),
                };
                if !is_stream(to) {
                    return Err(Error::Symlink {
                        path: path.to_path_buf(),
                        why: match to {
                            FileType::Unknown => " to nothing".into(),
                            t => format!(" to {}", kind(t)),
                        },
                    });
                }
                open_stream(dir, name, path, true).map(Place::Stream)
            }
            t if is_stream(t) => {
                // As `fs.protected_fifos`: not one another user planted where others write.
                let (owner, dir_owner, mode): (u32, u32, u32) =
                    (st.st_uid, here.st_uid, here.st_mode);
                if mode & 0o022 != 0 && owner != 0 && owner != crate::euid() && owner != dir_owner {
                    return Err(refused(format!(
                        "{} owned by uid {owner} in a directory others may write",
                        kind(t)
                    )));
                }
                open_stream(dir, name, path, false).map(Place::Stream)
            }
            t => Err(refused(kind(t).into())),
        }
    }

    /// The path as given.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where it leads.
    pub fn place(&self) -> &Place {
        &self.place
    }

    /// Whether it is written as a stream (stdout, a FIFO, a device): no temporaries, no
    /// snapshots or parts beside it.
    pub fn is_stream(&self) -> bool {
        !matches!(self.place, Place::Name { .. })
    }

    /// Whether it is `-`.
    pub fn is_stdout(&self) -> bool {
        matches!(self.place, Place::Stdout)
    }

    /// The directory and the name `NAME{suffix}` beside it (a snapshot, the parts), for a
    /// name in a directory.
    pub fn sibling(&self, suffix: &str) -> Option<(Dir, OsString)> {
        match &self.place {
            Place::Name { dir, name, .. } => {
                let mut s = name.clone();
                s.push(suffix);
                Some((dir.clone(), s))
            }
            _ => None,
        }
    }

    /// Whether the operator said to replace an existing file at the name.
    pub fn replaces(&self) -> bool {
        matches!(self.place, Place::Name { exists: true, .. })
    }

    /// An output for a file written whole: a temporary published under the name by
    /// [`Output::commit`] (replacing only what `--force` allowed), or the stream.
    ///
    /// # Errors
    /// [`Error::Io`] when the temporary cannot be created.
    pub fn whole(self) -> Result<Output> {
        let inner = match self.place {
            Place::Stdout => Inner::Stdout(io::stdout()),
            Place::Stream(f) => Inner::Stream(f),
            Place::Name { dir, name, exists } => Inner::Temp(
                TempFile::new(&dir, &name)?,
                if exists {
                    Publish::Replace
                } else {
                    Publish::NoReplace
                },
            ),
        };
        Ok(Output {
            path: self.path,
            inner,
        })
    }

    /// An output for a file written as it goes (rows streamed to CSV, a status log): created
    /// under its name now, with `O_EXCL` (a file `--force` replaces is replaced now, by a new
    /// one renamed over it), or the stream.
    ///
    /// # Errors
    /// [`Error::Exists`] when the name was taken since it was resolved, [`Error::Io`].
    pub fn live(self) -> Result<Output> {
        let inner = match self.place {
            Place::Stdout => Inner::Stdout(io::stdout()),
            Place::Stream(f) => Inner::Stream(f),
            Place::Name {
                dir,
                name,
                exists: false,
            } => {
                let fd = dir
                    .open_file(&name, OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL)
                    .map_err(|e| match e {
                        Error::Io { source, .. }
                            if source.raw_os_error() == Some(Errno::EXIST.raw_os_error()) =>
                        {
                            Error::Exists {
                                path: self.path.clone(),
                            }
                        }
                        e => e,
                    })?;
                Inner::Live(File::from(fd))
            }
            Place::Name {
                dir,
                name,
                exists: true,
            } => {
                let t = TempFile::new(&dir, &name)?;
                let f = t.file().try_clone().map_err(|e| Error::io(t.path(), e))?;
                t.publish(Publish::Replace)?;
                Inner::Live(f)
            }
        };
        Ok(Output {
            path: self.path,
            inner,
        })
    }
}

/// Opens the stream `name` in `dir` for writing, following a link only when `follow`: never
/// truncated, never waited on (a FIFO without a reader is refused), and checked once open to
/// be a stream still.
fn open_stream(dir: &Dir, name: &OsStr, path: &Path, follow: bool) -> Result<File> {
    let mut flags = OFlags::WRONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    if !follow {
        flags |= OFlags::NOFOLLOW;
    }
    let fd = rustix::fs::openat(dir.fd(), name, flags, Mode::empty()).map_err(|e| match e {
        Errno::NXIO => Error::NoReader {
            path: path.to_path_buf(),
        },
        e => Error::io(path, e),
    })?;
    let st = rustix::fs::fstat(&fd).map_err(|e| Error::io(path, e))?;
    let t = FileType::from_raw_mode(st.st_mode);
    if !is_stream(t) {
        return Err(Error::Refused {
            path: path.to_path_buf(),
            what: format!("became {} while it was opened", kind(t)),
        });
    }
    // Writes block from here on, as on any stream.
    let fl = rustix::fs::fcntl_getfl(&fd).map_err(|e| Error::io(path, e))?;
    rustix::fs::fcntl_setfl(&fd, fl - OFlags::NONBLOCK).map_err(|e| Error::io(path, e))?;
    Ok(File::from(fd))
}

/// An output being written: see [`Dest::whole`] and [`Dest::live`].
#[derive(Debug)]
pub struct Output {
    path: PathBuf,
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    Stdout(io::Stdout),
    Stream(File),
    Temp(TempFile, Publish),
    Live(File),
}

impl Output {
    /// An output to temporary `t`, published as `how` says by [`Output::commit`]; `path` names
    /// it in messages.
    pub fn temp(t: TempFile, how: Publish, path: PathBuf) -> Output {
        Output {
            path,
            inner: Inner::Temp(t, how),
        }
    }

    /// The path as the operator gave it.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether it is a stream (stdout, a FIFO, a device).
    pub fn is_stream(&self) -> bool {
        matches!(self.inner, Inner::Stdout(_) | Inner::Stream(_))
    }

    /// Whether it is stdout.
    pub fn is_stdout(&self) -> bool {
        matches!(self.inner, Inner::Stdout(_))
    }

    /// Completes it: flushed, and a file synced (a temporary published under its name).
    ///
    /// # Errors
    /// [`Error::Io`] when flushing or syncing fails, [`Error::Kept`] when the temporary
    /// could not take its name (it is kept).
    pub fn commit(mut self) -> Result<()> {
        let path = self.path.clone();
        self.flush().map_err(|e| Error::io(&path, e))?;
        match self.inner {
            Inner::Stdout(_) | Inner::Stream(_) => Ok(()),
            Inner::Live(f) => f.sync_all().map_err(|e| Error::io(&path, e)),
            Inner::Temp(t, how) => t.publish(how).map(|_| ()),
        }
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.inner {
            Inner::Stdout(s) => s.write(buf),
            Inner::Stream(f) | Inner::Live(f) => f.write(buf),
            Inner::Temp(t, _) => t.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match &mut self.inner {
            Inner::Stdout(s) => s.write_all(buf),
            Inner::Stream(f) | Inner::Live(f) => f.write_all(buf),
            Inner::Temp(t, _) => t.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.inner {
            Inner::Stdout(s) => s.flush(),
            Inner::Stream(f) | Inner::Live(f) => f.flush(),
            Inner::Temp(t, _) => t.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dir::tests::scratch;
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, symlink};

    fn resolve(p: &Path, force: bool) -> Result<Dest> {
        Dest::resolve(p, force)
    }

    #[test]
    fn a_new_name_is_written_through_a_temporary_and_an_existing_one_needs_force() {
        let d = scratch("dest");
        let p = d.join("r.csv");
        let mut o = resolve(&p, false).unwrap().whole().unwrap();
        o.write_all(b"a,b\n").unwrap();
        assert!(!p.exists(), "published only by commit");
        o.commit().unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"a,b\n");
        assert_eq!(
            std::fs::read_dir(&d).unwrap().count(),
            1,
            "no temporary left"
        );

        let e = resolve(&p, false).unwrap_err();
        assert!(matches!(e, Error::Exists { .. }) && e.is_refusal(), "{e}");
        assert!(e.to_string().contains("--force"), "{e}");
        let dest = resolve(&p, true).unwrap();
        assert!(dest.replaces());
        let mut o = dest.whole().unwrap();
        o.write_all(b"new\n").unwrap();
        o.commit().unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new\n");

        // Live: created now, under its name.
        let live = d.join("s.jsonl");
        let mut o = resolve(&live, false).unwrap().live().unwrap();
        assert!(live.exists());
        o.write_all(b"{}\n").unwrap();
        o.commit().unwrap();
        let mut o = resolve(&live, true).unwrap().live().unwrap();
        assert_eq!(
            std::fs::read(&live).unwrap(),
            b"",
            "replaced at once by --force"
        );
        o.write_all(b"[]\n").unwrap();
        o.commit().unwrap();
        assert_eq!(std::fs::read(&live).unwrap(), b"[]\n");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn directories_links_and_block_devices_are_refused() {
        let d = scratch("refused");
        let e = resolve(&d, false).unwrap_err();
        assert!(matches!(e, Error::IsDir { .. }), "{e}");
        let e = resolve(Path::new(&format!("{}/new/", d.display())), false).unwrap_err();
        assert!(matches!(e, Error::IsDir { .. }), "{e}");
        std::fs::write(d.join("victim"), b"victim").unwrap();
        symlink(d.join("victim"), d.join("out.parquet")).unwrap();
        for force in [false, true] {
            let e = resolve(&d.join("out.parquet"), force).unwrap_err();
            assert!(matches!(e, Error::Symlink { .. }), "{e}");
            assert!(e.to_string().contains("to a regular file"), "{e}");
        }
        symlink(d.join("nothing"), d.join("dangling")).unwrap();
        let e = resolve(&d.join("dangling"), false).unwrap_err();
        assert!(e.to_string().contains("to nothing"), "{e}");
        assert_eq!(std::fs::read(d.join("victim")).unwrap(), b"victim");
        let e = resolve(&d.join("missing/x"), false).unwrap_err();
        assert!(matches!(e, Error::Io { .. }), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    fn mkfifo(p: &Path) {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            p,
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
    }

    #[test]
    fn a_fifo_is_a_stream_and_one_without_a_reader_is_refused_not_waited_on() {
        let d = scratch("fifo");
        let fifo = d.join("pipe");
        mkfifo(&fifo);
        let e = resolve(&fifo, false).unwrap_err();
        assert!(matches!(e, Error::NoReader { .. }), "{e}");

        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || {
                let mut s = vec![];
                std::fs::File::open(fifo)
                    .unwrap()
                    .read_to_end(&mut s)
                    .unwrap();
                s
            })
        };
        // The reader opens when it is scheduled: a few tries, at most a few seconds.
        let dest = (0..200)
            .find_map(|_| match resolve(&fifo, false) {
                Ok(d) => Some(d),
                Err(_) => {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                    None
                }
            })
            .expect("the reader opened the FIFO");
        assert!(dest.is_stream() && dest.sibling(".partial").is_none());
        let mut o = dest.whole().unwrap();
        o.write_all(b"streamed").unwrap();
        o.commit().unwrap();
        assert_eq!(reader.join().unwrap(), b"streamed");
        assert!(
            std::fs::metadata(&fifo).unwrap().file_type().is_fifo(),
            "still a FIFO"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_character_device_is_a_stream_and_stays_one() {
        assert!(resolve(Path::new("-"), false).unwrap().is_stdout());
        // A copy of /dev/null (1:3) in a scratch directory: tests never write under /dev.
        if crate::euid() != 0 {
            eprintln!("skipped: mknod of a character device needs root");
            return;
        }
        let d = scratch("chr");
        let node = d.join("null");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &node,
            FileType::CharacterDevice,
            Mode::from_raw_mode(0o666),
            rustix::fs::makedev(1, 3),
        )
        .unwrap();
        for force in [false, true] {
            let dest = resolve(&node, force).unwrap();
            assert!(dest.is_stream() && !dest.replaces());
            let mut o = dest.whole().unwrap();
            o.write_all(b"x").unwrap();
            o.commit().unwrap();
        }
        let link = d.join("via-link");
        symlink(&node, &link).unwrap();
        let mut o = resolve(&link, false).unwrap().live().unwrap();
        o.write_all(b"y").unwrap();
        o.commit().unwrap();
        assert!(
            std::fs::metadata(&node)
                .unwrap()
                .file_type()
                .is_char_device()
        );
        assert_eq!(
            std::fs::read_dir(&d).unwrap().count(),
            2,
            "nothing created beside it"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }
}
