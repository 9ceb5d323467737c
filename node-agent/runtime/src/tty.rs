//! Pseudo-terminals for `-t`. As runc does with its console socket, the terminal is made
//! inside the container (from its own `/dev/ptmx`, so the name in `/dev/pts` resolves
//! there too): the process makes it its controlling terminal and sends the other side to
//! berth over a Unix socket. berth reads it for output, writes the user's input to it,
//! and keeps it the size of the user's terminal, which is put in raw mode meanwhile.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::termios::{self, SetArg, Termios};

/// In the process, once its `/dev` is the container's: a new terminal from `/dev/ptmx`,
/// made the process's stdin, stdout and stderr; returns the master side.
pub fn open_as_stdio() -> Result<OwnedFd, Errno> {
    use nix::fcntl::OFlag;
    let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)?;
    nix::pty::grantpt(&master)?;
    nix::pty::unlockpt(&master)?;
    let name = nix::pty::ptsname_r(&master)?;
    let slave = nix::fcntl::open(
        name.as_str(),
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    nix::unistd::dup2_stdin(&slave)?;
    nix::unistd::dup2_stdout(&slave)?;
    nix::unistd::dup2_stderr(&slave)?;
    Ok(berth_sys::fd::into_owned(master))
}

/// The socket pair that carries the master side out: berth keeps the first end.
pub fn console_socket() -> Result<(OwnedFd, OwnedFd), Errno> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
    socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
}

/// Sends `fd` over the console socket.
pub fn send(socket: &OwnedFd, fd: &OwnedFd) -> Result<(), Errno> {
    use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
    let fds = [fd.as_raw_fd()];
    let iov = [std::io::IoSlice::new(b"t")];
    sendmsg::<()>(
        socket.as_raw_fd(),
        &iov,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map(drop)
}

/// Receives the master side; `None` if the process closed the socket without sending it
/// (it failed first, and says why on its error pipe).
pub fn receive(socket: &OwnedFd) -> Option<OwnedFd> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    let mut byte = [0u8; 1];
    let mut iov = [std::io::IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .ok()?;
    msg.cmsgs().ok()?.find_map(|c| match c {
        ControlMessageOwned::ScmRights(fds) => berth_sys::fd::received(&fds).into_iter().next(),
        _ => None,
    })
}

/// Gives `to` the window size of the user's terminal: this process's stdin, or else its
/// stdout, whichever is a terminal (neither, for a detached monitor: nothing to do).
pub fn copy_size(to: BorrowedFd<'_>) {
    for from in [0, 1] {
        if berth_sys::tty::copy_window_size(berth_sys::fd::stdio(from), to) {
            return;
        }
    }
}

/// The user's terminal in raw mode (keys go to the container's terminal as typed,
/// Ctrl-C included); restored when dropped.
pub struct RawMode<'a> {
    fd: BorrowedFd<'a>,
    saved: Termios,
}

impl<'a> RawMode<'a> {
    /// `None` when `fd` is not a terminal.
    pub fn enter(fd: BorrowedFd<'a>) -> Option<RawMode<'a>> {
        let saved = termios::tcgetattr(fd).ok()?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(fd, SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode { fd, saved })
    }
}

impl Drop for RawMode<'_> {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(self.fd, SetArg::TCSANOW, &self.saved);
    }
}

/// Copies the user's input (fd 0) to `master` and `master`'s output to fd 1 until the
/// terminal's other side is closed by every process that had it.
pub fn proxy(master: &OwnedFd, forward_input: bool) {
    let (stdin, stdout) = (berth_sys::fd::stdio(0), berth_sys::fd::stdio(1));
    let mut input_open = forward_input;
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let mut fds = vec![PollFd::new(master.as_fd(), PollFlags::POLLIN)];
        if input_open {
            fds.push(PollFd::new(stdin, PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Err(Errno::EINTR) => continue,
            Err(_) => return,
            Ok(_) => {}
        }
        let ready = |i: usize| {
            fds.get(i)
                .and_then(|f| f.revents())
                .is_some_and(|r| !r.is_empty())
        };
        let (output, input) = (ready(0), ready(1));
        if output {
            match nix::unistd::read(master, &mut buf) {
                // EIO: every process closed its side.
                Ok(0) | Err(Errno::EIO) => return,
                Ok(n) => {
                    let _ = nix::unistd::write(stdout, &buf[..n]);
                }
                Err(Errno::EINTR | Errno::EAGAIN) => {}
                Err(_) => return,
            }
        }
        if input {
            match nix::unistd::read(stdin, &mut buf) {
                Ok(0) | Err(_) => input_open = false,
                Ok(n) => {
                    let _ = nix::unistd::write(master, &buf[..n]);
                }
            }
        }
    }
}
