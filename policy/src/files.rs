//! Files that cannot be swapped under us: plugins, their directories, trust keys.
//!
//! As OpenSSH's `StrictModes`, extended to symbolic links: the path is resolved one
//! component at a time, and every directory looked in, every symbolic link followed
//! and the file itself must be owned by root or the running user and not writable by
//! group or others. The one exception is a directory owned by root with the sticky bit
//! (`/tmp`): there, others may create entries but cannot rename or remove ours. The
//! file must be a regular file (a FIFO, a device or a socket is refused before it is
//! opened, and it is opened non-blocking, so nothing can hang the reader), within a
//! size limit checked before reading, and still the same file (device and inode) once
//! opened.

use std::collections::VecDeque;
use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

/// The most symbolic links followed in one path.
const MAX_LINKS: usize = 40;

/// What is wrong with a path component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unsafety {
    /// Group or others may write to it (the mode).
    Writable(u32),
    /// Another user owns it (the uid).
    Owner(u32),
}

/// Why a file was refused.
#[derive(Debug)]
pub enum FileError {
    /// The file (or a component of its path) does not exist.
    NotFound {
        /// The file.
        path: PathBuf,
    },
    /// Reading failed.
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// Not a regular file.
    NotRegular {
        /// The file.
        path: PathBuf,
        /// What it is: `directory`, `fifo`, `socket`, `device`.
        kind: &'static str,
    },
    /// Larger than the limit.
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A component of the path could be changed by someone else.
    Unsafe {
        /// The file asked for.
        path: PathBuf,
        /// The component (directory, symbolic link or the file).
        component: PathBuf,
        /// What is wrong with it.
        problem: Unsafety,
    },
    /// Too many symbolic links.
    Loop {
        /// The file.
        path: PathBuf,
    },
}

impl FileError {
    /// The file asked for.
    pub fn path(&self) -> &Path {
        match self {
            FileError::NotFound { path }
            | FileError::Io { path, .. }
            | FileError::NotRegular { path, .. }
            | FileError::TooLarge { path, .. }
            | FileError::Unsafe { path, .. }
            | FileError::Loop { path } => path,
        }
    }

    /// What is wrong, without the path of the file.
    pub fn detail(&self) -> String {
        match self {
            FileError::NotFound { .. } => "not found".into(),
            FileError::Io { source, .. } => format!("cannot read: {source}"),
            FileError::NotRegular { kind, .. } => format!("not a regular file (a {kind})"),
            FileError::TooLarge { size, limit, .. } => {
                format!("{size} bytes, more than the limit of {limit} bytes")
            }
            FileError::Unsafe {
                component, problem, ..
            } => match problem {
                Unsafety::Writable(mode) => format!(
                    "refused: {} is writable by group or others (mode {mode:o}); fix with chmod go-w",
                    component.display()
                ),
                Unsafety::Owner(uid) => format!(
                    "refused: {} belongs to another user (uid {uid}); only root's or this user's files are trusted",
                    component.display()
                ),
            },
            FileError::Loop { .. } => format!("more than {MAX_LINKS} symbolic links"),
        }
    }
}

impl std::fmt::Display for FileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path().display(), self.detail())
    }
}

impl std::error::Error for FileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FileError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// The running process's effective user id.
pub fn current_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

fn kind_of(meta: &Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_dir() {
        "directory"
    } else if t.is_fifo() {
        "fifo"
    } else if t.is_socket() {
        "socket"
    } else if t.is_block_device() || t.is_char_device() {
        "device"
    } else if t.is_symlink() {
        "symbolic link"
    } else {
        "file"
    }
}

/// Checks one component's owner and mode.
fn check_component(path: &Path, component: &Path, meta: &Metadata) -> Result<(), FileError> {
    let unsafe_ = |problem| FileError::Unsafe {
        path: path.to_path_buf(),
        component: component.to_path_buf(),
        problem,
    };
    let uid = meta.uid();
    if uid != 0 && uid != current_uid() {
        return Err(unsafe_(Unsafety::Owner(uid)));
    }
    if !meta.is_dir() && !meta.is_file() {
        // A link's own mode means nothing (its owner and its directory do); a FIFO, a
        // device or a socket is refused as such by the caller.
        return Ok(());
    }
    let mode = meta.mode() & 0o7777;
    let sticky_root_dir = meta.is_dir() && mode & 0o1000 != 0 && uid == 0;
    if mode & 0o022 != 0 && !sticky_root_dir {
        return Err(unsafe_(Unsafety::Writable(mode)));
    }
    Ok(())
}

fn io_error(path: &Path, e: io::Error) -> FileError {
    if e.kind() == io::ErrorKind::NotFound {
        FileError::NotFound {
            path: path.to_path_buf(),
        }
    } else {
        FileError::Io {
            path: path.to_path_buf(),
            source: e,
        }
    }
}

/// Resolves `path` one component at a time, checking every directory looked in, every
/// symbolic link followed and the final component; its real path and metadata.
pub fn resolve_checked(path: &Path) -> Result<(PathBuf, Metadata), FileError> {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| io_error(path, e))?
            .join(path)
    };
    let mut todo: VecDeque<PathBuf> = absolute
        .components()
        .map(|c| PathBuf::from(c.as_os_str()))
        .collect();
    let mut current = PathBuf::from("/");
    let mut links = 0;
    let root = std::fs::symlink_metadata(&current).map_err(|e| io_error(path, e))?;
    check_component(path, &current, &root)?;
    let mut meta = root;
    while let Some(part) = todo.pop_front() {
        match part.components().next() {
            Some(Component::RootDir) => {
                current = PathBuf::from("/");
                continue;
            }
            Some(Component::CurDir) | None => continue,
            Some(Component::ParentDir) => {
                current.pop();
                meta = std::fs::symlink_metadata(&current).map_err(|e| io_error(path, e))?;
                continue;
            }
            Some(Component::Normal(_)) | Some(Component::Prefix(_)) => {}
        }
        let next = current.join(&part);
        let m = std::fs::symlink_metadata(&next).map_err(|e| io_error(path, e))?;
        check_component(path, &next, &m)?;
        if m.file_type().is_symlink() {
            links += 1;
            if links > MAX_LINKS {
                return Err(FileError::Loop {
                    path: path.to_path_buf(),
                });
            }
            let target = std::fs::read_link(&next).map_err(|e| io_error(path, e))?;
            for c in target.components().rev() {
                todo.push_front(PathBuf::from(c.as_os_str()));
            }
            // An absolute target starts again at the root (its RootDir component).
            continue;
        }
        current = next;
        meta = m;
    }
    Ok((current, meta))
}

/// A file opened after [`resolve_checked`]: regular, within `limit` bytes, the same
/// file once open. Its real path, the open file and its metadata.
pub fn open_checked(path: &Path, limit: u64) -> Result<(PathBuf, File, Metadata), FileError> {
    let (real, meta) = resolve_checked(path)?;
    if !meta.is_file() {
        return Err(FileError::NotRegular {
            path: path.to_path_buf(),
            kind: kind_of(&meta),
        });
    }
    if meta.len() > limit {
        return Err(FileError::TooLarge {
            path: path.to_path_buf(),
            size: meta.len(),
            limit,
        });
    }
    // Non-blocking and not following a link: a FIFO swapped in since the check cannot
    // block, a link swapped in cannot redirect.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags((rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::NOFOLLOW).bits() as i32)
        .open(&real)
        .map_err(|e| io_error(path, e))?;
    let opened = file.metadata().map_err(|e| io_error(path, e))?;
    if (opened.dev(), opened.ino()) != (meta.dev(), meta.ino()) || !opened.is_file() {
        return Err(FileError::Io {
            path: path.to_path_buf(),
            source: io::Error::other("the file was replaced while it was being checked"),
        });
    }
    Ok((real, file, opened))
}

/// Reads a file opened by [`open_checked`], handing each chunk to `each` as it is read
/// (to hash it while streaming); at most `limit` bytes, whatever the file does.
pub fn read_checked(
    path: &Path,
    limit: u64,
    mut each: impl FnMut(&[u8]),
) -> Result<(PathBuf, File, Vec<u8>), FileError> {
    let (real, file, meta) = open_checked(path, limit)?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    let mut chunk = vec![0u8; 64 * 1024];
    let mut reader = (&file).take(limit + 1);
    loop {
        let n = match reader.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_error(path, e)),
        };
        each(&chunk[..n]);
        bytes.extend_from_slice(&chunk[..n]);
        if bytes.len() as u64 > limit {
            return Err(FileError::TooLarge {
                path: path.to_path_buf(),
                size: bytes.len() as u64,
                limit,
            });
        }
    }
    Ok((real, file, bytes))
}

/// Checks a directory the way [`resolve_checked`] checks a file's path: its real path.
pub fn check_dir(path: &Path) -> Result<PathBuf, FileError> {
    let (real, meta) = resolve_checked(path)?;
    if !meta.is_dir() {
        return Err(FileError::NotRegular {
            path: path.to_path_buf(),
            kind: kind_of(&meta),
        });
    }
    Ok(real)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    fn chmod(p: &Path, mode: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    /// A private directory (0700) under the temporary directory.
    fn private() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        chmod(d.path(), 0o700);
        d
    }

    #[test]
    fn a_plain_file_in_a_private_directory_is_read() {
        let d = private();
        let f = d.path().join("k.pub");
        std::fs::write(&f, b"hello").unwrap();
        chmod(&f, 0o644);
        let mut seen = Vec::new();
        let (real, _, bytes) = read_checked(&f, 100, |c| seen.extend_from_slice(c)).unwrap();
        assert_eq!(bytes, b"hello");
        assert_eq!(seen, b"hello");
        assert_eq!(real, std::fs::canonicalize(&f).unwrap());
    }

    #[test]
    fn writable_files_directories_and_link_targets_are_refused() {
        let d = private();
        let f = d.path().join("k.pub");
        std::fs::write(&f, b"x").unwrap();
        chmod(&f, 0o666);
        let e = read_checked(&f, 100, |_| {}).unwrap_err();
        assert!(
            matches!(&e, FileError::Unsafe { problem: Unsafety::Writable(0o666), component, .. } if component == &f),
            "{e}"
        );
        chmod(&f, 0o644);
        // A world-writable directory (no sticky bit) on the way.
        let open = d.path().join("open");
        std::fs::create_dir(&open).unwrap();
        chmod(&open, 0o777);
        let inside = open.join("k.pub");
        std::fs::write(&inside, b"x").unwrap();
        chmod(&inside, 0o644);
        let e = read_checked(&inside, 100, |_| {}).unwrap_err();
        assert!(
            matches!(&e, FileError::Unsafe { component, .. } if component == &open),
            "{e}"
        );
        // A symlink in a safe directory to a file in the open one, and a chain of two.
        let safe = d.path().join("safe");
        std::fs::create_dir(&safe).unwrap();
        symlink(&inside, safe.join("a.pub")).unwrap();
        symlink(safe.join("a.pub"), safe.join("b.pub")).unwrap();
        for link in ["a.pub", "b.pub"] {
            let e = read_checked(&safe.join(link), 100, |_| {}).unwrap_err();
            assert!(
                matches!(&e, FileError::Unsafe { component, .. } if component == &open),
                "{link}: {e}"
            );
        }
        // A symlink to a safe file, itself in the open directory: refused too.
        symlink(&f, open.join("c.pub")).unwrap();
        let e = read_checked(&open.join("c.pub"), 100, |_| {}).unwrap_err();
        assert!(matches!(e, FileError::Unsafe { .. }), "{e}");
        // Once the directory is fixed, the link chain is fine.
        chmod(&open, 0o755);
        assert!(read_checked(&safe.join("b.pub"), 100, |_| {}).is_ok());
        assert!(check_dir(&open).is_ok());
    }

    #[test]
    fn fifos_directories_devices_and_oversized_files_are_refused_without_reading() {
        let d = private();
        let fifo = d.path().join("x.so");
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
        )
        .unwrap();
        let started = std::time::Instant::now();
        let e = read_checked(&fifo, 100, |_| {}).unwrap_err();
        assert!(
            matches!(e, FileError::NotRegular { kind: "fifo", .. }),
            "{e}"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        let e = read_checked(d.path(), 100, |_| {}).unwrap_err();
        assert!(
            matches!(
                e,
                FileError::NotRegular {
                    kind: "directory",
                    ..
                }
            ),
            "{e}"
        );
        let e = read_checked(Path::new("/dev/null"), 100, |_| {}).unwrap_err();
        assert!(
            matches!(e, FileError::NotRegular { kind: "device", .. }),
            "{e}"
        );
        // A 1 GiB sparse file: refused from its size, nothing read.
        let big = d.path().join("big.so");
        File::create(&big).unwrap().set_len(1 << 30).unwrap();
        let mut read = 0;
        let e = read_checked(&big, 1 << 20, |c| read += c.len()).unwrap_err();
        assert!(
            matches!(e, FileError::TooLarge { size, limit, .. } if size == 1 << 30 && limit == 1 << 20),
            "{e}"
        );
        assert_eq!(read, 0);
        let e = read_checked(&d.path().join("none"), 100, |_| {}).unwrap_err();
        assert!(matches!(e, FileError::NotFound { .. }), "{e}");
    }

    #[test]
    fn another_users_file_or_directory_is_refused() {
        if current_uid() != 0 {
            eprintln!("SKIPPED: needs root to give a file to another user");
            return;
        }
        let d = private();
        let f = d.path().join("k.pub");
        std::fs::write(&f, b"x").unwrap();
        std::os::unix::fs::chown(&f, Some(65534), None).unwrap();
        let e = read_checked(&f, 100, |_| {}).unwrap_err();
        assert!(
            matches!(
                e,
                FileError::Unsafe {
                    problem: Unsafety::Owner(65534),
                    ..
                }
            ),
            "{e}"
        );
        assert!(
            e.to_string()
                .contains("belongs to another user (uid 65534)"),
            "{e}"
        );
    }

    #[test]
    fn link_loops_end() {
        let d = private();
        symlink(d.path().join("b"), d.path().join("a")).unwrap();
        symlink(d.path().join("a"), d.path().join("b")).unwrap();
        let e = read_checked(&d.path().join("a"), 100, |_| {}).unwrap_err();
        assert!(matches!(e, FileError::Loop { .. }), "{e}");
    }
}
