//! Signal dispositions: resetting what a process inherited, and a flag that records an
//! interrupt so a long operation can stop cleanly at its next check.

use std::sync::atomic::{AtomicBool, Ordering};

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};

/// Gives `signal` its default disposition (a child that inherited an ignored SIGPIPE
/// from Rust, say).
pub fn set_default(signal: Signal) {
    // SAFETY: SIG_DFL installs no handler of ours, so nothing can run at a bad moment.
    let _ = unsafe { nix::sys::signal::signal(signal, SigHandler::SigDfl) };
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Makes SIGINT and SIGTERM set the flag [`interrupted`] reads instead of killing the
/// process; a second one kills it (for a step that does not check the flag).
pub fn catch_interrupts() {
    let action = SigAction::new(
        SigHandler::Handler(on_interrupt),
        SaFlags::SA_RESTART | SaFlags::SA_RESETHAND,
        SigSet::empty(),
    );
    for signal in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        let _ = unsafe { sigaction(signal, &action) };
    }
}

/// Whether SIGINT or SIGTERM came since [`catch_interrupts`].
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}
