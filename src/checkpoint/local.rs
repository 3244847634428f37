//! A local checkpoint directory: writes are atomic (tmp file, fsync, rename, fsync the
//! directory); the lock is an `flock` on `<stem>.lock` (released by the OS when a process dies)
//! holding "pid N on HOST"; files are created owner-only (0600) and never through a symbolic
//! link (see `crate::private`).

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::printable;
use super::storage::{Held, LockState, Names, Storage, Tag};
use crate::error::{Error, Result};

pub struct LocalDir {
    dir: PathBuf,
}

impl LocalDir {
    /// The directory `dir`: created (owner-only) by `secure`, when a run starts writing, not
    /// here (a run that fails before, or `status`, leaves no folder behind).
    pub fn new(dir: &Path) -> LocalDir {
        LocalDir {
            dir: dir.to_path_buf(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Storage for LocalDir {
    fn show(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    fn read(&self, name: &str) -> Result<Option<(Vec<u8>, Tag)>> {
        Ok(read_file(&self.path(name))?.map(|b| (b, Tag::Local)))
    }

    fn read_small(&self, name: &str, limit: u64) -> Result<Option<Vec<u8>>> {
        read_small(&self.path(name), limit)
    }

    fn write(&self, name: &str, bytes: &[u8], _expect: &Tag) -> Result<Tag> {
        write_file(&self.path(name), bytes)?;
        Ok(Tag::Local)
    }

    fn lines(&self, name: &str) -> Result<Option<u64>> {
        use std::io::BufRead as _;
        let p = self.path(name);
        let f = match File::open(&p) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::file(&p, e)),
        };
        let mut r = std::io::BufReader::with_capacity(1 << 16, f);
        let mut count = super::storage::LineCount::default();
        loop {
            let piece = r.fill_buf().map_err(|e| Error::file(&p, e))?;
            if piece.is_empty() {
                return Ok(Some(count.lines()));
            }
            count.feed(piece);
            let n = piece.len();
            r.consume(n);
        }
    }

    fn remove(&self, name: &str) -> Result<()> {
        let p = self.path(name);
        match fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::file(&p, e)),
        }
    }

    fn rename(&self, from: &str, to: &str) -> Result<bool> {
        let (a, b) = (self.path(from), self.path(to));
        match fs::rename(&a, &b) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::file(&a, e)),
        }
    }

    fn list(&self) -> Result<Vec<String>> {
        let mut v: Vec<String> = fs::read_dir(&self.dir)
            .map_err(|e| {
                Error::config(format!("checkpoint directory {}: {e}", self.dir.display()))
            })?
            // A name that is not UTF-8 is none ddb2pg writes (and a lossy copy would name
            // another file): skipped.
            .filter_map(|e| e.ok().and_then(|e| e.file_name().into_string().ok()))
            .collect();
        v.sort();
        Ok(v)
    }

    /// The `flock`; once held, a tmp file a crash left beside `<stem>.json` is removed (the
    /// checkpoint itself is still the last good one; only the holder may touch it).
    fn lock(&self, name: &str, _lease: Duration) -> Result<Box<dyn Held>> {
        let lock = Lock::acquire(&self.path(name))?;
        if let Some(stem) = name.strip_suffix(".lock") {
            remove_leftover_tmp(&self.path(&format!("{stem}.json")));
        }
        Ok(Box::new(lock))
    }

    fn lock_state(&self, name: &str) -> LockState {
        let lock = self.path(name);
        let holder = File::open(&lock)
            .ok()
            .map(|mut f| read_holder(&mut f))
            .filter(|s| !s.is_empty());
        let running = holder.as_deref().is_some_and(|h| holder_alive(h, &lock));
        LockState {
            running,
            holder,
            lease_left_s: None,
            problem: None,
        }
    }

    fn local_dir(&self) -> Result<PathBuf> {
        Ok(self.dir.clone())
    }

    fn publish(&self, _name: &str, _local: &Path) -> Result<()> {
        Ok(())
    }

    fn fetch(&self, _name: &str, _local: &Path, _committed: Option<u64>) -> Result<()> {
        Ok(())
    }

    /// Refuse to start when a file of the run is a symbolic link (exit 2, naming it; ddb2pg
    /// never writes through one, and opens them with `O_NOFOLLOW` too), and tighten existing
    /// files open to others to 0600 (left by an earlier version or a loose umask).
    fn secure(&self, names: &Names) -> Result<()> {
        crate::private::dir(&self.dir)?;
        let rejects = self.path(&names.rejects);
        let checkpoint = self.path(&names.checkpoint);
        for p in [
            &checkpoint,
            &tmp_path(&checkpoint),
            &self.path(&names.lock),
            &rejects,
            &rejects.with_extension("dry-run.jsonl"),
        ] {
            crate::private::refuse_symlink(p)?;
            crate::private::tighten_file(p)?;
        }
        Ok(())
    }
}

/// Whether the holder "pid N on HOST" of `lock` is a live process holding it: a pid on this
/// host is live if it still has the file open (/proc/N/fd), one on another host is taken as
/// live. Read without taking the lock (a `status` beside a starting `migrate` must not make it
/// exit 2).
fn holder_alive(holder: &str, lock: &Path) -> bool {
    let mut words = holder.split_whitespace();
    let (Some("pid"), Some(pid), Some("on"), Some(host)) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return true;
    };
    if host != hostname() || pid.parse::<u32>().is_err() {
        return true;
    }
    let Ok(lock) = fs::canonicalize(lock) else {
        return false;
    };
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten()
        .any(|fd| fs::read_link(fd.path()).is_ok_and(|target| target == lock))
}

pub(super) fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}

/// The file's bytes; `None` when it does not exist.
pub(super) fn read_file(path: &Path) -> Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::file(path, e)),
    }
}

/// `path`'s bytes if it is a regular file of this user of at most `limit` bytes (see
/// `Storage::read_small`): opened without following a link or waiting for a FIFO's writer,
/// looked at through the open file, read no further than the limit.
fn read_small(path: &Path, limit: u64) -> Result<Option<Vec<u8>>> {
    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    let file = match options.open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if crate::private::is_symlink_error(&e) => {
            return Err(Error::file(path, "a symbolic link, not read"))
        }
        Err(e) => return Err(Error::file(path, e)),
    };
    let m = file.metadata().map_err(|e| Error::file(path, e))?;
    if !m.file_type().is_file() {
        return Err(Error::file(path, "not a regular file, not read"));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if m.uid() != crate::private::uid() {
            return Err(Error::file(
                path,
                format!("belongs to user {}, not to this one: not read", m.uid()),
            ));
        }
    }
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| Error::file(path, e))?;
    if bytes.len() as u64 > limit {
        return Err(Error::file(
            path,
            format!("larger than {limit} bytes, not read"),
        ));
    }
    Ok(Some(bytes))
}

pub(super) fn remove_leftover_tmp(path: &Path) {
    let tmp = tmp_path(path);
    if tmp.exists() {
        crate::say!(
            "removing {} left by an interrupted checkpoint write",
            tmp.display()
        );
        let _ = fs::remove_file(&tmp);
    }
}

/// Write atomically: tmp file, fsync, rename over, fsync the directory.
pub(super) fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_path(path);
    let write = || -> std::io::Result<()> {
        // A fresh owner-only file (whatever was there, a link included, is removed first:
        // only the lock holder writes here); the rename replaces a link at `path` too.
        let _ = fs::remove_file(&tmp);
        let mut f = crate::private::open_io(&tmp, OpenOptions::new().write(true).create_new(true))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            File::open(if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            })?
            .sync_all()?;
        }
        Ok(())
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::file(
            path,
            format!("cannot write checkpoint ({e}); the previous checkpoint stays valid"),
        )
    })
}

/// An exclusive lock on a run; released when dropped or when the process dies.
#[derive(Debug)]
pub struct Lock {
    file: File,
}

impl Held for Lock {}

impl Lock {
    pub fn acquire(path: &Path) -> Result<Lock> {
        let mut file = crate::private::open(
            path,
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false),
        )?;
        let previous = read_holder(&mut file);
        let previous = printable(&previous);
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::config(format!(
                    "another ddb2pg run ({}) holds {}; wait for it to finish or stop it first",
                    if previous.is_empty() {
                        "pid unknown".into()
                    } else {
                        previous
                    },
                    printable(&path.display().to_string())
                )))
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(Error::file(path, e)),
        }
        if !previous.is_empty() {
            crate::say!(
                "taking over the lock {} left by a run that is no longer alive ({previous})",
                printable(&path.display().to_string())
            );
        }
        let me = holder_id();
        let write = |f: &mut File| -> std::io::Result<()> {
            f.set_len(0)?;
            f.seek(SeekFrom::Start(0))?;
            f.write_all(me.as_bytes())?;
            f.sync_all()
        };
        write(&mut file).map_err(|e| Error::file(path, e))?;
        Ok(Lock { file })
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        // A clean exit leaves an empty lock file: nothing to take over next time.
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

/// The longest holder name read from a lock file ("pid N on HOST" is far shorter).
const HOLDER_LIMIT: u64 = 256;

/// The holder a lock file names (its first [`HOLDER_LIMIT`] bytes, trimmed), as written: print
/// it through `printable` (anyone who can write the folder can write it).
fn read_holder(file: &mut File) -> String {
    let mut bytes = Vec::new();
    let _ = file.take(HOLDER_LIMIT).read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).trim().to_string()
}

pub(super) fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "this host".into())
}

/// "pid N on HOST": who holds a lock, as shown to the next run.
pub(crate) fn holder_id() -> String {
    format!("pid {} on {}", std::process::id(), hostname())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_is_read_not_taken() {
        let dir = std::env::temp_dir().join(format!("ddb2pg-status-{}", std::process::id()));
        let _ = fs::create_dir_all(&dir);
        let store = LocalDir::new(&dir);
        let lock = Lock::acquire(&dir.join("x.lock")).expect("lock");
        // This process holds it: alive.
        let st = store.lock_state("x.lock");
        assert!(st.running, "{st:?}");
        // Reading it did not take it: the holder still has it, and a second run is refused.
        assert!(Lock::acquire(&dir.join("x.lock")).is_err());
        drop(lock);
        assert_eq!(store.lock_state("x.lock"), LockState::default());
        let path = dir.join("x.lock");
        fs::write(&path, "pid 4194999 on nowhere-else").expect("write");
        assert!(
            store.lock_state("x.lock").running,
            "another host: taken as live"
        );
        fs::write(&path, format!("pid 4194999 on {}", hostname())).expect("write");
        assert!(
            !store.lock_state("x.lock").running,
            "a dead pid on this host"
        );
    }

    #[test]
    fn lock_is_exclusive_and_reports_stale() {
        let dir = std::env::temp_dir().join(format!("ddb2pg-lock-{}", std::process::id()));
        let _ = fs::create_dir_all(&dir);
        let p = dir.join("x.lock");
        let l = Lock::acquire(&p).expect("first");
        let err = Lock::acquire(&p).expect_err("second refused").to_string();
        assert!(err.contains("another ddb2pg run"), "{err}");
        drop(l);
        assert!(Lock::acquire(&p).is_ok());
    }
}
