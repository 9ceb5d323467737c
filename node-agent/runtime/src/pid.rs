//! Processes named so that a recycled pid is never mistaken for them: a pid plus its
//! start time, and pidfds that pin the very process once opened.

use std::fs;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use berth_sys::syscall;
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, poll};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

/// A process named by pid plus its start time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRef {
    pub pid: i32,
    pub start_time: u64,
}

impl ProcessRef {
    pub fn of(pid: Pid) -> Option<ProcessRef> {
        start_time(pid).map(|start_time| ProcessRef {
            pid: pid.as_raw(),
            start_time,
        })
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.pid)
    }

    /// Still running (not a zombie) and still the same process.
    pub fn alive(&self) -> bool {
        start_time(self.pid()) == Some(self.start_time)
    }

    /// A pidfd on the process, if it is still alive.
    pub fn open(&self) -> Option<OwnedFd> {
        let fd = syscall::pidfd_open(self.pid()).ok()?;
        // Checked after opening: from here on the fd pins this very process.
        self.alive().then_some(fd)
    }
}

/// Field 22 of `/proc/PID/stat` (start time in clock ticks after boot); `None` if the
/// process is gone or a zombie.
fn start_time(pid: Pid) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start_time(&stat)
}

fn parse_start_time(stat: &str) -> Option<u64> {
    // The command name (field 2) may contain spaces and parentheses: skip past its end.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    if fields.first() == Some(&"Z") || fields.first() == Some(&"X") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// Waits until the process behind `pidfd` has exited, at most `timeout`; false if it
/// still runs.
pub fn wait_exit(pidfd: &OwnedFd, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, syscall::poll_timeout(left)) {
            Ok(n) if n > 0 => return true,
            Err(Errno::EINTR) => continue,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_is_read_past_odd_command_names() {
        let stat = "42 (a b) c) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 12345 1000";
        assert_eq!(parse_start_time(stat), Some(12345));
        let zombie = "42 (x) Z 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 12345 0";
        assert_eq!(parse_start_time(zombie), None);
    }

    #[test]
    fn own_process_is_alive_and_a_bogus_start_time_is_not() {
        let me = ProcessRef::of(nix::unistd::getpid()).unwrap();
        assert!(me.alive());
        assert!(me.open().is_some());
        let other = ProcessRef {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(!other.alive());
        assert!(other.open().is_none());
    }
}
