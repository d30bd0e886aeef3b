//! ferry: get container images onto provisioning nodes and keep them there.
//!
//! The library never prints. Long operations report through [`progress::Progress`], and the
//! `ferry` binary owns all output.

pub mod digest;
pub mod reference;
pub mod cache;
pub mod manifest;
pub mod platform;
pub mod registry;
pub mod credentials;
pub mod settings;
pub mod archive;
pub mod engine;
pub mod disk;
pub mod progress;
pub mod warmup;
pub mod layout;
