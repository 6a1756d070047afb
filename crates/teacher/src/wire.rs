//! The chat-completions JSON we send and read. Our own types (async-openai's "bring your own
//! types" calls) because the stock ones drop `reasoning_content` and `reasoning`.

use serde::{Deserialize, Serialize};

use crate::Message;

#[derive(Debug, Serialize)]
pub(crate) struct ChatRequest<'a> {
    pub model: &'a str,
    pub messages: Vec<WireMessage<'a>>,
    pub max_tokens: u32,
    pub temperature: f64,
    pub top_p: f64,
    pub n: u32,
    pub stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_logprobs: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// vLLM/SGLang: continue the last (assistant) message rather than start a new turn.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub continue_final_message: bool,
    /// vLLM/SGLang: `false` with `continue_final_message`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub add_generation_prompt: Option<bool>,
}

/// A message as sent: the request's own, or the partial assistant turn to continue.
#[derive(Debug, Serialize)]
pub(crate) struct WireMessage<'a> {
    pub role: crate::Role,
    pub content: &'a str,
    /// DeepSeek's prefix completion: the model continues this assistant message.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub prefix: bool,
}

impl<'a> WireMessage<'a> {
    /// The request's messages, then the partial assistant turn when it is a continuation.
    pub(crate) fn of(messages: &'a [Message], prefill: Option<&'a str>) -> Vec<Self> {
        let mut out: Vec<Self> = messages
            .iter()
            .map(|m| Self {
                role: m.role,
                content: &m.content,
                prefix: false,
            })
            .collect();
        if let Some(partial) = prefill {
            out.push(Self {
                role: crate::Role::Assistant,
                content: partial,
                prefix: true,
            });
        }
        out
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct StreamOptions {
    pub include_usage: bool,
}

#[derive(Debug, Default, Clone, Deserialize)]
pub(crate) struct WireUsage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    #[serde(default)]
    pub completion_tokens_details: Option<CompletionTokensDetails>,
}

#[derive(Debug, Default, Clone, Deserialize)]
pub(crate) struct CompletionTokensDetails {
    #[serde(default)]
    pub reasoning_tokens: Option<u64>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ChatResponse {
    #[serde(default)]
    pub model: Option<String>,
    pub choices: Vec<Choice>,
    #[serde(default)]
    pub usage: Option<WireUsage>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Choice {
    pub index: u32,
    pub message: ResponseMessage,
    #[serde(default)]
    pub logprobs: Option<WireLogprobs>,
    #[serde(default)]
    pub finish_reason: Option<String>,
}

/// `choices[].logprobs`: one entry per generated token. vLLM and llama.cpp put every token in
/// `content`; a server that separates reasoning tokens may send them in `reasoning_content`
/// or `reasoning`, which come first.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct WireLogprobs {
    #[serde(default)]
    pub content: Option<Vec<WireTokenLogprob>>,
    #[serde(default)]
    pub reasoning_content: Option<Vec<WireTokenLogprob>>,
    #[serde(default)]
    pub reasoning: Option<Vec<WireTokenLogprob>>,
}

impl WireLogprobs {
    /// The entries in generation order: reasoning tokens, then content tokens.
    pub(crate) fn into_tokens(self) -> impl Iterator<Item = WireTokenLogprob> {
        self.reasoning_content
            .or(self.reasoning)
            .into_iter()
            .flatten()
            .chain(self.content.into_iter().flatten())
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct WireTokenLogprob {
    pub token: String,
    pub logprob: f64,
    /// The token's UTF-8 bytes; a token that is part of a character has no string of its own.
    #[serde(default)]
    pub bytes: Option<Vec<u8>>,
    #[serde(default)]
    pub top_logprobs: Vec<WireTopLogprob>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct WireTopLogprob {
    pub token: String,
    pub logprob: f64,
    #[serde(default)]
    pub bytes: Option<Vec<u8>>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ResponseMessage {
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default)]
    pub reasoning_content: Option<String>,
    #[serde(default)]
    pub reasoning: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ChatChunk {
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub choices: Vec<ChunkChoice>,
    #[serde(default)]
    pub usage: Option<WireUsage>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ChunkChoice {
    pub index: u32,
    #[serde(default)]
    pub delta: Delta,
    #[serde(default)]
    pub logprobs: Option<WireLogprobs>,
    #[serde(default)]
    pub finish_reason: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Delta {
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default)]
    pub reasoning_content: Option<String>,
    #[serde(default)]
    pub reasoning: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Role;

    #[test]
    fn a_continuation_is_marked_for_vllm_sglang_and_deepseek() {
        let messages = [Message::new(Role::User, "2+2?")];
        let body = ChatRequest {
            model: "m",
            messages: WireMessage::of(&messages, Some("<think>\nAdd")),
            max_tokens: 10,
            temperature: 0.6,
            top_p: 0.95,
            n: 1,
            stream: false,
            stream_options: None,
            logprobs: None,
            top_logprobs: None,
            seed: Some(4),
            continue_final_message: true,
            add_generation_prompt: Some(false),
        };
        let json = serde_json::to_value(&body).unwrap();
        assert_eq!(json["continue_final_message"], true);
        assert_eq!(json["add_generation_prompt"], false);
        assert_eq!(json["seed"], 4);
        assert_eq!(
            json["messages"],
            serde_json::json!([
                {"role": "user", "content": "2+2?"},
                {"role": "assistant", "content": "<think>\nAdd", "prefix": true}
            ])
        );
        // A plain request carries none of it.
        let plain = ChatRequest {
            messages: WireMessage::of(&messages, None),
            seed: None,
            continue_final_message: false,
            add_generation_prompt: None,
            ..body
        };
        let json = serde_json::to_value(&plain).unwrap();
        assert_eq!(
            json.as_object()
                .unwrap()
                .keys()
                .filter(
                    |k| ["seed", "continue_final_message", "add_generation_prompt"]
                        .contains(&k.as_str())
                )
                .count(),
            0
        );
        assert_eq!(
            json["messages"],
            serde_json::json!([{"role": "user", "content": "2+2?"}])
        );
    }
}
