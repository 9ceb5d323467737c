//! Terminal ioctls that `nix` does not wrap.

use std::os::fd::{AsRawFd, BorrowedFd};

use nix::errno::Errno;

/// In a process after `setsid`: the terminal on `fd` becomes its controlling terminal.
pub fn make_controlling(fd: BorrowedFd<'_>) -> Result<(), Errno> {
    // SAFETY: TIOCSCTTY takes an integer argument and touches no memory of ours.
    Errno::result(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSCTTY, 0) }).map(drop)
}

/// Gives `to` the window size of the terminal `from`; false if `from` is no terminal.
pub fn copy_window_size(from: BorrowedFd<'_>, to: BorrowedFd<'_>) -> bool {
    // SAFETY: winsize is plain data; the ioctls read and write only `size`.
    unsafe {
        let mut size: libc::winsize = std::mem::zeroed();
        if libc::ioctl(from.as_raw_fd(), libc::TIOCGWINSZ, &mut size) != 0 {
            return false;
        }
        libc::ioctl(to.as_raw_fd(), libc::TIOCSWINSZ, &size);
    }
    true
}
