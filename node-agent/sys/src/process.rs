//! Making processes: a fork-like `clone` that may start the child in new namespaces,
//! and the exit a forked child takes. `fork` is safe to call because it checks the one
//! condition that makes forking Rust code sound: no other thread exists.

use std::io;

use nix::errno::Errno;
use nix::sched::CloneFlags;
use nix::unistd::Pid;

/// Why a fork did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ForkError {
    #[error(
        "refusing to fork a process with {0} threads: the child could inherit a lock held \
         by another thread forever (this is a bug in berth)"
    )]
    Threaded(usize),
    #[error("counting this process's threads: {0}")]
    Threads(#[source] io::Error),
    #[error("{0}")]
    Clone(#[from] Errno),
}

/// How many threads this process has now.
pub fn thread_count() -> io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/task")?.count())
}

/// Like `fork()`, but the child starts in the new namespaces `flags` asks for (a new PID
/// namespace included, where the child is PID 1). Returns `None` in the child.
///
/// Refused unless the caller is the process's only thread: the child is a copy of the
/// calling thread alone, so a lock another thread held (the allocator's, stdio's) would
/// stay locked in it forever. With one thread, the child may run ordinary Rust code.
pub fn fork(flags: CloneFlags) -> Result<Option<Pid>, ForkError> {
    match thread_count().map_err(ForkError::Threads)? {
        1 => {}
        n => return Err(ForkError::Threaded(n)),
    }
    // SAFETY: with a null stack the kernel gives the child a copy-on-write copy of the
    // caller's stack, exactly as fork() does; no CLONE_VM, so nothing is shared. The
    // process is single-threaded (checked above), so no lock can be held by a thread
    // the child lacks.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone,
            flags.bits() as libc::c_long | libc::SIGCHLD as libc::c_long,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    match ret {
        -1 => Err(Errno::last().into()),
        0 => Ok(None),
        pid => Ok(Some(Pid::from_raw(pid as i32))),
    }
}

/// Ends a forked child at once with `code`, without running atexit handlers or
/// flushing stdio buffers that are copies of the parent's.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit has no preconditions; it never returns.
    unsafe { libc::_exit(code) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_threaded_process_is_refused() {
        // A second thread that lives until the check is done, whatever the harness does.
        let (done, wait) = std::sync::mpsc::channel::<()>();
        let other = std::thread::spawn(move || wait.recv());
        let result = fork(CloneFlags::empty());
        drop(done);
        let _ = other.join();
        assert!(
            matches!(result, Err(ForkError::Threaded(n)) if n > 1),
            "{result:?}"
        );
    }
}
