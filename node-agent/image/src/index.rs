//! The store's `index.json`, and the rules for naming images in it (pure: the store reads
//! and writes the file under its lock).
//!
//! Each name is one manifest descriptor annotated as containerd and `docker save` do:
//! `io.containerd.image.name` holds the full normalized reference and
//! `org.opencontainers.image.ref.name` its tag, so `skopeo inspect oci:<dir>:<tag>` finds
//! it. An image with no name keeps exactly one descriptor without those annotations
//! (`<none>` in `berth images`), so that no image in the store is unreachable.

use std::collections::HashMap;

use oci_spec::image::{Descriptor, ImageIndex, ImageIndexBuilder, MediaType};

use crate::reference::Reference;

pub const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
pub const ANNOTATION_REF_NAME: &str = oci_spec::image::ANNOTATION_REF_NAME;

pub struct Index(ImageIndex);

impl Index {
    pub fn empty() -> Index {
        Index(
            ImageIndexBuilder::default()
                .schema_version(2u32)
                .media_type(MediaType::ImageIndex)
                .manifests(Vec::new())
                .build()
                .expect("an empty index has every required field"),
        )
    }

    pub fn parse(json: &[u8]) -> serde_json::Result<Index> {
        serde_json::from_slice(json).map(Index)
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(&self.0).expect("an index always serializes")
    }

    pub fn descriptors(&self) -> &[Descriptor] {
        self.0.manifests()
    }

    /// The name a descriptor gives its image, if it has a valid one.
    pub fn name_of(descriptor: &Descriptor) -> Option<Reference> {
        let name = descriptor
            .annotations()
            .as_ref()?
            .get(ANNOTATION_IMAGE_NAME)?;
        Reference::parse(name).ok()
    }

    /// Points `reference` at `target` (a manifest descriptor). An image that loses its
    /// last name this way stays in the index without one, as Docker keeps it `<none>`.
    pub fn set_name(&mut self, target: &Descriptor, reference: &Reference) {
        let previous = self.take_name(reference);
        let mut named = bare(target);
        named.set_annotations(Some(HashMap::from([
            (ANNOTATION_IMAGE_NAME.to_string(), reference.to_string()),
            (
                ANNOTATION_REF_NAME.to_string(),
                reference.tag().unwrap_or_default().to_string(),
            ),
        ])));
        self.update(|manifests| {
            manifests.retain(|d| !(d.digest() == target.digest() && Self::name_of(d).is_none()));
            manifests.push(named);
        });
        if let Some(previous) = previous {
            self.add_unnamed(&previous);
        }
    }

    /// Adds `target` without a name, unless the index already reaches it.
    pub fn add_unnamed(&mut self, target: &Descriptor) {
        if !self.contains(target.digest().as_ref()) {
            self.update(|manifests| manifests.push(bare(target)));
        }
    }

    /// Removes the name `reference` and returns the descriptor it was on. The image
    /// leaves the index with it if that was its last descriptor.
    pub fn take_name(&mut self, reference: &Reference) -> Option<Descriptor> {
        let i = self
            .descriptors()
            .iter()
            .position(|d| Self::name_of(d).as_ref() == Some(reference))?;
        let mut taken = None;
        self.update(|manifests| taken = Some(manifests.remove(i)));
        taken
    }

    /// Removes every descriptor of the manifest `digest`.
    pub fn remove_image(&mut self, digest: &str) {
        self.update(|manifests| manifests.retain(|d| d.digest().as_ref() != digest));
    }

    pub fn contains(&self, digest: &str) -> bool {
        self.descriptors()
            .iter()
            .any(|d| d.digest().as_ref() == digest)
    }

    fn update(&mut self, change: impl FnOnce(&mut Vec<Descriptor>)) {
        let mut manifests = self.0.manifests().clone();
        change(&mut manifests);
        self.0.set_manifests(manifests);
    }
}

/// The descriptor without annotations: what a manifest is, not what it is called.
fn bare(descriptor: &Descriptor) -> Descriptor {
    let mut d = descriptor.clone();
    d.set_annotations(None);
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::image::{DescriptorBuilder, Digest};

    fn manifest(n: u8) -> Descriptor {
        let digest: Digest = format!("sha256:{}", format!("{n:02x}").repeat(32))
            .parse()
            .unwrap();
        DescriptorBuilder::default()
            .media_type(MediaType::ImageManifest)
            .digest(digest)
            .size(100u64)
            .build()
            .unwrap()
    }

    fn r(s: &str) -> Reference {
        Reference::parse(s).unwrap()
    }

    /// (digest's first byte, name or "") for each descriptor, in order.
    fn summary(index: &Index) -> Vec<(String, String)> {
        index
            .descriptors()
            .iter()
            .map(|d| {
                let name = Index::name_of(d).map_or_else(String::new, |r| r.familiar());
                (d.digest().digest()[..2].to_string(), name)
            })
            .collect()
    }

    fn s(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn naming_replaces_the_unnamed_descriptor() {
        let mut index = Index::empty();
        index.add_unnamed(&manifest(1));
        index.add_unnamed(&manifest(1));
        assert_eq!(summary(&index), s(&[("01", "")]));
        index.set_name(&manifest(1), &r("base"));
        index.set_name(&manifest(1), &r("base:v1"));
        assert_eq!(
            summary(&index),
            s(&[("01", "base:latest"), ("01", "base:v1")])
        );
        index.add_unnamed(&manifest(1));
        assert_eq!(
            summary(&index).len(),
            2,
            "a named image gets no unnamed descriptor"
        );
    }

    #[test]
    fn annotations_follow_containerd_and_oci() {
        let mut index = Index::empty();
        index.set_name(&manifest(1), &r("localhost:5000/me/app:v2"));
        let annotations = index.descriptors()[0].annotations().clone().unwrap();
        assert_eq!(
            annotations[ANNOTATION_IMAGE_NAME],
            "localhost:5000/me/app:v2"
        );
        assert_eq!(annotations[ANNOTATION_REF_NAME], "v2");
        let json: serde_json::Value = serde_json::from_slice(&index.to_json()).unwrap();
        assert_eq!(json["schemaVersion"], 2);
        assert_eq!(json["mediaType"], "application/vnd.oci.image.index.v1+json");
        let again = Index::parse(&index.to_json()).unwrap();
        assert_eq!(summary(&again), summary(&index));
    }

    #[test]
    fn moving_a_name_leaves_the_old_image_unnamed() {
        let mut index = Index::empty();
        index.set_name(&manifest(1), &r("base"));
        index.set_name(&manifest(2), &r("base"));
        assert_eq!(summary(&index), s(&[("02", "base:latest"), ("01", "")]));
        // An image that keeps another name gets no unnamed descriptor.
        index.set_name(&manifest(2), &r("other"));
        index.set_name(&manifest(1), &r("base"));
        assert_eq!(
            summary(&index),
            s(&[("02", "other:latest"), ("01", "base:latest")])
        );
        // Re-pointing a name at the image it already names changes nothing.
        index.set_name(&manifest(1), &r("base"));
        assert_eq!(
            summary(&index),
            s(&[("02", "other:latest"), ("01", "base:latest")])
        );
    }

    #[test]
    fn untag_and_remove() {
        let mut index = Index::empty();
        index.set_name(&manifest(1), &r("a"));
        index.set_name(&manifest(1), &r("b"));
        index.add_unnamed(&manifest(2));
        assert!(index.take_name(&r("c")).is_none());
        let taken = index.take_name(&r("a")).unwrap();
        assert_eq!(taken.digest(), manifest(1).digest());
        assert_eq!(summary(&index), s(&[("01", "b:latest"), ("02", "")]));
        index.take_name(&r("b"));
        assert!(!index.contains(manifest(1).digest().as_ref()));
        index.remove_image(manifest(2).digest().as_ref());
        assert!(index.descriptors().is_empty());
    }

    #[test]
    fn foreign_descriptors_are_kept_and_unnamed_ones_ignored() {
        // What `skopeo copy ... oci:<store>:mytag` writes: a ref.name without our name.
        let json = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{}","digest":"{}","size":1,
               "annotations":{{"org.opencontainers.image.ref.name":"mytag"}}}}]}}"#,
            MediaType::ImageManifest,
            manifest(3).digest()
        );
        let mut index = Index::parse(json.as_bytes()).unwrap();
        assert_eq!(Index::name_of(&index.descriptors()[0]), None);
        index.set_name(&manifest(1), &r("x"));
        assert_eq!(index.descriptors().len(), 2);
    }
}
