//! berth's engine: the container runtime, the image store and networking, driven by the
//! `berth` command line (and, in cluster mode, by the node agent).

pub mod agent;
pub mod cli;
pub mod fsutil;
pub mod image;
pub mod net;
pub mod paths;
pub mod runtime;
pub mod volume;
