//! ferry: get container images onto provisioning nodes and keep them there.
//!
//! The library never prints. Long operations report through [`progress::Progress`], and the
//! `ferry` binary owns all output.

pub mod archive;
pub mod cache;
pub mod credentials;
pub mod digest;
pub mod disk;
pub mod engine;
pub mod inventory;
pub mod layout;
pub mod manifest;
pub mod platform;
pub mod progress;
pub mod reference;
pub mod registry;
pub mod serve;
pub mod settings;
pub mod warmup;
