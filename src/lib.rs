//! ferry: get container images onto provisioning nodes and keep them there.
//!
//! The library never prints. Long operations report through [`progress::Progress`], and the
//! `ferry` binary owns all output.

pub mod digest;
pub mod reference;
pub mod inventory;
pub mod settings;
pub mod credentials;
