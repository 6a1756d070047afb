//! The exclusive lock on a run directory (flock(2) on its `lock` file).

use super::*;

/// The exclusive lock on a run directory; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct RunLock {
    _file: File,
    path: PathBuf,
}

impl RunLock {
    /// Takes the lock of the run directory `dir` without waiting.
    ///
    /// The lock is flock(2). On a local disk it is what it says; on a shared file system it
    /// guards against another node only where the file system makes flock cluster-wide: NFS
    /// (Linux turns flock into a POSIX lock the server arbitrates, unless mounted `nolock` or
    /// `local_lock=flock|all`), Lustre mounted with `flock` (not `localflock`), GPFS, CephFS.
    /// Where the file system refuses flock the error says so; README, "Shared file systems".
    pub fn acquire(dir: &Path) -> Result<RunLock> {
        use std::io::{Read, Seek};
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(StoreError::io("open", &path))?;
        if let Err(error) = flock_exclusive(&file) {
            if error.kind() != std::io::ErrorKind::WouldBlock {
                return Err(if lock_unsupported(&error) {
                    StoreError::LockUnsupported {
                        lock: path,
                        source: error,
                    }
                } else {
                    StoreError::io("lock", &path)(error)
                });
            }
            // The holder writes its pid just after it takes the lock: give it a moment.
            let mut holder = String::new();
            for _ in 0..10 {
                holder.clear();
                let _ = file.rewind();
                let _ = file.read_to_string(&mut holder);
                if !holder.trim().is_empty() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            let holder = holder.trim();
            return Err(StoreError::Locked {
                path: dir.to_owned(),
                lock: path.clone(),
                holder: if holder.is_empty() {
                    "unknown".to_owned()
                } else {
                    holder.to_owned()
                },
            });
        }
        file.set_len(0).map_err(StoreError::io("write", &path))?;
        file.rewind().map_err(StoreError::io("write", &path))?;
        // The host too: on a shared file system the holder may be another node's process.
        let holder = match hostname() {
            Some(host) => format!("{} on {host}", std::process::id()),
            None => std::process::id().to_string(),
        };
        writeln!(file, "{holder}").map_err(StoreError::io("write", &path))?;
        Ok(RunLock { _file: file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Errors by which a file system says it does not do flock at all (Lustre without `flock` or
/// `localflock`: ENOSYS; NFSv3 without a lock manager: ENOLCK), as opposed to a lock held.
fn lock_unsupported(error: &std::io::Error) -> bool {
    #[cfg(unix)]
    {
        matches!(
            error.raw_os_error(),
            Some(libc::ENOSYS | libc::ENOLCK | libc::EOPNOTSUPP)
        )
    }
    #[cfg(not(unix))]
    {
        let _ = error;
        false
    }
}

#[cfg(unix)]
#[allow(unsafe_code)]
fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into the buffer it is given.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).trim().to_owned();
    (!name.is_empty()).then_some(name)
}

#[cfg(not(unix))]
fn hostname() -> Option<String> {
    None
}

#[cfg(unix)]
#[allow(unsafe_code)]
fn flock_exclusive(file: &File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a descriptor this function borrows; no memory is involved.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(unix))]
fn flock_exclusive(_file: &File) -> std::io::Result<()> {
    Ok(())
}
