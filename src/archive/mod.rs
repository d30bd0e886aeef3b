//! Image archives: the stream ferry sends to Docker's `POST /images/load`, and the tar files that
//! carry images across an air gap.

pub mod load_stream;
pub mod parts;
pub mod read;
pub mod write;

pub use load_stream::{docker_archive, docker_archive_gated, Gate, is_zstd, payload_size, unpack_zstd, ArchiveImage, ArchiveLayer, UnpackError};
pub use parts::{BlobSource, Parts};
