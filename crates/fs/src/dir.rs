//! Directories asdic writes in, opened once and then used only through their descriptor:
//! every file asdic creates, renames or removes is a single name under that descriptor, so no
//! later change to the path above it (a directory swapped for a symlink) redirects a write.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Stat};
use rustix::io::Errno;

use crate::error::{Error, Result};

/// The kernel's own limit on symbolic links followed in one lookup.
const MAX_LINKS: usize = 40;
const S_IWGRP: u32 = 0o020;
const S_IWOTH: u32 = 0o002;
const S_ISVTX: u32 = 0o1000;

/// An open directory, and the path it was opened by (for messages).
#[derive(Debug, Clone)]
pub struct Dir {
    fd: Arc<OwnedFd>,
    path: PathBuf,
}

/// Whether a stat is of a directory others may write into.
fn others_write(st: &Stat) -> bool {
    let mode: u32 = st.st_mode;
    mode & (S_IWGRP | S_IWOTH) != 0
}

impl Dir {
    /// Opens directory `path` to create files in. Symbolic links along `path` are followed
    /// only where the kernel's `fs.protected_symlinks` would follow them (see
    /// [`may_follow`]); the directory reached is then checked ([`Dir::check`]).
    ///
    /// # Errors
    /// [`Error::Symlink`] for a link not followed, [`Error::UnsafeDir`] (see
    /// [`Dir::check`]), [`Error::Io`] when a component is missing or not a directory.
    pub fn open(path: &Path) -> Result<Dir> {
        Self::walk(path, false)
    }

    /// As [`Dir::open`], creating the missing directories (mode 0777 less the umask).
    ///
    /// # Errors
    /// As [`Dir::open`], and [`Error::Io`] when a directory cannot be created.
    pub fn create_all(path: &Path) -> Result<Dir> {
        Self::walk(path, true)
    }

    fn walk(path: &Path, create: bool) -> Result<Dir> {
        let io = |e: Errno| Error::io(path, e);
        if path.as_os_str().is_empty() {
            return Err(Error::io(path, Errno::NOENT));
        }
        let mut todo = components(path);
        let mut cur =
            open_path(rustix::fs::CWD, if path.is_absolute() { "/" } else { "." }).map_err(io)?;
        let mut links = 0;
        while let Some(name) = todo.pop_front() {
            let st = match rustix::fs::statat(&cur, &name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(Errno::NOENT) if create => {
                    match rustix::fs::mkdirat(&cur, &name, Mode::from_raw_mode(0o777)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(io(e)),
                    }
                    todo.push_front(name);
                    continue;
                }
                Err(e) => return Err(io(e)),
            };
            match FileType::from_raw_mode(st.st_mode) {
                FileType::Symlink => {
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(io(Errno::LOOP));
                    }
                    let parent = rustix::fs::fstat(&cur).map_err(io)?;
                    if let Some(why) = may_follow(&st, &parent) {
                        return Err(Error::Symlink {
                            path: path.to_path_buf(),
                            why,
                        });
                    }
                    let target = rustix::fs::readlinkat(&cur, &name, Vec::new()).map_err(io)?;
                    let target = Path::new(OsStr::from_bytes(target.as_bytes()));
                    let mut more = components(target);
                    more.extend(todo);
                    todo = more;
                    if target.is_absolute() {
                        cur = open_path(rustix::fs::CWD, "/").map_err(io)?;
                    }
                }
                FileType::Directory => {
                    cur = open_path(&cur, &name).map_err(io)?;
                }
                _ => return Err(io(Errno::NOTDIR)),
            }
        }
        // A descriptor that can be read (listed, synced); a directory asdic may search and
        // write but not list keeps its path-only one.
        let fd = rustix::fs::openat(
            &cur,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .unwrap_or(cur);
        let dir = Dir {
            fd: Arc::new(fd),
            path: path.to_path_buf(),
        };
        dir.check()?;
        Ok(dir)
    }

    /// Refuses a directory anyone may write into without the sticky bit, unless it belongs to
    /// root or to this user: its owner, or anyone, could rename what asdic writes there and
    /// put something else in its place. A sticky directory (`/tmp`) and a group-writable one
    /// (a Kubernetes fsGroup volume, `root:GID` mode 2775) pass.
    ///
    /// # Errors
    /// [`Error::UnsafeDir`], or [`Error::Io`] if it cannot be examined.
    pub fn check(&self) -> Result<()> {
        let st = rustix::fs::fstat(self.fd.as_fd()).map_err(|e| Error::io(&self.path, e))?;
        let (mode, uid): (u32, u32) = (st.st_mode, st.st_uid);
        if mode & S_IWOTH != 0 && mode & S_ISVTX == 0 && uid != 0 && uid != crate::euid() {
            return Err(Error::UnsafeDir {
                path: self.path.clone(),
                uid,
            });
        }
        Ok(())
    }

    /// The path it was opened by.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path of `name` in it (for messages).
    pub fn join(&self, name: impl AsRef<OsStr>) -> PathBuf {
        if self.path == Path::new(".") {
            return PathBuf::from(name.as_ref());
        }
        self.path.join(name.as_ref())
    }

    /// The descriptor.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// What `name` is, not following a symbolic link; `None` when there is nothing.
    ///
    /// # Errors
    /// [`Error::Io`] when it cannot be examined.
    pub fn entry(&self, name: &OsStr) -> Result<Option<Stat>> {
        match rustix::fs::statat(self.fd(), name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(st)),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(Error::io(self.join(name), e)),
        }
    }

    /// Whether `name` exists (as anything, a dangling link included).
    ///
    /// # Errors
    /// [`Error::Io`] when it cannot be examined.
    pub fn has(&self, name: &OsStr) -> Result<bool> {
        Ok(self.entry(name)?.is_some())
    }

    /// Creates directory `name` in it, which must not exist (the parts of a run, claimed by
    /// creating them).
    ///
    /// # Errors
    /// [`Error::Exists`] when something has the name, [`Error::Io`] otherwise.
    pub fn create_dir(&self, name: &OsStr) -> Result<Dir> {
        single(name, &self.path)?;
        match rustix::fs::mkdirat(self.fd(), name, Mode::from_raw_mode(0o777)) {
            Ok(()) => {}
            Err(Errno::EXIST) => {
                return Err(Error::Exists {
                    path: self.join(name),
                });
            }
            Err(e) => return Err(Error::io(self.join(name), e)),
        }
        self.subdir(name, false)
    }

    /// Directory `name` in it, created when missing and `create`; an existing one must be a
    /// directory itself (not a link to one) and pass [`Dir::check`].
    ///
    /// # Errors
    /// [`Error::Symlink`] for a link, [`Error::Io`] for anything else that is not a directory
    /// or cannot be created, [`Error::UnsafeDir`].
    pub fn subdir(&self, name: &OsStr, create: bool) -> Result<Dir> {
        single(name, &self.path)?;
        let path = self.join(name);
        if create {
            match rustix::fs::mkdirat(self.fd(), name, Mode::from_raw_mode(0o777)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(Error::io(path, e)),
            }
        }
        let fd = open_beneath(
            self.fd(),
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| self.failed(name, e))?;
        let dir = Dir {
            fd: Arc::new(fd),
            path,
        };
        dir.check()?;
        Ok(dir)
    }

    /// Opens file `name` in it with `flags` (`O_NOFOLLOW` and `O_CLOEXEC` added), mode 0666
    /// less the umask when created.
    ///
    /// # Errors
    /// [`Error::Symlink`] when `name` is a link, [`Error::Io`] otherwise.
    pub fn open_file(&self, name: &OsStr, flags: OFlags) -> Result<OwnedFd> {
        single(name, &self.path)?;
        // openat2 takes a mode only with O_CREAT.
        let mode = if flags.contains(OFlags::CREATE) {
            Mode::from_raw_mode(0o666)
        } else {
            Mode::empty()
        };
        open_beneath(
            self.fd(),
            name,
            flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            mode,
        )
        .map_err(|e| self.failed(name, e))
    }

    /// The error of opening `name`: a link there is named as one (the kernel says ELOOP,
    /// EXDEV or ENOTDIR, depending on the flags).
    fn failed(&self, name: &OsStr, e: Errno) -> Error {
        let link = matches!(
            self.entry(name),
            Ok(Some(st)) if FileType::from_raw_mode(st.st_mode) == FileType::Symlink
        );
        if link {
            Error::Symlink {
                path: self.join(name),
                why: String::new(),
            }
        } else {
            Error::io(self.join(name), e)
        }
    }

    /// Takes an exclusive lock on the directory itself (`flock` on a descriptor of its own,
    /// no file created): held while the returned descriptor is open, and released when the
    /// process ends, however it ends; `None` when another process (or descriptor) holds it.
    ///
    /// # Errors
    /// [`Error::Io`] if the directory cannot be opened again or locking fails otherwise.
    pub fn try_lock(&self) -> Result<Option<OwnedFd>> {
        let fd = rustix::fs::openat(
            self.fd(),
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::io(self.path.clone(), e))?;
        match rustix::fs::flock(&fd, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Some(fd)),
            Err(Errno::WOULDBLOCK) => Ok(None),
            Err(e) => Err(Error::io(self.path.clone(), e)),
        }
    }

    /// Moves file `from` in it to `to` in directory `into` (the same file system), never
    /// replacing a file there.
    ///
    /// # Errors
    /// The system error ([`Errno::EXIST`] when `to` exists).
    pub fn rename_into(
        &self,
        from: &OsStr,
        into: &Dir,
        to: &OsStr,
    ) -> core::result::Result<(), Errno> {
        rustix::fs::renameat_with(
            self.fd(),
            from,
            into.fd(),
            to,
            rustix::fs::RenameFlags::NOREPLACE,
        )
    }

    /// Opens file `name` for reading, not following a link.
    ///
    /// # Errors
    /// As [`Dir::open_file`].
    pub fn read_file(&self, name: &OsStr) -> Result<std::fs::File> {
        self.open_file(name, OFlags::RDONLY)
            .map(std::fs::File::from)
    }

    /// Removes file `name` (best effort callers ignore the error).
    ///
    /// # Errors
    /// [`Error::Io`].
    pub fn remove(&self, name: &OsStr) -> Result<()> {
        rustix::fs::unlinkat(self.fd(), name, AtFlags::empty())
            .map_err(|e| Error::io(self.join(name), e))
    }

    /// Removes empty directory `name`.
    ///
    /// # Errors
    /// [`Error::Io`], e.g. when it is not empty.
    pub fn remove_dir(&self, name: &OsStr) -> Result<()> {
        rustix::fs::unlinkat(self.fd(), name, AtFlags::REMOVEDIR)
            .map_err(|e| Error::io(self.join(name), e))
    }

    /// Renames `from` to `to` in it. `replace`: an existing `to` is replaced (the entry
    /// itself: a link there is replaced, never followed); otherwise an existing `to` fails
    /// with [`Errno::EXIST`] and nothing changes.
    ///
    /// # Errors
    /// The system error.
    pub fn rename(
        &self,
        from: &OsStr,
        to: &OsStr,
        replace: bool,
    ) -> core::result::Result<(), Errno> {
        if replace {
            return rustix::fs::renameat(self.fd(), from, self.fd(), to);
        }
        match rustix::fs::renameat_with(
            self.fd(),
            from,
            self.fd(),
            to,
            rustix::fs::RenameFlags::NOREPLACE,
        ) {
            // A file system without RENAME_NOREPLACE: a hard link is as exclusive.
            Err(Errno::INVAL | Errno::NOSYS) => {
                rustix::fs::linkat(self.fd(), from, self.fd(), to, AtFlags::empty())?;
                let _ = rustix::fs::unlinkat(self.fd(), from, AtFlags::empty());
                Ok(())
            }
            r => r,
        }
    }

    /// Makes its entries durable (after a file was renamed into it).
    ///
    /// # Errors
    /// [`Error::Io`]; a directory opened for searching only cannot be synced and passes.
    pub fn sync(&self) -> Result<()> {
        match rustix::fs::fsync(self.fd()) {
            Ok(()) | Err(Errno::BADF | Errno::INVAL) => Ok(()),
            Err(e) => Err(Error::io(&self.path, e)),
        }
    }

    /// The names in it (not `.` and `..`), unsorted.
    ///
    /// # Errors
    /// [`Error::Io`] when it cannot be listed.
    pub fn names(&self) -> Result<Vec<OsString>> {
        let io = |e: Errno| Error::io(&self.path, e);
        let mut out = vec![];
        for e in rustix::fs::Dir::read_from(self.fd()).map_err(io)? {
            let e = e.map_err(io)?;
            let name = OsStr::from_bytes(e.file_name().to_bytes());
            if name != "." && name != ".." {
                out.push(name.to_os_string());
            }
        }
        Ok(out)
    }
}

/// Whether `st` is a regular file's.
pub fn is_regular(st: &Stat) -> bool {
    FileType::from_raw_mode(st.st_mode) == FileType::RegularFile
}

/// Why a symbolic link `link` in directory `parent` is not followed, or `None` when it may
/// be: as the kernel's `fs.protected_symlinks`, a link is followed when its owner is this
/// user, root or the directory's owner, or when no one else may write into the directory.
/// (The kernel applies it to sticky world-writable directories only; asdic to any directory
/// others may write.)
pub fn may_follow(link: &Stat, parent: &Stat) -> Option<String> {
    let (owner, dir_owner): (u32, u32) = (link.st_uid, parent.st_uid);
    if !others_write(parent) || owner == 0 || owner == crate::euid() || owner == dir_owner {
        return None;
    }
    Some(format!(
        " owned by uid {owner} in a directory others may write"
    ))
}

/// `name` is one plain component: no `/`, not `.` or `..`, not empty.
fn single(name: &OsStr, dir: &Path) -> Result<()> {
    let b = name.as_bytes();
    if b.is_empty() || b == b"." || b == b".." || b.contains(&b'/') || b.contains(&0) {
        return Err(Error::Refused {
            path: dir.join(name),
            what: "not a plain file name".into(),
        });
    }
    Ok(())
}

/// The path's components to look up in turn (`..` as a name, `.` and the root dropped).
fn components(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some("..".into()),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}

/// A search-only descriptor of directory `name` under `dir`, not following a link.
fn open_path<P: rustix::path::Arg>(
    dir: impl AsFd,
    name: P,
) -> core::result::Result<OwnedFd, Errno> {
    rustix::fs::openat(
        dir,
        name,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// `openat2(dir, name, flags, mode, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
/// RESOLVE_NO_MAGICLINKS)`: `name` resolves under `dir` through no link at all. Kernels before
/// 5.6 lack openat2: there `openat` with `O_NOFOLLOW` does the same for the one component
/// asdic ever passes.
fn open_beneath(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    flags: OFlags,
    mode: Mode,
) -> core::result::Result<OwnedFd, Errno> {
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    match rustix::fs::openat2(dir, name, flags, mode, resolve) {
        Err(Errno::NOSYS) => rustix::fs::openat(dir, name, flags | OFlags::NOFOLLOW, mode),
        r => r,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    pub(crate) fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("asdic-fs-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_directory_lock_has_one_holder_at_a_time_and_creates_nothing() {
        let d = scratch("lock");
        let dir = Dir::open(&d).unwrap();
        let held = dir.try_lock().unwrap().expect("the first takes it");
        let again = Dir::open(&d).unwrap();
        assert!(
            again.try_lock().unwrap().is_none(),
            "a second holder may not"
        );
        drop(held);
        assert!(
            again.try_lock().unwrap().is_some(),
            "free once the holder closes"
        );
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 0, "no lock file");
        // A file moves into another directory, never over one there.
        let sub = dir.create_dir(OsStr::new("sub")).unwrap();
        std::fs::write(d.join("a"), b"x").unwrap();
        std::fs::write(d.join("sub/b"), b"y").unwrap();
        assert_eq!(
            dir.rename_into(OsStr::new("a"), &sub, OsStr::new("b")),
            Err(Errno::EXIST)
        );
        dir.rename_into(OsStr::new("a"), &sub, OsStr::new("c"))
            .unwrap();
        assert_eq!(std::fs::read(d.join("sub/c")).unwrap(), b"x");
    }

    #[test]
    fn a_directory_opens_through_its_own_links_and_is_created_when_asked() {
        let d = scratch("open");
        std::fs::create_dir(d.join("real")).unwrap();
        symlink("real", d.join("link")).unwrap();
        let dir = Dir::open(&d.join("link")).unwrap();
        assert_eq!(dir.path(), d.join("link"));
        std::fs::write(d.join("real/x"), b"1").unwrap();
        assert!(dir.has(OsStr::new("x")).unwrap());

        assert!(Dir::open(&d.join("a/b")).is_err());
        let made = Dir::create_all(&d.join("a/b/../c")).unwrap();
        assert!(d.join("a/b").is_dir() && d.join("a/c").is_dir());
        assert!(made.names().unwrap().is_empty());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_file_is_not_a_directory_and_a_planted_subdir_link_is_refused() {
        let d = scratch("subdir");
        std::fs::write(d.join("f"), b"").unwrap();
        let e = Dir::open(&d.join("f")).unwrap_err();
        assert!(e.to_string().contains("Not a directory"), "{e}");
        let dir = Dir::open(&d).unwrap();
        std::fs::create_dir(d.join("elsewhere")).unwrap();
        symlink(d.join("elsewhere"), d.join("figures")).unwrap();
        let e = dir.subdir(OsStr::new("figures"), true).unwrap_err();
        assert!(matches!(e, Error::Symlink { .. }), "{e}");
        let e = dir.create_dir(OsStr::new("figures")).unwrap_err();
        assert!(matches!(e, Error::Exists { .. }), "{e}");
        assert!(dir.subdir(OsStr::new("new"), true).is_ok());
        assert!(
            dir.subdir(OsStr::new("new"), true).is_ok(),
            "an existing one opens"
        );
        assert!(dir.subdir(OsStr::new("../x"), true).is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn files_open_without_following_links() {
        let d = scratch("files");
        std::fs::write(d.join("target"), b"keep").unwrap();
        symlink(d.join("target"), d.join("planted")).unwrap();
        let dir = Dir::open(&d).unwrap();
        let e = dir
            .open_file(OsStr::new("planted"), OFlags::WRONLY | OFlags::TRUNC)
            .unwrap_err();
        assert!(matches!(e, Error::Symlink { .. }), "{e}");
        assert_eq!(std::fs::read(d.join("target")).unwrap(), b"keep");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn renames_replace_only_when_asked() {
        let d = scratch("rename");
        let dir = Dir::open(&d).unwrap();
        std::fs::write(d.join("a"), b"a").unwrap();
        std::fs::write(d.join("b"), b"b").unwrap();
        assert_eq!(
            dir.rename(OsStr::new("a"), OsStr::new("b"), false),
            Err(Errno::EXIST)
        );
        assert_eq!(std::fs::read(d.join("b")).unwrap(), b"b");
        dir.rename(OsStr::new("a"), OsStr::new("b"), true).unwrap();
        assert_eq!(std::fs::read(d.join("b")).unwrap(), b"a");
        assert!(!d.join("a").exists());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn the_directory_check_follows_the_sticky_bit_and_the_owner() {
        let d = scratch("check");
        let dir = Dir::open(&d).unwrap();
        // Ours (or root's): accepted whatever its mode.
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
        dir.check().unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o1777)).unwrap();
        dir.check().unwrap();
        std::fs::remove_dir_all(&d).unwrap();
    }

    fn stat(uid: u32, mode: u32) -> Stat {
        let mut st = rustix::fs::stat(".").unwrap();
        st.st_uid = uid;
        st.st_mode = mode;
        st
    }

    #[test]
    fn links_are_followed_as_protected_symlinks_would() {
        let me = crate::euid();
        let other = me.wrapping_add(4242);
        let third = me.wrapping_add(77);
        let shared = stat(third, 0o41777);
        let private = stat(third, 0o40755);
        assert!(may_follow(&stat(other, 0o120777), &shared).is_some());
        assert!(may_follow(&stat(other, 0o120777), &private).is_none());
        assert!(may_follow(&stat(0, 0o120777), &shared).is_none());
        assert!(may_follow(&stat(me, 0o120777), &shared).is_none());
        assert!(may_follow(&stat(third, 0o120777), &shared).is_none());
        // Group-writable counts as others.
        assert!(may_follow(&stat(other, 0o120777), &stat(third, 0o40775)).is_some());
    }
}
