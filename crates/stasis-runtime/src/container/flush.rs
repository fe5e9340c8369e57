//! Writeback that overlaps the dump: while CRIU writes memory images, a thread keeps
//! asking the kernel to start writing them to disk, so the fsync that makes the pause
//! durable finds little left to do.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const INTERVAL: Duration = Duration::from_millis(20);

pub struct Flusher {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Flusher {
    /// `written` follows the bytes the images hold so far (progress reporting).
    pub fn start(dir: &Path, written: Arc<std::sync::atomic::AtomicU64>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (s, d) = (stop.clone(), dir.to_path_buf());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                written.store(start_writeback(&d), Ordering::Relaxed);
                std::thread::sleep(INTERVAL);
            }
        });
        Flusher { stop, thread: Some(thread) }
    }

    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir).map(|d| d.flatten().map(|e| e.path()).filter(|p| p.is_file()).collect()).unwrap_or_default()
}

/// Starts (does not wait for) writeback of every file in `dir`; returns their total size.
fn start_writeback(dir: &Path) -> u64 {
    let mut total = 0;
    for f in files(dir) {
        if let Ok(file) = std::fs::File::open(&f) {
            total += file.metadata().map(|m| m.len()).unwrap_or(0);
            // SAFETY: sync_file_range on an fd we own; WRITE only initiates I/O.
            unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
        }
    }
    total
}

/// Makes every file in `dir` and the directory itself durable.
pub fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    for f in files(dir) {
        std::fs::File::open(&f)?.sync_data()?;
    }
    std::fs::File::open(dir)?.sync_all()
}
