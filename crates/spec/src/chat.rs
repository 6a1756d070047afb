//! The chat turn every crate shares: what a run stores in `messages`, what an export writes,
//! what the trainer renders with a chat template.

use serde::{Deserialize, Serialize};

/// A chat turn, as in the SFT-ready `messages` column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
}
