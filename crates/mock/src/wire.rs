//! The OpenAI chat-completions JSON the simulator reads and writes, and its SSE framing.

use std::borrow::Cow;

use distillery_spec::mock::ReasoningStyle;
use serde::{Deserialize, Serialize};

use crate::logprobs::{Splitter, TokenEntry};
use crate::trace::{Continues, Sample, approx_tokens};

/// `owned_by` of the served model: clients and people can tell they talk to a simulator.
pub(crate) const OWNED_BY: &str = "distillery-mock (simulator)";

/// Words per streamed chunk: small enough to look like token streaming, large enough to keep
/// the event count (and the benchmark cost) modest.
const WORDS_PER_CHUNK: usize = 3;

/// The fields of a chat-completions request the simulator honours. Others (`temperature`,
/// `top_p`, …) are accepted and ignored.
#[derive(Debug, Deserialize)]
pub(crate) struct ChatRequest {
    pub(crate) model: String,
    pub(crate) messages: Vec<ChatMessage>,
    pub(crate) n: Option<u32>,
    pub(crate) max_tokens: Option<u64>,
    pub(crate) max_completion_tokens: Option<u64>,
    pub(crate) stream: Option<bool>,
    pub(crate) stream_options: Option<StreamOptions>,
    pub(crate) seed: Option<i64>,
    /// vLLM/SGLang: continue the last (assistant) message.
    #[serde(default)]
    pub(crate) continue_final_message: Option<bool>,
    pub(crate) logprobs: Option<bool>,
    pub(crate) top_logprobs: Option<u8>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct StreamOptions {
    pub(crate) include_usage: Option<bool>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ChatMessage {
    role: String,
    #[serde(default)]
    content: Option<MessageContent>,
    /// DeepSeek's prefix completion: continue this (last, assistant) message.
    #[serde(default)]
    prefix: Option<bool>,
}

/// A message's content: a string, or a list of parts of which the text ones count.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum MessageContent {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Deserialize)]
struct ContentPart {
    #[serde(default)]
    text: Option<String>,
}

impl ChatRequest {
    /// The text of the last user message, where the problem is.
    pub(crate) fn last_user_text(&self) -> Option<Cow<'_, str>> {
        self.messages
            .iter()
            .rev()
            .find(|message| message.role == "user")
            .map(ChatMessage::text)
    }

    /// The partial assistant message to continue: the last message, when it is the
    /// assistant's and the request says so (`continue_final_message`, or `prefix` on the
    /// message) or says nothing (llama.cpp continues a trailing assistant message).
    pub(crate) fn continuation(&self) -> Option<Cow<'_, str>> {
        let last = self.messages.last().filter(|m| m.role == "assistant")?;
        let refused = self.continue_final_message == Some(false) && last.prefix != Some(true);
        (!refused).then(|| last.text())
    }

    /// `max_completion_tokens`, or the older `max_tokens`.
    pub(crate) fn max_tokens(&self) -> Option<u64> {
        self.max_completion_tokens.or(self.max_tokens)
    }

    /// Alternatives per token when log-probabilities are asked for (`logprobs: true`).
    pub(crate) fn logprobs(&self) -> Option<u8> {
        (self.logprobs == Some(true)).then(|| self.top_logprobs.unwrap_or(0))
    }

    pub(crate) fn streams(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    pub(crate) fn include_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .and_then(|options| options.include_usage)
            .unwrap_or(false)
    }

    pub(crate) fn prompt_tokens(&self) -> u64 {
        self.messages
            .iter()
            .map(|message| approx_tokens(&message.text()))
            .sum()
    }
}

impl ChatMessage {
    fn text(&self) -> Cow<'_, str> {
        match &self.content {
            None => Cow::Borrowed(""),
            Some(MessageContent::Text(text)) => Cow::Borrowed(text),
            Some(MessageContent::Parts(parts)) => {
                let mut texts = parts.iter().filter_map(|part| part.text.as_deref());
                match (texts.next(), texts.next()) {
                    (None, _) => Cow::Borrowed(""),
                    (Some(only), None) => Cow::Borrowed(only),
                    (Some(first), Some(second)) => {
                        let mut joined = format!("{first}\n{second}");
                        for text in texts {
                            joined.push('\n');
                            joined.push_str(text);
                        }
                        Cow::Owned(joined)
                    }
                }
            }
        }
    }
}

/// What every response and chunk of one request shares.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Envelope<'a> {
    pub(crate) id: &'a str,
    pub(crate) created: u64,
    pub(crate) model: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) struct Usage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    completion_tokens_details: CompletionTokensDetails,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
struct CompletionTokensDetails {
    reasoning_tokens: u64,
}

impl Usage {
    /// Usage of a whole request: the prompt once, the completions of all choices summed.
    pub(crate) fn new(prompt_tokens: u64, samples: &[Sample]) -> Self {
        let completion_tokens = samples.iter().map(Sample::completion_tokens).sum();
        let reasoning_tokens = samples.iter().map(Sample::reasoning_tokens).sum();
        Self {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
            completion_tokens_details: CompletionTokensDetails { reasoning_tokens },
        }
    }
}

#[derive(Serialize)]
struct ChatCompletion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: Vec<Choice<'a>>,
    usage: &'a Usage,
}

#[derive(Serialize)]
struct Choice<'a> {
    index: u32,
    message: AssistantMessage<'a>,
    logprobs: Option<ChoiceLogprobs>,
    finish_reason: &'static str,
}

#[derive(Serialize)]
struct AssistantMessage<'a> {
    role: &'static str,
    content: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning: Option<&'a str>,
}

impl<'a> AssistantMessage<'a> {
    fn new(sample: &'a Sample, style: ReasoningStyle) -> Self {
        let reasoning = Some(sample.reasoning.as_str());
        let (content, reasoning_content, reasoning) = match style {
            ReasoningStyle::ReasoningContent => {
                (Cow::Borrowed(sample.content.as_str()), reasoning, None)
            }
            ReasoningStyle::Reasoning => (Cow::Borrowed(sample.content.as_str()), None, reasoning),
            ReasoningStyle::ThinkTags => (Cow::Owned(think_tagged(sample)), None, None),
        };
        Self {
            role: "assistant",
            content,
            reasoning_content,
            reasoning,
        }
    }
}

/// `choices[].logprobs`: every generated token, reasoning first, as vLLM sends them.
#[derive(Serialize)]
struct ChoiceLogprobs {
    content: Vec<TokenEntry>,
}

/// What a request asked for when it set `logprobs: true`.
#[derive(Clone, Copy)]
pub(crate) struct LogprobRequest<'a> {
    pub(crate) splitter: &'a Splitter,
    pub(crate) k: u8,
    pub(crate) seed: u64,
}

impl LogprobRequest<'_> {
    /// Every token the sample generates, in order, and the response field each goes in.
    fn tokens(
        &self,
        index: u32,
        sample: &Sample,
        style: ReasoningStyle,
    ) -> Vec<(Field, TokenEntry)> {
        let seed = self.seed ^ u64::from(index).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let mut out = Vec::new();
        let mut add = |field: Field, text: &str, salt: u64| {
            out.extend(
                self.splitter
                    .entries(text, self.k, seed ^ salt)
                    .into_iter()
                    .map(|entry| (field, entry)),
            );
        };
        match style {
            ReasoningStyle::ReasoningContent => {
                add(Field::ReasoningContent, &sample.reasoning, 1);
                add(Field::Content, &sample.content, 2);
            }
            ReasoningStyle::Reasoning => {
                add(Field::Reasoning, &sample.reasoning, 1);
                add(Field::Content, &sample.content, 2);
            }
            ReasoningStyle::ThinkTags => add(Field::Content, &think_tagged(sample), 2),
        }
        out
    }
}

/// The response field a streamed token's text goes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Content,
    ReasoningContent,
    Reasoning,
}

/// Raw R1 output: the reasoning inside `<think>` tags, then the answer. A reasoning cut short
/// has no closing tag, as a real model's would not.
fn think_tagged(sample: &Sample) -> String {
    let mut text = String::with_capacity(sample.reasoning.len() + sample.content.len() + 24);
    if sample.continues == Continues::Answer {
        // The request's partial message closed the reasoning already: only answer is left.
        text.push_str(&sample.content);
        return text;
    }
    if sample.continues == Continues::Nothing {
        text.push_str("<think>\n");
    }
    text.push_str(&sample.reasoning);
    if !sample.reasoning_cut {
        text.push_str("\n</think>\n\n");
        text.push_str(&sample.content);
    }
    text
}

/// A non-streaming `chat.completion` body.
pub(crate) fn completion_json(
    envelope: Envelope<'_>,
    samples: &[Sample],
    style: ReasoningStyle,
    usage: &Usage,
    logprobs: Option<LogprobRequest<'_>>,
) -> Vec<u8> {
    let completion = ChatCompletion {
        id: envelope.id,
        object: "chat.completion",
        created: envelope.created,
        model: envelope.model,
        choices: samples
            .iter()
            .zip(0..)
            .map(|(sample, index)| Choice {
                index,
                message: AssistantMessage::new(sample, style),
                logprobs: logprobs.map(|request| ChoiceLogprobs {
                    content: request
                        .tokens(index, sample, style)
                        .into_iter()
                        .map(|(_, entry)| entry)
                        .collect(),
                }),
                finish_reason: sample.finish.as_str(),
            })
            .collect(),
        usage,
    };
    to_json(&completion)
}

#[derive(Serialize)]
struct Chunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: &'a [ChunkChoice<'a>],
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<&'a Usage>,
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: u32,
    delta: Delta<'a>,
    logprobs: Option<ChunkLogprobs<'a>>,
    finish_reason: Option<&'static str>,
}

#[derive(Serialize)]
struct ChunkLogprobs<'a> {
    content: &'a [TokenEntry],
}

#[derive(Default, Serialize)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning: Option<&'a str>,
}

/// A whole SSE response in one buffer, with the end offset of each event so a paced or
/// faulty delivery can cut it between events without copying.
#[derive(Debug, Default)]
pub(crate) struct SseBody {
    pub(crate) bytes: Vec<u8>,
    pub(crate) event_ends: Vec<usize>,
}

struct SseWriter<'a> {
    envelope: Envelope<'a>,
    body: SseBody,
}

impl SseWriter<'_> {
    fn chunk(&mut self, choice: Option<ChunkChoice<'_>>, usage: Option<&Usage>) {
        let chunk = Chunk {
            id: self.envelope.id,
            object: "chat.completion.chunk",
            created: self.envelope.created,
            model: self.envelope.model,
            choices: choice.as_slice(),
            usage,
        };
        self.body.bytes.extend_from_slice(b"data: ");
        write_json(&mut self.body.bytes, &chunk);
        self.end_event();
    }

    fn delta(&mut self, index: u32, delta: Delta<'_>) {
        self.chunk(
            Some(ChunkChoice {
                index,
                delta,
                logprobs: None,
                finish_reason: None,
            }),
            None,
        );
    }

    fn raw(&mut self, data: &str) {
        self.body.bytes.extend_from_slice(b"data: ");
        self.body.bytes.extend_from_slice(data.as_bytes());
        self.end_event();
    }

    fn end_event(&mut self) {
        self.body.bytes.extend_from_slice(b"\n\n");
        self.body.event_ends.push(self.body.bytes.len());
    }

    /// One choice with log-probabilities: one chunk per token, as vLLM streams them. A token
    /// that ends inside a UTF-8 character sends no text; the character goes with the token
    /// that completes it.
    fn sample_tokens(
        &mut self,
        index: u32,
        sample: &Sample,
        style: ReasoningStyle,
        request: LogprobRequest<'_>,
    ) {
        self.role(index);
        let mut pending: Vec<u8> = Vec::new();
        for (field, entry) in request.tokens(index, sample, style) {
            pending.extend_from_slice(&entry.entry.bytes);
            let valid = match std::str::from_utf8(&pending) {
                Ok(_) => pending.len(),
                Err(e) => e.valid_up_to(),
            };
            let text: Vec<u8> = pending.drain(..valid).collect();
            let text = String::from_utf8(text).unwrap_or_default();
            let mut delta = Delta::default();
            match field {
                Field::Content => delta.content = Some(&text),
                Field::ReasoningContent => delta.reasoning_content = Some(&text),
                Field::Reasoning => delta.reasoning = Some(&text),
            }
            self.chunk(
                Some(ChunkChoice {
                    index,
                    delta,
                    logprobs: Some(ChunkLogprobs {
                        content: std::slice::from_ref(&entry),
                    }),
                    finish_reason: None,
                }),
                None,
            );
        }
        self.finish(index, sample);
    }

    fn role(&mut self, index: u32) {
        self.delta(
            index,
            Delta {
                role: Some("assistant"),
                content: Some(""),
                ..Delta::default()
            },
        );
    }

    fn finish(&mut self, index: u32, sample: &Sample) {
        self.chunk(
            Some(ChunkChoice {
                index,
                delta: Delta::default(),
                logprobs: None,
                finish_reason: Some(sample.finish.as_str()),
            }),
            None,
        );
    }

    /// One choice, start to finish: role, reasoning, content, finish reason.
    fn sample(&mut self, index: u32, sample: &Sample, style: ReasoningStyle) {
        self.role(index);
        let content = |text| Delta {
            content: Some(text),
            ..Delta::default()
        };
        match style {
            ReasoningStyle::ReasoningContent => {
                for piece in word_pieces(&sample.reasoning) {
                    let delta = Delta {
                        reasoning_content: Some(piece),
                        ..Delta::default()
                    };
                    self.delta(index, delta);
                }
            }
            ReasoningStyle::Reasoning => {
                for piece in word_pieces(&sample.reasoning) {
                    let delta = Delta {
                        reasoning: Some(piece),
                        ..Delta::default()
                    };
                    self.delta(index, delta);
                }
            }
            ReasoningStyle::ThinkTags if sample.continues == Continues::Answer => {}
            ReasoningStyle::ThinkTags => {
                if sample.continues == Continues::Nothing {
                    self.delta(index, content("<think>\n"));
                }
                for piece in word_pieces(&sample.reasoning) {
                    self.delta(index, content(piece));
                }
                if !sample.reasoning_cut {
                    self.delta(index, content("\n</think>\n\n"));
                }
            }
        }
        for piece in word_pieces(&sample.content) {
            self.delta(index, content(piece));
        }
        self.finish(index, sample);
    }
}

/// A streaming response: each choice in turn, then the usage chunk when asked for, then
/// `[DONE]`. With `malformed`, an event of broken JSON follows the first chunk.
pub(crate) fn completion_events(
    envelope: Envelope<'_>,
    samples: &[Sample],
    style: ReasoningStyle,
    usage: Option<&Usage>,
    malformed: bool,
    logprobs: Option<LogprobRequest<'_>>,
) -> SseBody {
    let text_len: usize = samples
        .iter()
        .map(|sample| sample.reasoning.len() + sample.content.len())
        .sum();
    let mut writer = SseWriter {
        envelope,
        // About 60 bytes of JSON around every few words of text.
        body: SseBody {
            bytes: Vec::with_capacity(text_len * 6 + 512),
            event_ends: Vec::with_capacity(text_len / 12 + 8),
        },
    };
    for (sample, index) in samples.iter().zip(0..) {
        match logprobs {
            Some(request) => writer.sample_tokens(index, sample, style, request),
            None => writer.sample(index, sample, style),
        }
    }
    if malformed {
        // An object cut off inside a string: no JSON parser accepts it.
        let broken = format!(
            "{{\"id\":\"{}\",\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"",
            envelope.id
        );
        insert_after_first_event(&mut writer.body, &broken);
    }
    if let Some(usage) = usage {
        writer.chunk(None, Some(usage));
    }
    writer.raw("[DONE]");
    writer.body
}

/// Splices `data: {data}\n\n` in after the first event.
fn insert_after_first_event(body: &mut SseBody, data: &str) {
    let Some(&first_end) = body.event_ends.first() else {
        return;
    };
    let event = format!("data: {data}\n\n");
    body.bytes.splice(first_end..first_end, event.bytes());
    for end in &mut body.event_ends {
        *end += event.len();
    }
    body.event_ends.insert(1, first_end + event.len());
    // The first event itself did not move.
    body.event_ends[0] = first_end;
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: Option<&'a str>,
}

/// An OpenAI-style error body: `{"error": {"message", "type", "param", "code"}}`.
pub(crate) fn error_json(message: &str, kind: &str, code: Option<&str>) -> Vec<u8> {
    to_json(&ErrorBody {
        error: ErrorDetail {
            message,
            kind,
            param: None,
            code,
        },
    })
}

#[derive(Serialize)]
pub(crate) struct ModelCard<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    owned_by: &'static str,
}

impl<'a> ModelCard<'a> {
    pub(crate) fn new(id: &'a str, created: u64) -> Self {
        Self {
            id,
            object: "model",
            created,
            owned_by: OWNED_BY,
        }
    }
}

#[derive(Serialize)]
struct ModelList<'a> {
    object: &'static str,
    data: [ModelCard<'a>; 1],
}

pub(crate) fn model_json(card: ModelCard<'_>) -> Vec<u8> {
    to_json(&card)
}

pub(crate) fn model_list_json(card: ModelCard<'_>) -> Vec<u8> {
    to_json(&ModelList {
        object: "list",
        data: [card],
    })
}

fn to_json(value: &impl Serialize) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    write_json(&mut out, value);
    out
}

fn write_json(out: &mut Vec<u8>, value: &impl Serialize) {
    // Writing to a Vec cannot fail and these types have no fallible Serialize impls, so an
    // error here is a bug worth a log line, not a reason to take the server down.
    if let Err(error) = serde_json::to_writer(out, value) {
        tracing::error!(%error, "cannot serialise a response");
    }
}

/// `text` in pieces of [`WORDS_PER_CHUNK`] words, each with its trailing whitespace, so the
/// pieces concatenate back to `text` exactly.
fn word_pieces(text: &str) -> WordPieces<'_> {
    WordPieces { rest: text }
}

struct WordPieces<'a> {
    rest: &'a str,
}

impl<'a> Iterator for WordPieces<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.rest.is_empty() {
            return None;
        }
        let mut words = 0;
        let mut in_word = false;
        let mut cut = self.rest.len();
        for (at, c) in self.rest.char_indices() {
            if c.is_whitespace() {
                in_word = false;
            } else if !in_word {
                in_word = true;
                words += 1;
                if words > WORDS_PER_CHUNK {
                    cut = at;
                    break;
                }
            }
        }
        let (piece, rest) = self.rest.split_at(cut);
        self.rest = rest;
        Some(piece)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::trace::{SamplePlan, Solution};

    const ENVELOPE: Envelope<'static> = Envelope {
        id: "chatcmpl-mock-1",
        created: 1_700_000_000,
        model: "teacher",
    };

    fn sample(truncated: bool) -> Sample {
        let settings = distillery_spec::mock::MockSettings {
            accuracy: 1.0,
            truncation_rate: if truncated { 1.0 } else { 0.0 },
            ..Default::default()
        };
        let solution = Solution::from_reference("Add 2 and 2 to get 4.\n#### 4");
        Sample::build(&solution, &SamplePlan::draw(&settings, 1, None, 0))
    }

    /// The JSON payloads of an SSE body, `[DONE]` excluded.
    fn events(body: &SseBody) -> Vec<Value> {
        let text = std::str::from_utf8(&body.bytes).expect("utf-8");
        let datas: Vec<&str> = text
            .split("\n\n")
            .filter(|event| !event.is_empty())
            .map(|event| event.strip_prefix("data: ").expect("a data event"))
            .collect();
        assert_eq!(datas.last(), Some(&"[DONE]"));
        assert_eq!(body.event_ends.len(), datas.len());
        assert_eq!(body.event_ends.last(), Some(&body.bytes.len()));
        datas[..datas.len() - 1]
            .iter()
            .map(|data| serde_json::from_str(data).expect("valid chunk JSON"))
            .collect()
    }

    #[test]
    fn word_pieces_concatenate_back_to_the_text() {
        let text =
            "Okay, let me  work through\nthis one step by step.\n\n让我们再检查一下这个计算。 done";
        let pieces: Vec<&str> = word_pieces(text).collect();
        assert_eq!(pieces.concat(), text);
        assert_eq!(pieces[0], "Okay, let me  ");
        assert!(
            pieces
                .iter()
                .all(|p| p.split_whitespace().count() <= WORDS_PER_CHUNK)
        );
        assert_eq!(word_pieces("").count(), 0);
    }

    #[test]
    fn the_last_user_message_is_the_prompt() {
        let request: ChatRequest = serde_json::from_str(
            r#"{"model":"m","messages":[
                {"role":"system","content":"be brief"},
                {"role":"user","content":"first"},
                {"role":"assistant","content":"ok"},
                {"role":"user","content":[{"type":"text","text":"second"},{"type":"image_url","image_url":{"url":"x"}},{"type":"text","text":"third"}]}
            ],"temperature":0.6,"top_p":0.95}"#,
        )
        .expect("a valid request");
        assert_eq!(request.last_user_text().as_deref(), Some("second\nthird"));
        assert_eq!(request.max_tokens(), None);
        assert!(!request.streams());
    }

    #[test]
    fn each_style_puts_the_reasoning_where_clients_look() {
        let sample = sample(false);
        let usage = Usage::new(10, std::slice::from_ref(&sample));
        let message = |style| {
            let json: Value = serde_json::from_slice(&completion_json(
                ENVELOPE,
                std::slice::from_ref(&sample),
                style,
                &usage,
                None,
            ))
            .expect("valid JSON");
            json["choices"][0]["message"].clone()
        };

        let deepseek = message(ReasoningStyle::ReasoningContent);
        assert_eq!(deepseek["reasoning_content"], sample.reasoning.as_str());
        assert_eq!(deepseek["content"], sample.content.as_str());
        assert!(deepseek.get("reasoning").is_none());

        let vllm = message(ReasoningStyle::Reasoning);
        assert_eq!(vllm["reasoning"], sample.reasoning.as_str());
        assert!(vllm.get("reasoning_content").is_none());

        let raw = message(ReasoningStyle::ThinkTags);
        assert_eq!(
            raw["content"],
            format!(
                "<think>\n{}\n</think>\n\n{}",
                sample.reasoning, sample.content
            )
            .as_str()
        );
        assert!(raw.get("reasoning").is_none() && raw.get("reasoning_content").is_none());
    }

    #[test]
    fn a_cut_think_block_is_left_open() {
        let sample = sample(true);
        assert!(sample.reasoning_cut);
        let text = think_tagged(&sample);
        assert!(text.starts_with("<think>\n"));
        assert!(!text.contains("</think>"));
    }

    #[test]
    fn streamed_deltas_rebuild_the_message() {
        let samples = [sample(false), sample(false)];
        let usage = Usage::new(10, &samples);
        for style in [
            ReasoningStyle::ReasoningContent,
            ReasoningStyle::Reasoning,
            ReasoningStyle::ThinkTags,
        ] {
            let body = completion_events(ENVELOPE, &samples, style, Some(&usage), false, None);
            let chunks = events(&body);
            let mut content = [String::new(), String::new()];
            let mut reasoning = [String::new(), String::new()];
            let mut finishes = Vec::new();
            for chunk in &chunks[..chunks.len() - 1] {
                assert_eq!(chunk["object"], "chat.completion.chunk");
                assert_eq!(chunk["id"], "chatcmpl-mock-1");
                let choice = &chunk["choices"][0];
                let index = choice["index"].as_u64().expect("an index") as usize;
                let delta = &choice["delta"];
                content[index] += delta["content"].as_str().unwrap_or("");
                reasoning[index] += delta["reasoning_content"].as_str().unwrap_or("");
                reasoning[index] += delta["reasoning"].as_str().unwrap_or("");
                if let Some(finish) = choice["finish_reason"].as_str() {
                    finishes.push((index, finish.to_owned()));
                }
            }
            assert_eq!(finishes, [(0, "stop".to_owned()), (1, "stop".to_owned())]);
            let last = chunks.last().expect("a usage chunk");
            assert_eq!(last["choices"].as_array().map(Vec::len), Some(0));
            assert_eq!(last["usage"]["completion_tokens"], usage.completion_tokens);
            let expected = AssistantMessage::new(&samples[0], style);
            assert_eq!(content[0], expected.content);
            assert_eq!(content[1], expected.content);
            match style {
                ReasoningStyle::ThinkTags => assert!(reasoning[0].is_empty()),
                _ => assert_eq!(reasoning[0], samples[0].reasoning),
            }
            assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        }
    }

    #[test]
    fn a_malformed_stream_carries_one_broken_event() {
        let samples = [sample(false)];
        let body = completion_events(
            ENVELOPE,
            &samples,
            ReasoningStyle::ReasoningContent,
            None,
            true,
            None,
        );
        let text = std::str::from_utf8(&body.bytes).expect("utf-8");
        let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
        assert_eq!(events.len(), body.event_ends.len());
        let broken: Vec<&&str> = events
            .iter()
            .filter(|event| {
                let data = event.strip_prefix("data: ").unwrap_or(event);
                data != "[DONE]" && serde_json::from_str::<Value>(data).is_err()
            })
            .collect();
        assert_eq!(broken.len(), 1);
        assert!(
            events[1].starts_with("data: {\"id\":\"chatcmpl-mock-1\""),
            "{}",
            events[1]
        );
        // Offsets still fall on event boundaries.
        for &end in &body.event_ends {
            assert_eq!(&body.bytes[end - 2..end], b"\n\n");
        }
    }

    #[test]
    fn error_bodies_are_openai_shaped() {
        let json: Value = serde_json::from_slice(&error_json(
            "The model `x` does not exist",
            "invalid_request_error",
            Some("model_not_found"),
        ))
        .expect("valid JSON");
        assert_eq!(json["error"]["message"], "The model `x` does not exist");
        assert_eq!(json["error"]["type"], "invalid_request_error");
        assert_eq!(json["error"]["code"], "model_not_found");
    }
}
