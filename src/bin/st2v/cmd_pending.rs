//! Commands whose implementation has not landed yet: they say so plainly and exit with status 4.

/// A command that exists in the interface but not yet in the engine.
#[derive(Debug, thiserror::Error)]
#[error("`st2v {command}` is not implemented yet ({tracking})")]
pub struct NotImplemented {
    pub command: &'static str,
    pub tracking: &'static str,
}

pub fn not_implemented(command: &'static str, tracking: &'static str) -> anyhow::Result<()> {
    Err(NotImplemented { command, tracking }.into())
}
