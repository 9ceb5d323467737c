//! berth's controller: Apps into AppRevisions and Replicas bound to hosts. The planner
//! (`plan`, `nodes`) is pure; `reconcile` applies its plans through the API server;
//! `leader` keeps two controllers from acting at once.

pub mod leader;
pub mod nodes;
pub mod plan;
pub mod reconcile;
