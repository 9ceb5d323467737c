//! berth's interface to the operating system, and the small building blocks every layer
//! above shares. All of berth's `unsafe` code lives in this crate: the raw system calls
//! `nix` does not wrap, process creation, and the few fd, signal and terminal operations
//! that need it, each behind a safe function with its `SAFETY` argument.
//! The calls a container's set-up makes go through the [`syscall::Syscall`] trait, so
//! that the runtime can test their order without root.

pub mod fd;
pub mod fs;
pub mod memory;
pub mod net;
pub mod process;
pub mod record;
pub mod signal;
pub mod syscall;
pub mod tty;
