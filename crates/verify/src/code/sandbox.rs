//! Running an untrusted Python program in a child process with hard limits.
//!
//! Layers, each covering for the others:
//! - `setsid`: the child leads a new process group, so the whole tree is killed with one
//!   `killpg(SIGKILL)` on timeout, output overflow, and after every run.
//! - rlimits: address space, CPU seconds, file size, open files, processes, no core dumps.
//! - when run as root, an unprivileged uid of its own (so `RLIMIT_NPROC`, which root ignores,
//!   bounds fork bombs, and the program cannot touch root's files).
//! - a new network namespace (no interfaces but a down loopback) where the OS allows it.
//! - a fresh temporary directory as cwd, `HOME` and `TMPDIR`, a minimal environment, `python3 -I`.
//! - a Python audit hook (see `guard.py`) refusing writes outside the directory, process creation,
//!   signals, sockets and ctypes.

// fork/exec, rlimits, pipes and process groups are FFI: this module is where they live.
#![allow(unsafe_code)]

use std::fs;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::{Check, Reason, TimeLimit, Verdict};

const GUARD: &str = include_str!("guard.py");
/// Stderr marker of a refusal by the audit hook.
const GUARD_MARKER: &str = "PermissionError: sandbox: ";
const STDERR_TAIL_CHARS: usize = 600;

/// Resource limits for one run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SandboxLimits {
    /// Wall-clock limit; the process group is killed when it passes. Seconds in config files.
    #[serde(with = "seconds")]
    pub wall_time: Duration,
    /// CPU-time limit (`RLIMIT_CPU`, whole seconds, rounded up).
    #[serde(with = "seconds")]
    pub cpu_time: Duration,
    /// Address-space limit (`RLIMIT_AS`).
    pub memory_bytes: u64,
    /// Most bytes kept from each of stdout and stderr, and the largest file the program may write.
    pub output_bytes: u64,
    /// Most processes (and threads) the program's user may have (`RLIMIT_NPROC`).
    pub max_processes: u32,
}

impl Default for SandboxLimits {
    fn default() -> Self {
        SandboxLimits {
            wall_time: Duration::from_secs(10),
            cpu_time: Duration::from_secs(10),
            memory_bytes: 1 << 30,
            output_bytes: 1 << 20,
            max_processes: 32,
        }
    }
}

mod seconds {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)
    }
}

/// How the program ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Termination {
    Exited(i32),
    Signaled(i32),
    /// Killed by the sandbox when the wall-clock limit passed.
    WallTimeout,
    /// Killed by the sandbox when stdout or stderr passed the output limit.
    OutputLimit,
    /// The program could not be started; the text says why.
    SpawnFailed(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxResult {
    pub termination: Termination,
    /// Captured output, lossily decoded and cut at the output limit.
    pub stdout: String,
    pub stderr: String,
    pub output_truncated: bool,
    pub wall_time: Duration,
    pub cpu_time: Duration,
    /// Whether the program ran in its own network namespace.
    pub network_isolated: bool,
    /// Whether the program ran under an unprivileged uid of its own.
    pub privileges_dropped: bool,
    /// Processes of the run still alive after clean-up (zombies excluded); 0 unless something
    /// escaped the process group and could not be killed.
    pub leftover_processes: usize,
    #[serde(skip)]
    limits: SandboxLimits,
}

impl SandboxResult {
    pub fn success(&self) -> bool {
        self.termination == Termination::Exited(0)
    }

    /// The verdict on a test program: pass on exit status 0, otherwise the most specific reason.
    pub fn verdict(&self) -> Verdict {
        match self.failure() {
            None => Verdict::pass(Check::Code),
            Some(reason) => Verdict::fail(Check::Code, reason),
        }
    }

    fn failure(&self) -> Option<Reason> {
        let limits = &self.limits;
        let stderr = &self.stderr;
        let signal = match &self.termination {
            Termination::Exited(0) => return None,
            Termination::SpawnFailed(detail) => {
                return Some(Reason::CodeSandboxError {
                    detail: detail.clone(),
                });
            }
            Termination::WallTimeout => {
                return Some(Reason::CodeTimeout {
                    limit: TimeLimit::Wall,
                    limit_ms: millis(limits.wall_time),
                });
            }
            Termination::OutputLimit => {
                return Some(Reason::CodeOutputLimit {
                    limit_bytes: limits.output_bytes,
                });
            }
            Termination::Signaled(signal) => Some(*signal),
            Termination::Exited(_) => None,
        };
        let cpu_exhausted = self.cpu_time + Duration::from_millis(50) >= limits.cpu_time;
        if signal == Some(libc::SIGXCPU) || (signal == Some(libc::SIGKILL) && cpu_exhausted) {
            return Some(Reason::CodeTimeout {
                limit: TimeLimit::Cpu,
                limit_ms: millis(limits.cpu_time),
            });
        }
        // Python ignores SIGXFSZ, so a file past RLIMIT_FSIZE shows up as EFBIG.
        if signal == Some(libc::SIGXFSZ) || stderr.contains("[Errno 27] File too large") {
            return Some(Reason::CodeOutputLimit {
                limit_bytes: limits.output_bytes,
            });
        }
        if stderr.contains("MemoryError")
            || stderr.contains("Cannot allocate memory")
            || stderr.contains("std::bad_alloc")
        {
            return Some(Reason::CodeMemory {
                limit_bytes: limits.memory_bytes,
            });
        }
        if let Some(at) = stderr.rfind(GUARD_MARKER) {
            let detail = stderr[at + GUARD_MARKER.len()..]
                .lines()
                .next()
                .unwrap_or("")
                .to_string();
            return Some(Reason::CodeForbidden { detail });
        }
        if stderr.contains("BlockingIOError") && stderr.contains("Resource temporarily unavailable")
        {
            return Some(Reason::CodeProcessLimit {
                detail: tail(stderr),
            });
        }
        if signal.is_none()
            && let Some(detail) = syntax_error(stderr)
        {
            return Some(Reason::CodeSyntax { detail });
        }
        let status = match signal {
            Some(signal) => format!("killed by signal {signal}"),
            None => match &self.termination {
                Termination::Exited(code) => format!("exit status {code}"),
                other => format!("{other:?}"),
            },
        };
        Some(Reason::CodeFailed {
            status,
            stderr_tail: tail(stderr),
        })
    }
}

/// The message of a `SyntaxError` (or `IndentationError`, `TabError`) raised while compiling
/// the program itself: the traceback ends with it and its last frame is `main.py`, not code the
/// program compiled at run time (`eval`, `exec`), which is an ordinary failure.
fn syntax_error(stderr: &str) -> Option<String> {
    let mut lines = stderr.lines().rev().filter(|line| !line.trim().is_empty());
    let last = lines.next()?;
    let kind = ["SyntaxError", "IndentationError", "TabError"]
        .into_iter()
        .find(|kind| last.starts_with(kind) && last[kind.len()..].starts_with(':'))?;
    let frame = lines.find(|line| line.trim_start().starts_with("File \""))?;
    let in_program = frame.contains("main.py\"");
    in_program.then(|| format!("{kind}{}", &last[kind.len()..]))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn tail(text: &str) -> String {
    let text = text.trim_end();
    let skip = text.chars().count().saturating_sub(STDERR_TAIL_CHARS);
    text.chars().skip(skip).collect()
}

/// A configured sandbox; cheap to clone, safe to use from many threads at once.
#[derive(Debug, Clone)]
pub struct Sandbox {
    limits: SandboxLimits,
    python: Option<PathBuf>,
    audit_guard: bool,
}

impl Sandbox {
    /// Uses the first `python3` in `/usr/local/bin`, `/usr/bin`, `/bin`, then `PATH`.
    pub fn new(limits: SandboxLimits) -> Self {
        Sandbox {
            limits,
            python: find_python(),
            audit_guard: true,
        }
    }

    pub fn with_python(mut self, python: impl Into<PathBuf>) -> Self {
        self.python = Some(python.into());
        self
    }

    /// Turns the in-interpreter audit hook off, leaving only the OS-level limits (for programs
    /// that legitimately start processes, and for testing those limits alone).
    pub fn with_audit_guard(mut self, enabled: bool) -> Self {
        self.audit_guard = enabled;
        self
    }

    pub fn limits(&self) -> &SandboxLimits {
        &self.limits
    }

    /// The interpreter that will run programs, if one was found.
    pub fn python(&self) -> Option<&Path> {
        self.python.as_deref()
    }

    /// Runs `program` as a Python script under the limits and reports how it ended.
    pub fn run_python(&self, program: &str) -> SandboxResult {
        let started = Instant::now();
        let mut result = match self.try_run(program, started) {
            Ok(result) => result,
            Err(detail) => SandboxResult {
                termination: Termination::SpawnFailed(detail),
                stdout: String::new(),
                stderr: String::new(),
                output_truncated: false,
                wall_time: started.elapsed(),
                cpu_time: Duration::ZERO,
                network_isolated: false,
                privileges_dropped: false,
                leftover_processes: 0,
                limits: self.limits.clone(),
            },
        };
        result.limits = self.limits.clone();
        result
    }

    /// [`Sandbox::run_python`], judged: pass when the program exits with status 0.
    pub fn check_program(&self, program: &str) -> Verdict {
        self.run_python(program).verdict()
    }

    fn try_run(&self, program: &str, started: Instant) -> Result<SandboxResult, String> {
        let python = self
            .python
            .as_deref()
            .ok_or("python3 was not found (looked in /usr/local/bin, /usr/bin, /bin and PATH)")?;
        let dir = tempfile::Builder::new()
            .prefix("distillery-sandbox-")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        let script = dir.path().join("main.py");
        fs::write(&script, program).map_err(|e| format!("writing program: {e}"))?;

        // SAFETY: geteuid has no preconditions.
        let uid = (unsafe { libc::geteuid() } == 0 && usable_by_others(python)).then(sandbox_uid);
        if let Some(uid) = uid {
            for path in [dir.path(), script.as_path()] {
                std::os::unix::fs::chown(path, Some(uid), Some(uid))
                    .map_err(|e| format!("chown: {e}"))?;
            }
        }

        let (status_read, status_write) = cloexec_pipe().map_err(|e| format!("pipe: {e}"))?;
        let mut command = Command::new(python);
        command.arg("-I");
        if self.audit_guard {
            command.arg("-c").arg(GUARD);
        }
        command
            .arg("main.py")
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", dir.path())
            .env("TMPDIR", dir.path())
            .env("LANG", "C.UTF-8")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let setup = ChildSetup::new(&self.limits, uid, status_write.as_raw_fd());
        // SAFETY: `ChildSetup::apply` only calls async-signal-safe functions (setsid, unshare,
        // write, setrlimit, setgroups, setgid, setuid, prctl) on values prepared before the fork.
        unsafe {
            command.pre_exec(move || setup.apply());
        }
        let mut child = command
            .spawn()
            .map_err(|e| format!("starting {}: {e}", python.display()))?;
        drop(status_write);
        let pid = child.id() as libc::pid_t;

        let overflow = Arc::new(AtomicBool::new(false));
        let limit = usize::try_from(self.limits.output_bytes).unwrap_or(usize::MAX);
        let stdout = child
            .stdout
            .take()
            .map(|s| capture(s, limit, Arc::clone(&overflow)));
        let stderr = child
            .stderr
            .take()
            .map(|s| capture(s, limit, Arc::clone(&overflow)));
        let network_isolated = read_flag(status_read);

        let deadline = started + self.limits.wall_time;
        let (status, rusage, killed) = wait_with_deadline(pid, deadline, &overflow);
        // Whatever happened, nothing of this run may outlive it.
        let leftover_processes = kill_everything(pid, uid);

        let (stdout, out_cut) = collect(stdout);
        let (stderr, err_cut) = collect(stderr);
        let termination = match killed {
            Some(kill) => kill,
            None if libc::WIFEXITED(status) => Termination::Exited(libc::WEXITSTATUS(status)),
            None if libc::WIFSIGNALED(status) => Termination::Signaled(libc::WTERMSIG(status)),
            None => Termination::Signaled(0),
        };
        Ok(SandboxResult {
            termination,
            stdout,
            stderr,
            output_truncated: out_cut || err_cut,
            wall_time: started.elapsed(),
            cpu_time: cpu_time(&rusage),
            network_isolated,
            privileges_dropped: uid.is_some(),
            leftover_processes,
            limits: self.limits.clone(),
        })
    }
}

fn find_python() -> Option<PathBuf> {
    let path_dirs = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    ["/usr/local/bin", "/usr/bin", "/bin"]
        .into_iter()
        .map(PathBuf::from)
        .chain(path_dirs)
        .map(|dir| dir.join("python3"))
        .find(|candidate| candidate.is_file())
}

/// Whether a user other than the owner can execute `path` (every directory on the way searchable),
/// i.e. whether dropping privileges would still let the interpreter start.
fn usable_by_others(path: &Path) -> bool {
    let Ok(real) = fs::canonicalize(path) else {
        return false;
    };
    let executable = fs::metadata(&real).is_ok_and(|m| m.permissions().mode() & 0o001 != 0);
    executable
        && real
            .ancestors()
            .skip(1)
            .all(|dir| fs::metadata(dir).is_ok_and(|m| m.permissions().mode() & 0o001 != 0))
}

/// A uid used by nobody else, so `RLIMIT_NPROC` counts only this run's processes and clean-up can
/// find every one of them.
fn sandbox_uid() -> libc::uid_t {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let run = NEXT.fetch_add(1, Ordering::Relaxed) % 1000;
    1_500_000_000 + (std::process::id() % 100_000) * 1000 + run
}

fn cloexec_pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

#[cfg(target_env = "gnu")]
type Resource = libc::__rlimit_resource_t;
#[cfg(not(target_env = "gnu"))]
type Resource = libc::c_int;

/// Everything the child does between fork and exec, prepared in the parent.
struct ChildSetup {
    limits: [(Resource, libc::rlim_t, libc::rlim_t); 6],
    uid: Option<libc::uid_t>,
    status_fd: libc::c_int,
}

impl ChildSetup {
    fn new(limits: &SandboxLimits, uid: Option<libc::uid_t>, status_fd: libc::c_int) -> Self {
        let cpu = limits.cpu_time.as_secs() + u64::from(limits.cpu_time.subsec_nanos() > 0);
        let cpu = cpu.max(1);
        ChildSetup {
            limits: [
                (libc::RLIMIT_AS, limits.memory_bytes, limits.memory_bytes),
                // SIGXCPU at the soft limit, SIGKILL a second later if it is ignored.
                (libc::RLIMIT_CPU, cpu, cpu + 1),
                (libc::RLIMIT_FSIZE, limits.output_bytes, limits.output_bytes),
                (libc::RLIMIT_NOFILE, 64, 64),
                (
                    libc::RLIMIT_NPROC,
                    u64::from(limits.max_processes),
                    u64::from(limits.max_processes),
                ),
                (libc::RLIMIT_CORE, 0, 0),
            ],
            uid,
            status_fd,
        }
    }

    /// Runs in the forked child: async-signal-safe calls only, no allocation.
    fn apply(&self) -> std::io::Result<()> {
        // SAFETY: all calls below are async-signal-safe and take plain values or pointers to
        // locals that live through the call.
        unsafe {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let isolated = libc::unshare(libc::CLONE_NEWNET) == 0;
            let flag = if isolated { b"1" } else { b"0" };
            libc::write(self.status_fd, flag.as_ptr().cast(), 1);
            for (resource, soft, hard) in self.limits {
                let limit = libc::rlimit {
                    rlim_cur: soft,
                    rlim_max: hard,
                };
                if libc::setrlimit(resource, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if let Some(uid) = self.uid
                && (libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(uid) != 0
                    || libc::setuid(uid) != 0)
            {
                return Err(std::io::Error::last_os_error());
            }
            // If the verifier dies, so does the program. Set after the credential change, which
            // clears it.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
            let (on, unused) = (1 as libc::c_ulong, 0 as libc::c_ulong);
            libc::prctl(libc::PR_SET_NO_NEW_PRIVS, on, unused, unused, unused);
        }
        Ok(())
    }
}

fn read_flag(read_end: OwnedFd) -> bool {
    let mut file = fs::File::from(read_end);
    let mut byte = [0u8; 1];
    matches!(file.read(&mut byte), Ok(1) if byte[0] == b'1')
}

type Captured = mpsc::Receiver<(Vec<u8>, bool)>;

/// Reads a pipe on its own thread, keeping at most `limit` bytes; past that it flags `overflow`
/// (the run is then killed) and keeps draining so the writer never blocks.
fn capture(
    mut pipe: impl Read + Send + 'static,
    limit: usize,
    overflow: Arc<AtomicBool>,
) -> Captured {
    let (send, receive) = mpsc::channel();
    thread::spawn(move || {
        let mut kept = Vec::new();
        let mut truncated = false;
        let mut chunk = [0u8; 8192];
        while let Ok(n) = pipe.read(&mut chunk) {
            if n == 0 {
                break;
            }
            let room = limit.saturating_sub(kept.len());
            kept.extend_from_slice(&chunk[..n.min(room)]);
            if n > room {
                truncated = true;
                overflow.store(true, Ordering::Relaxed);
            }
        }
        let _ = send.send((kept, truncated));
    });
    receive
}

fn collect(captured: Option<Captured>) -> (String, bool) {
    // The process tree is dead by now, so the pipe closes promptly; the timeout only guards
    // against a descendant that escaped and still holds it open.
    match captured.map(|r| r.recv_timeout(Duration::from_secs(2))) {
        Some(Ok((bytes, truncated))) => (String::from_utf8_lossy(&bytes).into_owned(), truncated),
        _ => (String::new(), true),
    }
}

/// Waits for `pid`, killing its process group at the deadline or on output overflow.
fn wait_with_deadline(
    pid: libc::pid_t,
    deadline: Instant,
    overflow: &AtomicBool,
) -> (libc::c_int, libc::rusage, Option<Termination>) {
    let mut status = 0;
    // SAFETY: rusage is plain old data; all-zero is a valid value.
    let mut rusage: libc::rusage = unsafe { std::mem::zeroed() };
    let mut killed = None;
    let mut pause = Duration::from_millis(1);
    loop {
        // SAFETY: pid is our own child; status and rusage are valid for writes.
        let reaped = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut rusage) };
        if reaped == pid
            || (reaped < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR))
        {
            return (status, rusage, killed);
        }
        if killed.is_none() {
            let reason = if overflow.load(Ordering::Relaxed) {
                Some(Termination::OutputLimit)
            } else if Instant::now() >= deadline {
                Some(Termination::WallTimeout)
            } else {
                None
            };
            if let Some(reason) = reason {
                // SAFETY: signalling our child's process group.
                unsafe { libc::killpg(pid, libc::SIGKILL) };
                killed = Some(reason);
                continue;
            }
        }
        thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

fn cpu_time(rusage: &libc::rusage) -> Duration {
    let tv = |t: libc::timeval| {
        Duration::new(
            t.tv_sec.max(0) as u64,
            (t.tv_usec.max(0) as u32).saturating_mul(1000),
        )
    };
    tv(rusage.ru_utime) + tv(rusage.ru_stime)
}

/// Kills the process group led by `pgid` and, when the run had its own uid, every process of that
/// uid (which catches descendants that left the group with `setsid`). Returns how many live
/// (non-zombie) processes remain after a bounded number of attempts.
fn kill_everything(pgid: libc::pid_t, uid: Option<libc::uid_t>) -> usize {
    for attempt in 0..100 {
        // SAFETY: signalling a process group we created; ESRCH (already gone) is fine.
        unsafe { libc::killpg(pgid, libc::SIGKILL) };
        let survivors = live_processes(pgid, uid);
        if survivors.is_empty() {
            return 0;
        }
        for pid in &survivors {
            // SAFETY: each pid belongs to this run (its group or its private uid).
            unsafe { libc::kill(*pid, libc::SIGKILL) };
        }
        if attempt == 99 {
            return survivors.len();
        }
        thread::sleep(Duration::from_millis(10));
    }
    0
}

/// Live processes in group `pgid` or owned by `uid`, from `/proc`.
fn live_processes(pgid: libc::pid_t, uid: Option<libc::uid_t>) -> Vec<libc::pid_t> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<libc::pid_t>().ok())
        .filter(|pid| {
            let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            // Fields after the parenthesised command name: state, ppid, pgrp, ...
            let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
                return false;
            };
            let mut fields = rest.split_whitespace();
            let state = fields.next().unwrap_or("Z");
            let group = fields.nth(1).and_then(|g| g.parse::<libc::pid_t>().ok());
            if state == "Z" || state == "X" {
                return false;
            }
            group == Some(pgid) || uid.is_some_and(|uid| owned_by(*pid, uid))
        })
        .collect()
}

fn owned_by(pid: libc::pid_t, uid: libc::uid_t) -> bool {
    fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|status| {
        status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().next()?.parse::<libc::uid_t>().ok())
            == Some(uid)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ended(termination: Termination, stderr: &str) -> SandboxResult {
        SandboxResult {
            termination,
            stdout: String::new(),
            stderr: stderr.to_string(),
            output_truncated: false,
            wall_time: Duration::ZERO,
            cpu_time: Duration::ZERO,
            network_isolated: true,
            privileges_dropped: false,
            leftover_processes: 0,
            limits: SandboxLimits::default(),
        }
    }

    #[test]
    fn limits_read_seconds_from_config() {
        let limits: SandboxLimits =
            serde_json::from_str(r#"{"wall_time": 2.5, "max_processes": 4}"#).expect("valid");
        assert_eq!(limits.wall_time, Duration::from_millis(2500));
        assert_eq!(limits.cpu_time, SandboxLimits::default().cpu_time);
        assert!(serde_json::from_str::<SandboxLimits>(r#"{"wall_time": -1}"#).is_err());
        assert!(serde_json::from_str::<SandboxLimits>(r#"{"walltime": 1}"#).is_err());
    }

    #[test]
    fn endings_map_to_reasons() {
        let code = |t: Termination, stderr: &str| ended(t, stderr).verdict().code();
        assert_eq!(code(Termination::Exited(0), ""), "pass");
        assert_eq!(
            code(Termination::Exited(1), "AssertionError"),
            "code.failed"
        );
        assert_eq!(code(Termination::Exited(1), "MemoryError"), "code.memory");
        let syntax = "Traceback (most recent call last):\n  File \"<string>\", line 60, in <module>\n  File \"main.py\", line 5\n    return (\n           ^\nSyntaxError: '(' was never closed\n";
        assert_eq!(
            ended(Termination::Exited(1), syntax).verdict().reason(),
            Some(&Reason::CodeSyntax {
                detail: "SyntaxError: '(' was never closed".into()
            })
        );
        let indent = "  File \"/tmp/distillery-sandbox-x/main.py\", line 3\n    return 1\nIndentationError: unexpected indent\n";
        assert_eq!(code(Termination::Exited(1), indent), "code.syntax");
        // Code the program compiles at run time is the program failing, not a syntax error.
        let runtime = "Traceback (most recent call last):\n  File \"main.py\", line 2, in <module>\n    eval(\"(\")\n  File \"<string>\", line 1\n    (\n    ^\nSyntaxError: '(' was never closed\n";
        assert_eq!(code(Termination::Exited(1), runtime), "code.failed");
        assert_eq!(code(Termination::WallTimeout, ""), "code.timeout");
        assert_eq!(
            code(Termination::Signaled(libc::SIGXCPU), ""),
            "code.timeout"
        );
        assert_eq!(code(Termination::OutputLimit, ""), "code.output_limit");
        assert_eq!(
            code(Termination::SpawnFailed("no python".into()), ""),
            "code.sandbox_error"
        );
        let refused = "Traceback…\nPermissionError: sandbox: os.fork is not allowed\n";
        assert_eq!(
            ended(Termination::Exited(1), refused).verdict().reason(),
            Some(&Reason::CodeForbidden {
                detail: "os.fork is not allowed".into()
            })
        );
    }
}
