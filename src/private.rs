//! Files that hold personal data: the checkpoint directory and its checkpoint, tmp, lock and
//! rejects files (whole items), and the downloaded copies of an s3:// export.
//!
//! They are created owner-only (files 0600, directories 0700) and never through a symbolic
//! link: files are opened with `O_NOFOLLOW`, and a link in the place of a file or directory
//! ddb2pg writes is refused with exit 2, naming it. An existing file of the run that belongs
//! to another user is refused (exit 2, naming it and its owner: in a folder others may add
//! names to, it may have been put there first); one of ours that grants group or others any
//! access is tightened when opened for writing.
//!
//! Directories come in two kinds:
//! - The checkpoint directory, named by the user ([`dir`]): an existing one open to others is
//!   tightened when it holds only ddb2pg's files. One that another user controls (owned by
//!   someone else than us or root, or, without the sticky bit, writable by others or by a
//!   group we are not in, so that they could rename or replace our files) is refused with
//!   exit 2. One only its owner and a group of ours can write to is used (a Kubernetes volume
//!   with `fsGroup`: root-owned, mode 2775, the pod's group): that group's members are trusted
//!   as much as we are. One that others can only read or, like /tmp, only add their own names
//!   to, is used with a warning.
//! - Folders ddb2pg names itself in a place others may write to ([`own_dir`]): the S3 working
//!   folder in the temp directory, an `s3://` export's download folder, verify's copies. Their
//!   names are predictable, so another local user could make one first and then read or swap
//!   what ddb2pg puts there: such a folder is created fresh (mode 0700), or used only when it
//!   already is ours with permission bits 0700 (a setgid bit inherited from the parent, as in
//!   a Kubernetes `fsGroup` volume, grants nothing and is ignored). Anything else is refused
//!   with exit 2, naming the folder, its owner and mode, and what to do. Never "warn and use".

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::Path;

#[cfg(unix)]
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};

use crate::error::{Error, Result};

/// Mode of the files ddb2pg writes.
pub const FILE_MODE: u32 = 0o600;
/// Mode of the directories ddb2pg creates.
pub const DIR_MODE: u32 = 0o700;

/// The refusal of a symbolic link where ddb2pg writes.
pub fn symlink_refused(path: &Path) -> Error {
    Error::config(format!(
        "{} is a symbolic link: ddb2pg writes checkpoints, rejected items and export copies \
         (personal data) only into real files and directories, never through a link. Remove \
         the link, or give --checkpoint-dir the real directory",
        path.display()
    ))
}

/// Refuse `path` if it is a symbolic link (a missing path is fine).
pub fn refuse_symlink(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Err(symlink_refused(path)),
        _ => Ok(()),
    }
}

/// Check a file of the run before it is used: one that belongs to another user is refused
/// (exit 2, naming it and its owner): in a folder others may add names to (sticky, like /tmp)
/// another user could have put it there first, a checkpoint marking segments done or a lock
/// naming a holder, and ddb2pg never reads or writes a file it did not make. An existing one
/// open to others is tightened to 0600. A missing one is fine; links are left alone (see
/// `refuse_symlink`).
pub fn tighten_file(path: &Path) -> Result<()> {
    #[cfg(unix)]
    if let Ok(m) = fs::symlink_metadata(path) {
        use std::os::unix::fs::MetadataExt;
        let (owner, me) = (m.uid(), uid());
        if m.is_file() && owner != me {
            return Err(Error::config(format!(
                "{} belongs to user {owner}, not to you (user {me}): ddb2pg uses only files it \
                 made itself, and in a folder others can add files to, another user may have put \
                 this one there first to steer the run. Refused; nothing was read from it or \
                 written. Remove it if you know it is a leftover (a run as user {owner}), or give \
                 --checkpoint-dir a folder of your own",
                path.display()
            )));
        }
        if m.is_file() && m.permissions().mode() & 0o077 != 0 {
            fs::set_permissions(path, fs::Permissions::from_mode(FILE_MODE))
                .map_err(|e| Error::file(path, e))?;
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Make `path` an owner-only directory: created 0700 (missing parents too), or an existing
/// one tightened to 0700 (a warning when that fails). A symbolic link is refused, and so is a
/// directory another user controls (see the module doc).
pub fn dir(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) => return existing_dir(path, &m),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::file(path, e)),
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    builder.mode(DIR_MODE);
    builder.create(path).map_err(|e| Error::file(path, e))?;
    // Created, or made by someone else in the meantime: look again.
    let m = fs::symlink_metadata(path).map_err(|e| Error::file(path, e))?;
    existing_dir(path, &m)
}

/// This process's effective user id (0 off Unix).
pub fn uid() -> u32 {
    #[cfg(unix)]
    {
        // SAFETY: geteuid has no preconditions and cannot fail.
        unsafe { libc::geteuid() }
    }
    #[cfg(not(unix))]
    {
        0
    }
}

/// A folder ddb2pg names itself, `path` (its parent must exist): created fresh with mode 0700,
/// or, when it exists, used only if it is a real directory owned by this user with mode 0700.
/// Otherwise refused (exit 2) with `holds` (what ddb2pg keeps there) and `instead` (what else
/// the user can do besides removing it) in the message.
pub fn own_dir(path: &Path, holds: &str, instead: &str) -> Result<()> {
    let mut builder = fs::DirBuilder::new();
    #[cfg(unix)]
    builder.mode(DIR_MODE);
    match builder.create(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::file(path, e)),
    }
    // Made now or found: look at what is there (not through a link).
    check_own_dir(path, holds, instead)
}

/// As [`own_dir`], without creating anything: a missing folder is fine (it is made later),
/// one that exists is refused as `own_dir` refuses it. To refuse early, before the target is
/// touched, a folder that is made only once the run holds its lock.
pub fn check_own_dir(path: &Path, holds: &str, instead: &str) -> Result<()> {
    let m = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::file(path, e)),
    };
    if m.file_type().is_symlink() {
        return Err(symlink_refused(path));
    }
    if !m.is_dir() {
        return Err(Error::config(format!(
            "{} is not a directory: ddb2pg keeps {holds} there. Remove it, or {instead}",
            path.display()
        )));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let (owner, mode, me) = (m.uid(), m.mode() & 0o7777, uid());
        // The permission bits only: a setgid bit inherited from the parent (a Kubernetes
        // emptyDir with fsGroup is 2777, so ours is 2700) grants no one any access.
        if owner != me || mode & 0o777 != DIR_MODE {
            return Err(Error::config(format!(
                "{}: this folder already exists, owned by user {owner} with mode {mode:04o}; \
                 ddb2pg keeps {holds} there and uses it only when it is yours (user {me}) with \
                 mode {DIR_MODE:04o}, as it creates it: whoever else can write to it could read \
                 or swap what ddb2pg puts there. Refused; nothing was written to it. Remove it \
                 (`rm -r {}`) if it is a leftover, or {instead}",
                path.display(),
                path.display()
            )));
        }
    }
    Ok(())
}

/// What a directory ddb2pg may tighten holds (anything else: [`only_ours`] is `None`).
#[cfg(unix)]
#[derive(Debug, PartialEq, Eq)]
enum Contents {
    /// Only version-control placeholders (a fresh clone's `checkpoints/.gitkeep`), or nothing.
    Empty,
    /// ddb2pg's own files (and placeholders) only.
    Ours,
}

/// Whether a directory may be tightened: owned by this user, not sticky (like /tmp), and
/// holding nothing but ddb2pg's own files (checkpoints, locks, rejects, export copies) and
/// version-control placeholders; `None` when it may not.
#[cfg(unix)]
fn only_ours(path: &Path, m: &fs::Metadata) -> Option<Contents> {
    use std::os::unix::fs::MetadataExt;
    if m.uid() != uid() || m.mode() & 0o1000 != 0 {
        return None;
    }
    let mut contents = Contents::Empty;
    for e in fs::read_dir(path).ok()? {
        let name = e.ok()?.file_name();
        let name = name.to_string_lossy();
        if is_ours(&name) {
            contents = Contents::Ours;
        } else if !is_placeholder(&name) {
            return None;
        }
    }
    Some(contents)
}

/// Files a repository keeps in an empty folder so that it is checked out (`.gitkeep`, `.keep`,
/// a `.gitignore` of its own): they hold no one's data, and a clone's `checkpoints/` holds one.
fn is_placeholder(name: &str) -> bool {
    matches!(name, ".gitkeep" | ".keep" | ".gitignore")
}

/// ddb2pg's own names: `<table>-<12 hex>.{json,json.tmp,lock,rejects*.jsonl}` and `s3-*`.
fn is_ours(name: &str) -> bool {
    if name.starts_with("s3-") {
        return true;
    }
    let stem = name.split('.').next().unwrap_or("");
    let hash_ok = stem
        .rsplit_once('-')
        .is_some_and(|(_, h)| h.len() == 12 && h.bytes().all(|b| b.is_ascii_hexdigit()));
    let rest = &name[stem.len()..];
    hash_ok
        && (matches!(rest, ".json" | ".json.tmp" | ".lock" | ".rejects.jsonl")
            || (rest.starts_with(".rejects.") && rest.ends_with(".jsonl")))
}

fn existing_dir(path: &Path, m: &fs::Metadata) -> Result<()> {
    if m.file_type().is_symlink() {
        return Err(symlink_refused(path));
    }
    if !m.is_dir() {
        return Err(Error::config(format!(
            "{} is not a directory",
            path.display()
        )));
    }
    #[cfg(unix)]
    {
        let mode = m.permissions().mode() & 0o7777;
        refuse_controlled_by_others(path, m)?;
        let contents = only_ours(path, m);
        if mode & 0o077 != 0 && contents.is_none() {
            crate::say!(
                warn: "{} is open to others (mode {mode:04o}) and holds files that \
                 are not ddb2pg's, so it is left as it is; ddb2pg's files in it are created \
                 {FILE_MODE:04o}. Give --checkpoint-dir a folder of its own",
                path.display()
            );
        } else if mode & 0o077 != 0 {
            // A folder that holds nothing of anyone's yet (a fresh clone's checkpoints/, mode
            // 0755 from the umask) is tightened without a word: nothing was exposed.
            match fs::set_permissions(path, fs::Permissions::from_mode(DIR_MODE)) {
                Ok(()) if contents == Some(Contents::Empty) => {}
                Ok(()) => crate::say!(
                    "{} was open to others (mode {mode:04o}); tightened to {DIR_MODE:04o}: \
                     it holds personal data (checkpoints, rejected items, export copies)",
                    path.display()
                ),
                Err(e) => crate::say!(
                    warn: "{} is open to others (mode {mode:04o}) and cannot be \
                     tightened ({e}); its files are still created {FILE_MODE:04o}",
                    path.display()
                ),
            }
        }
    }
    Ok(())
}

/// Refuse a checkpoint directory another user controls: owned by someone else than this user
/// or root, or, without the sticky bit, writable by others or by a group this user is not in
/// (they could rename or replace the files in it), unless it holds only ddb2pg's files and is
/// ours (then it is tightened). A folder only its owner (us or root) and a group of ours can
/// write to is used: a Kubernetes volume with `fsGroup` is root-owned, group-writable by the
/// pod's group (mode 2775).
#[cfg(unix)]
fn refuse_controlled_by_others(path: &Path, m: &fs::Metadata) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let (owner, group, mode, me) = (m.uid(), m.gid(), m.mode() & 0o7777, uid());
    let foreign = owner != me && owner != 0;
    let sticky = mode & 0o1000 != 0;
    let others_write = mode & 0o002 != 0 && !sticky;
    let group_write = mode & 0o020 != 0 && !sticky && !in_group(group);
    // With an access ACL the group bits are its mask, which also covers the users and groups
    // the ACL names: any of them may write.
    let acl_write = mode & 0o020 != 0 && !sticky && has_access_acl(path);
    if foreign || ((others_write || group_write || acl_write) && only_ours(path, m).is_none()) {
        let who = if foreign {
            "another user controls it".to_string()
        } else if others_write {
            "any user can write to it".to_string()
        } else if acl_write && !group_write {
            "its ACL lets other users or groups write to it (see getfacl)".to_string()
        } else {
            format!("the members of group {group}, which you are not in, can write to it")
        };
        return Err(Error::config(format!(
            "{} belongs to user {owner} (group {group}) with mode {mode:04o}: {who}, so they \
             could read, rename or replace the checkpoint, lock, rejects and export copies \
             ddb2pg keeps there. Refused; nothing was written. Give --checkpoint-dir a folder of \
             your own (user {me}), or one only you and a group you are in can write to",
            path.display(),
        )));
    }
    Ok(())
}

/// Whether `path` has an access ACL beyond its mode bits (the `system.posix_acl_access`
/// attribute exists only for an ACL with named users or groups).
#[cfg(target_os = "linux")]
fn has_access_acl(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: both strings are NUL-terminated; a size of 0 asks only for the value's length.
    let n = unsafe {
        libc::lgetxattr(
            c_path.as_ptr(),
            c"system.posix_acl_access".as_ptr(),
            std::ptr::null_mut(),
            0,
        )
    };
    n > 0
}

/// Elsewhere ACLs are not read (ddb2pg is built and tested on Linux).
#[cfg(all(unix, not(target_os = "linux")))]
fn has_access_acl(_path: &Path) -> bool {
    false
}

/// Whether this process is in group `gid` (its effective group or a supplementary one).
#[cfg(unix)]
pub fn in_group(gid: u32) -> bool {
    // SAFETY: getegid has no preconditions and cannot fail.
    if unsafe { libc::getegid() } == gid {
        return true;
    }
    // SAFETY: with a size of 0 getgroups only counts the groups.
    let n = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
    let Ok(len) = usize::try_from(n) else {
        return false;
    };
    let mut groups: Vec<libc::gid_t> = vec![0; len];
    // SAFETY: `groups` has room for `n` entries, as passed.
    let got = unsafe { libc::getgroups(n, groups.as_mut_ptr()) };
    let Ok(got) = usize::try_from(got) else {
        return false;
    };
    groups.iter().take(got).any(|&g| g == gid)
}

/// Open `path` with `options`, creating it 0600 and never through a symbolic link (the open
/// fails with ELOOP on a link); an existing file open to others is tightened to 0600.
pub fn open_io(path: &Path, options: &mut OpenOptions) -> io::Result<File> {
    #[cfg(unix)]
    options.mode(FILE_MODE).custom_flags(libc::O_NOFOLLOW);
    let file = options.open(path)?;
    #[cfg(unix)]
    if file.metadata()?.permissions().mode() & 0o077 != 0 {
        // fchmod on the open file: no path to race on.
        file.set_permissions(fs::Permissions::from_mode(FILE_MODE))?;
    }
    Ok(file)
}

/// As `open_io`, with a symbolic link refused by name (exit 2) and other errors naming the file.
pub fn open(path: &Path, options: &mut OpenOptions) -> Result<File> {
    open_io(path, options).map_err(|e| {
        if is_symlink_error(&e) {
            symlink_refused(path)
        } else {
            Error::file(path, e)
        }
    })
}

/// Create or truncate `path` for writing (see `open`).
pub fn create(path: &Path) -> Result<File> {
    open(
        path,
        OpenOptions::new().write(true).create(true).truncate(true),
    )
}

/// Whether an open failed because the path is a symbolic link (`O_NOFOLLOW`).
pub fn is_symlink_error(e: &io::Error) -> bool {
    #[cfg(unix)]
    {
        e.raw_os_error() == Some(libc::ELOOP)
    }
    #[cfg(not(unix))]
    {
        let _ = e;
        false
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn tempdir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("ddb2pg-private-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).expect("tempdir");
        d
    }

    fn mode(p: &Path) -> u32 {
        fs::symlink_metadata(p).expect("stat").permissions().mode() & 0o777
    }

    #[test]
    fn created_owner_only_and_links_refused() {
        let d = tempdir("modes");
        let nested = d.join("a/b");
        dir(&nested).expect("dir");
        assert_eq!((mode(&d.join("a")), mode(&nested)), (0o700, 0o700));
        let f = nested.join("f");
        create(&f).expect("create");
        assert_eq!(mode(&f), 0o600);
        // An existing file open to others is tightened when opened.
        fs::set_permissions(&f, fs::Permissions::from_mode(0o644)).expect("chmod");
        open(&f, OpenOptions::new().append(true)).expect("open");
        assert_eq!(mode(&f), 0o600);
        // A link in place of a file or a directory is refused; its target is untouched.
        let target = d.join("elsewhere");
        fs::write(&target, "x").expect("write");
        let link = nested.join("link");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        let err = create(&link).expect_err("refused").to_string();
        assert!(err.contains("symbolic link"), "{err}");
        assert_eq!(fs::read_to_string(&target).expect("read"), "x");
        let dlink = d.join("dlink");
        std::os::unix::fs::symlink(&nested, &dlink).expect("symlink");
        assert!(dir(&dlink).is_err());
        // An existing directory open to others is tightened when it holds only ddb2pg's files;
        // one with other files (a shared or project folder) is left as it is, with a warning.
        fs::set_permissions(&nested, fs::Permissions::from_mode(0o755)).expect("chmod");
        dir(&nested).expect("dir");
        assert_eq!(mode(&nested), 0o755, "holds f and link: not ours alone");
        let ours = d.join("ours");
        dir(&ours).expect("dir");
        create(&ours.join("app-0123456789ab.json")).expect("create");
        // A project folder (package.json, yarn.lock) is not ddb2pg's.
        let project = d.join("project");
        dir(&project).expect("dir");
        create(&project.join("package.json")).expect("create");
        create(&project.join("yarn.lock")).expect("create");
        fs::set_permissions(&project, fs::Permissions::from_mode(0o755)).expect("chmod");
        dir(&project).expect("dir");
        assert_eq!(mode(&project), 0o755);
        fs::set_permissions(&ours, fs::Permissions::from_mode(0o755)).expect("chmod");
        dir(&ours).expect("dir");
        assert_eq!(mode(&ours), 0o700);
        // A folder others may write to and that holds more than ddb2pg's files is refused.
        fs::set_permissions(&project, fs::Permissions::from_mode(0o777)).expect("chmod");
        let err = dir(&project).expect_err("refused").to_string();
        assert!(err.contains("any user can write to it"), "{err}");
        // A sticky one (like /tmp) is used: others cannot rename or remove our files there.
        fs::set_permissions(&project, fs::Permissions::from_mode(0o1777)).expect("chmod");
        dir(&project).expect("sticky");
    }

    #[test]
    fn a_clones_checkpoint_folder_is_ours_to_tighten() {
        let d = tempdir("clone");
        // A fresh clone's checkpoints/: a placeholder, the umask's 0755.
        let cp = d.join("checkpoints");
        fs::create_dir_all(&cp).expect("mkdir");
        fs::write(cp.join(".gitkeep"), "").expect("write");
        fs::set_permissions(&cp, fs::Permissions::from_mode(0o755)).expect("chmod");
        let m = fs::symlink_metadata(&cp).expect("stat");
        assert_eq!(only_ours(&cp, &m), Some(Contents::Empty));
        dir(&cp).expect("dir");
        assert_eq!(
            mode(&cp),
            0o700,
            "tightened: nothing in it but the placeholder"
        );
        // With ddb2pg's files beside the placeholder it is still ddb2pg's folder.
        create(&cp.join("app-0123456789ab.json")).expect("create");
        assert_eq!(only_ours(&cp, &m), Some(Contents::Ours));
        fs::set_permissions(&cp, fs::Permissions::from_mode(0o755)).expect("chmod");
        dir(&cp).expect("dir");
        assert_eq!(mode(&cp), 0o700);
        // Any other dotfile is someone else's (a project's .env): left as it is.
        fs::write(cp.join(".env"), "").expect("write");
        fs::set_permissions(&cp, fs::Permissions::from_mode(0o755)).expect("chmod");
        assert_eq!(only_ours(&cp, &m), None);
        dir(&cp).expect("dir");
        assert_eq!(mode(&cp), 0o755);
    }

    #[test]
    fn own_folders_are_created_private_or_refused() {
        let d = tempdir("own");
        let fresh = d.join("fresh");
        own_dir(&fresh, "copies", "set TMPDIR").expect("created");
        assert_eq!(mode(&fresh), 0o700);
        own_dir(&fresh, "copies", "set TMPDIR").expect("ours, 0700: used");
        // Ours but open to others: refused, not tightened (someone else may have written).
        fs::set_permissions(&fresh, fs::Permissions::from_mode(0o777)).expect("chmod");
        let err = own_dir(&fresh, "copies", "set TMPDIR")
            .expect_err("refused")
            .to_string();
        assert!(
            err.contains(&fresh.display().to_string())
                && err.contains("mode 0777")
                && err.contains("rm -r")
                && err.contains("set TMPDIR"),
            "{err}"
        );
        assert_eq!(mode(&fresh), 0o777, "left as it is");
        // A file or a link in its place.
        let file = d.join("file");
        fs::write(&file, "x").expect("write");
        assert!(own_dir(&file, "copies", "set TMPDIR").is_err());
        let link = d.join("link");
        std::os::unix::fs::symlink(d.join("elsewhere"), &link).expect("symlink");
        let err = own_dir(&link, "copies", "set TMPDIR")
            .expect_err("refused")
            .to_string();
        assert!(err.contains("symbolic link"), "{err}");
        assert!(!d.join("elsewhere").exists());
    }

    /// Give user `uid` rwx on `dir` through an access ACL (the kernel's xattr format, version
    /// 2: entries of tag, permissions, id). False where the filesystem has no ACLs.
    fn set_acl_user_rwx(dir: &Path, uid: u32) -> bool {
        const ANY: u32 = u32::MAX;
        let mut acl = 2u32.to_le_bytes().to_vec();
        for (tag, perm, id) in [
            (0x01u16, 7u16, ANY), // owner
            (0x02, 7, uid),       // the named user
            (0x04, 7, ANY),       // owning group
            (0x10, 7, ANY),       // mask
            (0x20, 5, ANY),       // others
        ] {
            acl.extend(tag.to_le_bytes());
            acl.extend(perm.to_le_bytes());
            acl.extend(id.to_le_bytes());
        }
        let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).expect("c path");
        // SAFETY: NUL-terminated strings and a buffer of the length passed.
        let r = unsafe {
            libc::setxattr(
                c.as_ptr(),
                c"system.posix_acl_access".as_ptr(),
                acl.as_ptr().cast(),
                acl.len(),
                0,
            )
        };
        r == 0
    }

    #[test]
    fn a_setgid_parent_and_a_group_of_ours_are_fine() {
        use std::os::unix::fs::MetadataExt;
        // A folder made inside a setgid parent (a Kubernetes emptyDir with fsGroup is 2777)
        // inherits the bit: 2700 is still this user's alone.
        let d = tempdir("setgid");
        fs::set_permissions(&d, fs::Permissions::from_mode(0o2777)).expect("chmod");
        let made = d.join("made");
        own_dir(&made, "copies", "set TMPDIR").expect("created in a setgid parent");
        let m = fs::symlink_metadata(&made).expect("stat");
        assert_eq!(m.mode() & 0o7777, 0o2700, "inherited setgid");
        own_dir(&made, "copies", "set TMPDIR").expect("ours, 2700: used again");
        // A checkpoint folder only its owner and a group of ours can write to (a volume with
        // fsGroup: 2775), holding more than ddb2pg's files (lost+found): used, left as it is.
        let shared = d.join("shared");
        fs::create_dir(&shared).expect("mkdir");
        fs::create_dir(shared.join("lost+found")).expect("mkdir");
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o2775)).expect("chmod");
        assert!(in_group(fs::symlink_metadata(&shared).expect("stat").gid()));
        dir(&shared).expect("group-writable by a group of ours");
        assert_eq!(mode(&shared), 0o775);
        // An ACL naming another user with write access (its mask is the group bits, rwx):
        // refused, though the mode alone looks like "owner and a group of ours".
        if set_acl_user_rwx(&shared, 65534) {
            let err = dir(&shared).expect_err("refused").to_string();
            assert!(err.contains("its ACL lets other users"), "{err}");
            // SAFETY: NUL-terminated strings.
            let c = std::ffi::CString::new(shared.as_os_str().as_encoded_bytes()).expect("c");
            unsafe { libc::removexattr(c.as_ptr(), c"system.posix_acl_access".as_ptr()) };
            fs::set_permissions(&shared, fs::Permissions::from_mode(0o2775)).expect("chmod");
            dir(&shared).expect("the ACL removed: used again");
        }
        // Writable by anyone: refused, and the message says so.
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o2777)).expect("chmod");
        let err = dir(&shared).expect_err("refused").to_string();
        assert!(err.contains("any user can write to it"), "{err}");
    }

    #[test]
    fn folders_of_another_user_are_refused() {
        // Only root can give a folder away.
        if uid() != 0 {
            return;
        }
        let d = tempdir("theirs");
        let theirs = d.join("theirs");
        own_dir(&theirs, "copies", "set TMPDIR").expect("created");
        std::os::unix::fs::chown(&theirs, Some(65534), None).expect("chown");
        let err = own_dir(&theirs, "copies", "set TMPDIR")
            .expect_err("refused")
            .to_string();
        assert!(err.contains("owned by user 65534"), "{err}");
        let err = dir(&theirs).expect_err("refused").to_string();
        assert!(err.contains("another user controls it"), "{err}");
        // Writable by a group we are not in (root is in group 0 only): refused, naming it.
        let grouped = d.join("grouped");
        fs::create_dir(&grouped).expect("mkdir");
        fs::create_dir(grouped.join("lost+found")).expect("mkdir");
        std::os::unix::fs::chown(&grouped, Some(0), Some(65532)).expect("chown");
        fs::set_permissions(&grouped, fs::Permissions::from_mode(0o2775)).expect("chmod");
        if !in_group(65532) {
            let err = dir(&grouped).expect_err("refused").to_string();
            assert!(
                err.contains("members of group 65532, which you are not in"),
                "{err}"
            );
        }
        // A file of another user in a folder of ours: refused by name, not read or changed.
        let planted = d.join("app-0123456789ab.json");
        fs::write(&planted, "{}").expect("write");
        fs::set_permissions(&planted, fs::Permissions::from_mode(0o644)).expect("chmod");
        std::os::unix::fs::chown(&planted, Some(65534), None).expect("chown");
        let err = tighten_file(&planted).expect_err("refused").to_string();
        assert!(
            err.contains("app-0123456789ab.json") && err.contains("belongs to user 65534"),
            "{err}"
        );
        assert_eq!(mode(&planted), 0o644, "left as it is");
    }
}
