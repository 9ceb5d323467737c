//! Layer export against `tar | gzip`, side by side on the same directory:
//! `cargo bench -p berth-image --bench pack -- DIR [RUNS]`. Packs DIR into a gzip layer the way a
//! build step's upper directory is packed (`ImageStore::pack_layer`), and runs
//! `tar -C DIR -cf - . | gzip > /dev/null` (gzip's default level, as berth's), alternating,
//! and prints the median of each and their ratio.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use berth_image::ImageStore;

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let Some(dir) = args.next().map(PathBuf::from) else {
        eprintln!("usage: cargo bench -p berth-image --bench pack -- DIR [RUNS]");
        std::process::exit(2);
    };
    let runs: usize = args.next().and_then(|r| r.parse().ok()).unwrap_or(5);
    let store_dir = tempfile::tempdir().expect("a temporary directory");

    let store = ImageStore::open(&store_dir.path().join("root")).expect("a store");
    let (mut berth, mut tar) = (Vec::new(), Vec::new());
    let mut size = 0;
    for _ in 0..runs {
        let start = Instant::now();
        let staged = store
            .pack_layer(&dir, &|_, _| false)
            .expect("packing")
            .expect("a non-empty directory");
        berth.push(start.elapsed());
        size = staged.layer.size;
        drop(staged);
        let start = Instant::now();
        let status = Command::new("sh")
            .arg("-c")
            .arg(r#"tar -C "$1" -cf - . | gzip > /dev/null"#)
            .arg("sh")
            .arg(&dir)
            .status()
            .expect("running tar | gzip");
        assert!(status.success(), "tar | gzip failed");
        tar.push(start.elapsed());
    }
    let (berth, tar) = (median(berth), median(tar));
    println!(
        "| {} | {:.0} ms | {:.0} ms | {:.2}x | {:.1} MB |",
        dir.file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .chars()
            .take(12)
            .collect::<String>(),
        berth.as_secs_f64() * 1e3,
        tar.as_secs_f64() * 1e3,
        berth.as_secs_f64() / tar.as_secs_f64(),
        size as f64 / 1e6
    );
}
