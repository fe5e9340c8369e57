//! Checkpoint generations: a sandbox's memory images live in `checkpoints/N`, a new N for
//! every pause, so a dump never overwrites the images the record still points at. Which
//! generation is committed is the record's to say; this module numbers, lists and
//! discards them.

use super::layout::SandboxDir;
use super::random_hex;

pub(super) fn next_generation(dir: &SandboxDir) -> u64 {
    generations(dir).into_iter().max().unwrap_or(0) + 1
}

pub(super) fn generations(dir: &SandboxDir) -> Vec<u64> {
    std::fs::read_dir(dir.checkpoints())
        .map(|d| d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default()
}

pub(super) fn remove_other_generations(dir: &SandboxDir, keep: Option<u64>) {
    for g in generations(dir) {
        if Some(g) != keep {
            let _ = std::fs::remove_dir_all(dir.checkpoint(g));
        }
    }
}

/// Moves every checkpoint generation to the sandbox's trash and deletes it on a
/// background thread.
pub(super) fn discard_generations_later(dir: &SandboxDir, lazy_daemon: Option<std::process::Child>) {
    let trash = dir.path().join("trash");
    let _ = std::fs::create_dir_all(&trash);
    for g in generations(dir) {
        let _ = std::fs::rename(dir.checkpoint(g), trash.join(format!("{g}-{}", random_hex(4))));
    }
    std::thread::spawn(move || {
        // The daemon reads the (renamed: same files) images until every page is in.
        if let Some(mut d) = lazy_daemon {
            let _ = d.wait();
        }
        let _ = std::fs::remove_dir_all(&trash);
    });
}
