//! Images: references, the OCI image-layout store, layers, and archive import/export.

pub mod store;

pub use store::{Error, Image, ImageStore};
