//! Images: references, the OCI image-layout store, layers, and archive import/export.

mod archive;
mod blob;
mod error;
mod import;
mod index;
mod layer;
pub mod reference;
pub mod store;

pub use archive::{ArchiveFormat, Loaded};
pub use reference::Reference;
pub use store::{Error, Image, ImageStore, Removal};
