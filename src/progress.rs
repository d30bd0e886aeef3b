//! Progress events the library emits during long work; the CLI decides how to show them.

use crate::warmup::ImageOutcome;

/// Receives progress of a warmup. Images are numbered by their position in the warmup list.
/// Every method has an empty default, so a caller implements only what it shows.
pub trait Progress: Send + Sync {
    /// Reports that the image starts transferring `bytes_total` bytes (0 when nothing needs downloading).
    fn image_started(&self, _index: usize, _reference: &str, _bytes_total: u64) {}
    /// `bytes` more bytes of the image arrived.
    fn image_bytes(&self, _index: usize, _bytes: u64) {}
    /// Reports that the image moved to another stage, such as "loading into Docker".
    fn image_stage(&self, _index: usize, _stage: &str) {}
    fn image_finished(&self, _index: usize, _outcome: &ImageOutcome) {}
}

/// Progress that goes nowhere.
pub struct NoProgress;

impl Progress for NoProgress {}
