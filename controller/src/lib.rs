//! berth's controller: Apps into AppRevisions and Replicas bound to hosts. The planner
//! (`plan`, `nodes`) and what the reconciler writes (`objects`) are pure; `reconcile`
//! applies the plans through the API server; `readiness` keeps hosts' `Ready` conditions
//! current; `leader` keeps two controllers from acting at once.

pub mod leader;
pub mod nodes;
pub mod objects;
pub mod plan;
pub mod readiness;
pub mod reconcile;

#[cfg(test)]
mod fixtures;
