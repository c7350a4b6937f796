//! Per-job temp folders under the work folder, and removing the ones a dead worker left.
//!
//! Every job gets its own folder, so jobs running at once on one machine share nothing on disk.
//! A folder is removed when its job ends, even when it fails or is cancelled; only a worker
//! killed outright leaves one behind. Folder names carry the worker's pid
//! (`p{pid}.{asset}.{job}.XXXXXX`), so the next worker starting on the machine can tell which
//! folders belong to dead workers and remove them.

use anyhow::Context;
use std::path::{Path, PathBuf};
use tempfile::TempDir;

/// A new private folder under `root` for `job` (e.g. `720p`) of `asset`, removed when dropped.
pub fn job_dir(root: &Path, asset: &str, job: &str) -> anyhow::Result<TempDir> {
    std::fs::create_dir_all(root)
        .with_context(|| format!("creating the work folder {}", root.display()))?;
    tempfile::Builder::new()
        .prefix(&format!("p{}.{asset}.{job}.", std::process::id()))
        .tempdir_in(root)
        .with_context(|| format!("creating a job folder in {}", root.display()))
}

/// The pid in a job folder's name, if it is one.
fn owner(name: &str) -> Option<u32> {
    let (pid, rest) = name.strip_prefix('p')?.split_once('.')?;
    rest.contains('.').then(|| pid.parse().ok()).flatten()
}

/// Removes the job folders under `root` whose worker is no longer running; returns them.
pub fn sweep_orphans(root: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|entry| entry.path().is_dir())
        .filter(|entry| {
            owner(&entry.file_name().to_string_lossy())
                .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
        })
        .map(|entry| entry.path())
        .filter(|path| std::fs::remove_dir_all(path).is_ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_folder_names_carry_the_owner() {
        assert_eq!(owner("p123.a-1.720p.Xy9aZq"), Some(123));
        assert_eq!(owner("p123.a-1"), None);
        assert_eq!(owner("notes"), None);
        assert_eq!(owner("px.a.b.c"), None);
    }

    #[test]
    fn only_folders_of_dead_workers_are_swept() {
        let root = tempfile::tempdir().unwrap();
        let mine = job_dir(root.path(), "a1", "240p").unwrap();
        // Pids are below 2^22 on Linux; this one cannot be running.
        let dead = root.path().join("p4294967.a1.360p.abcdef");
        std::fs::create_dir(&dead).unwrap();
        std::fs::write(dead.join("seg_000.ts"), b"x").unwrap();
        let unrelated = root.path().join("keep-me");
        std::fs::create_dir(&unrelated).unwrap();

        assert_eq!(sweep_orphans(root.path()), vec![dead.clone()]);
        assert!(mine.path().exists() && unrelated.exists() && !dead.exists());
        let path = mine.path().to_path_buf();
        drop(mine);
        assert!(!path.exists(), "a finished job removes its folder");
    }
}
