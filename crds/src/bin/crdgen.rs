//! Writes the CRD manifests: `crdgen DIR` writes `DIR/<plural>.yaml` for each CRD.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "manifests/crds".into());
    std::fs::create_dir_all(&dir)?;
    for crd in berth_crds::crds() {
        let path = std::path::Path::new(&dir).join(format!("{}.yaml", crd.spec.names.plural));
        std::fs::write(&path, serde_yaml::to_string(&crd)?)?;
        println!("{}", path.display());
    }
    Ok(())
}
