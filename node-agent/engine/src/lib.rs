//! The `docker run` model over the runtime: container records, creating a container from
//! an image (root filesystem, spec, network endpoint, volumes), the monitor that
//! supervises it, its lifecycle and logs. The CLI, the builder and the node agent all
//! drive containers through this crate; it builds each lower crate's small config from
//! [`Paths`].

pub mod container;
pub mod create;
pub mod endpoint;
pub mod exec;
pub mod lifecycle;
pub mod logs;
pub mod monitor;
pub mod options;
pub mod paths;
pub mod spec;
pub mod volume;

pub use paths::Paths;

use berth_image::ImageUse;

/// Which images the containers on this host were made from.
pub fn images_in_use(paths: &Paths) -> Result<Vec<ImageUse>, container::Error> {
    Ok(container::list(paths)?
        .into_iter()
        .map(|c| ImageUse {
            running: c.is_running(),
            image_id: c.config.image_id.clone(),
            container: c.config.name.clone(),
        })
        .collect())
}
