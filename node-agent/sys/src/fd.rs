//! Borrowing and taking ownership of file descriptors where the type system cannot see
//! who owns them: the standard streams, and descriptors the kernel hands over.

use std::os::fd::{BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};

/// Standard input, output or error (0, 1 or 2).
///
/// # Panics
/// On any other descriptor number.
pub fn stdio(fd: RawFd) -> BorrowedFd<'static> {
    assert!((0..=2).contains(&fd), "fd {fd} is not a standard stream");
    // SAFETY: the standard streams are never closed by berth, and the Rust runtime
    // opens /dev/null on any of them that was closed at startup, so they stay valid
    // for the life of the process.
    unsafe { BorrowedFd::borrow_raw(fd) }
}

pub fn stdin() -> BorrowedFd<'static> {
    stdio(0)
}

/// Takes ownership of a descriptor from a value that owns one without `OwnedFd`'s type
/// (a pty master from nix, say).
pub fn into_owned(fd: impl IntoRawFd) -> OwnedFd {
    // SAFETY: `into_raw_fd` gives up ownership of an open descriptor, which is now ours.
    unsafe { OwnedFd::from_raw_fd(fd.into_raw_fd()) }
}

/// Takes ownership of descriptors received in an `SCM_RIGHTS` message.
pub fn received(fds: &[RawFd]) -> Vec<OwnedFd> {
    fds.iter()
        // SAFETY: the kernel installed each descriptor of SCM_RIGHTS in this process
        // for this message alone: nothing else owns them.
        .map(|fd| unsafe { OwnedFd::from_raw_fd(*fd) })
        .collect()
}
