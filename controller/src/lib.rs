//! berth's controller: Apps into AppRevisions and Replicas bound to hosts.

pub mod plan;
