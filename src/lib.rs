//! ferry: get container images onto provisioning nodes and keep them there.
//!
//! The library never prints. Long operations report through [`progress::Progress`], and the
//! `ferry` binary owns all output.

pub mod archive;
pub mod cache;
pub mod check;
pub mod credentials;
pub mod daemon_proxy;
pub mod digest;
pub mod disk;
pub mod engine;
pub mod inventory;
pub mod layout;
pub mod load;
pub mod manifest;
pub mod mirror;
pub mod platform;
pub mod progress;
pub mod proxy;
pub mod push;
pub mod reference;
pub mod registry;
pub mod save;
pub mod serve;
pub mod settings;
pub mod warmup;

/// Joins an error and its causes into one line, leaving out a cause whose text the line already
/// contains (many errors repeat their source in their own message).
pub fn error_message(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = String::new();
    let mut cause = Some(error);
    while let Some(current) = cause {
        cause = current.source();
        let text = current.to_string();
        if message.contains(&text) {
            continue;
        }
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(&text);
    }
    message
}
