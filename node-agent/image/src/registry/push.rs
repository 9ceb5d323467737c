//! `berth push`: an image's blobs and manifest, byte for byte as stored, to a registry.
//! Blobs the repository has are skipped, blobs known to be in another repository of the
//! registry are mounted from there, the others are uploaded concurrently (one streamed
//! PUT each); the manifest goes last, so the tag never names an incomplete image. When
//! the tag already names the same manifest there is nothing to do.

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt, stream};
use oci_client::errors::OciDistributionError;
use oci_spec::image::{Descriptor, MediaType};
use std::path::Path;
use tokio::io::AsyncReadExt;

use super::client::{Failure, Registry};
use super::progress::{Bar, Progress};
use super::sources::Sources;
use super::{CONCURRENCY, Error, Options};
use crate::ImageStore;
use crate::reference::Reference;

/// Bytes per read of a blob being uploaded.
const CHUNK: usize = 1 << 20;

/// What a push did.
#[derive(Debug)]
pub struct Pushed {
    pub digest: String,
    pub size: usize,
}

pub(super) async fn push(
    root: &Path,
    reference: &Reference,
    options: &Options,
    progress: &Progress,
) -> Result<Pushed, Error> {
    if reference.digest().is_some() {
        return Err(Error::Usage(format!(
            "cannot push \"{}\": a digest names what is already pushed; give a tag",
            reference.familiar()
        )));
    }
    let store = ImageStore::open(root)?;
    let image = store.resolve(&reference.to_string())?;
    let manifest = store.read_blob(&image.manifest_digest)?;
    let media_type = image
        .manifest
        .media_type()
        .clone()
        .unwrap_or(MediaType::ImageManifest)
        .to_string();
    let registry = Registry::new(reference.domain(), options, None, progress)?;
    let oci = registry.oci(reference);
    let shown = reference.familiar();
    progress.line(&format!(
        "The push refers to repository [{}]",
        reference.familiar_name()
    ));
    let pushed = Pushed {
        digest: image.manifest_digest.clone(),
        size: manifest.len(),
    };
    let layers = image.manifest.layers();
    let remote = registry
        .call(&shown, async |c| {
            Ok(c.fetch_manifest_digest(&oci, registry.auth()).await?)
        })
        .await;
    match remote {
        Ok(digest) if digest == image.manifest_digest => {
            for layer in layers.iter().rev() {
                progress
                    .bar(layer.digest().as_ref(), 0, "")
                    .finish("Layer already exists");
            }
            return Ok(pushed);
        }
        Ok(_) | Err(Error::NotFound { .. }) => {}
        Err(e) => return Err(e),
    }

    let sources = Sources::load(root);
    let mut blobs: Vec<(&Descriptor, bool)> = Vec::new();
    for layer in layers.iter().rev() {
        if !blobs.iter().any(|(d, _)| d.digest() == layer.digest()) {
            blobs.push((layer, true));
        }
    }
    blobs.push((image.manifest.config(), false));
    let context = Context {
        registry: &registry,
        oci: &oci,
        store: &store,
        sources: &sources,
        repository: reference.path(),
    };
    stream::iter(blobs.iter())
        .map(|(blob, is_layer)| context.push_blob(blob, *is_layer, progress))
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;

    let content_type: http::HeaderValue = media_type.parse().map_err(|_| {
        crate::Error::corrupt(
            format!("manifest {}", image.manifest_digest),
            format!("invalid media type {media_type}"),
        )
    })?;
    let body = Bytes::from(manifest);
    let location = registry
        .call(&shown, async |c| {
            Ok(
                c.push_manifest_raw(&oci, body.clone(), content_type.clone())
                    .await?,
            )
        })
        .await?;
    // The registry's URL for the manifest ends with the digest it computed.
    if let Some(actual) = location
        .rsplit('/')
        .next()
        .filter(|s| s.starts_with("sha256:"))
        && actual != image.manifest_digest
    {
        return Err(Error::DigestMismatch {
            what: format!("{shown}: the pushed manifest"),
            expected: image.manifest_digest,
            actual: actual.to_string(),
        });
    }
    let digests: Vec<String> = std::iter::once(image.manifest_digest.clone())
        .chain(blobs.iter().map(|(d, _)| d.digest().to_string()))
        .collect();
    if let Err(e) = Sources::record(root, &store, &reference.name(), &digests) {
        progress.note(&format!("remembering where the blobs went: {e}"));
    }
    Ok(pushed)
}

struct Context<'a> {
    registry: &'a Registry,
    oci: &'a oci_client::Reference,
    store: &'a ImageStore,
    sources: &'a Sources,
    repository: &'a str,
}

impl Context<'_> {
    async fn push_blob(
        &self,
        blob: &Descriptor,
        is_layer: bool,
        progress: &Progress,
    ) -> Result<(), Error> {
        let digest = blob.digest().to_string();
        let bar = progress.bar(&digest, blob.size(), "Pushing");
        let finish = |status: &str| {
            if is_layer {
                bar.finish(status);
            } else {
                bar.finish_quietly();
            }
        };
        let what = format!("blob {digest}");
        let registry = self.registry;
        if registry
            .call(&what, async |c| {
                Ok(c.blob_exists(self.oci, &digest).await?)
            })
            .await?
        {
            finish("Layer already exists");
            return Ok(());
        }
        for repository in self.sources.repositories(&digest, registry.host()) {
            if repository == self.repository {
                continue;
            }
            let from = registry.oci(&Reference::parse(&format!(
                "{}/{repository}",
                registry.host()
            ))?);
            let mounted = registry
                .call(&what, async |c| {
                    Ok(c.mount_blob(self.oci, &from, &digest).await?)
                })
                .await;
            if mounted.is_ok() {
                finish(&format!("Mounted from {repository}"));
                return Ok(());
            }
        }
        let path = self.store.blob_path(&digest)?;
        registry
            .call(&what, async |c| {
                bar.set(0);
                let file = tokio::fs::File::open(&path)
                    .await
                    .map_err(|e| Failure::from(crate::Error::io("opening", &path)(e)))?;
                let body = read_chunks(file, bar.clone());
                c.push_blob_stream(self.oci, body, &digest, Some(blob.size()))
                    .await?;
                Ok(())
            })
            .await?;
        finish("Pushed");
        Ok(())
    }
}

/// The file's content as a stream of chunks, counted on `bar` as they go.
fn read_chunks(
    file: tokio::fs::File,
    bar: Bar,
) -> impl futures::Stream<Item = Result<Bytes, OciDistributionError>> + Send + 'static {
    stream::try_unfold((file, bar), |(mut file, bar)| async move {
        let mut buf = vec![0; CHUNK];
        let n = file.read(&mut buf).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.truncate(n);
        bar.inc(n as u64);
        Ok(Some((Bytes::from(buf), (file, bar))))
    })
}
