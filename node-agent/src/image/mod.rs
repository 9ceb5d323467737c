//! Images: references, the OCI image-layout store, layers, and archive import/export.

mod blob;
mod error;
mod index;
mod layer;
pub mod reference;
pub mod store;

pub use reference::Reference;
pub use store::{Error, Image, ImageStore, Removal};
