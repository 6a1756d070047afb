//! `[verify] on_truncated`: what becomes of a sample the length limit cut off. `reject` leaves
//! it to the length check; `continue` asks the teacher to continue the partial answer
//! (vLLM/SGLang `continue_final_message`, DeepSeek's assistant `prefix`) until it ends or the
//! token budget is spent, joining the pieces into one sample; `reask` asks the problem again
//! for that sample with twice the `max_tokens`, up to the budget.
//!
//! A sample cut off by the length limit spent its request's `max_tokens`: that is what the
//! budget is charged for each cut request, and what a request that finished reported.

use std::num::NonZeroU32;

use distillery_spec::OnTruncated;
use distillery_store::LengthHandling;
use distillery_teacher::{
    Completion, FinishReason, Message, Sample, TeacherError, TeacherRequest, Usage,
};

use crate::teacher::RunTeacher;

/// The definition's truncation handling, prepared once.
#[derive(Debug, Clone, Copy)]
pub struct LengthPolicy {
    pub on: OnTruncated,
    /// `teacher.max_tokens`: what the first request of a sample may spend.
    pub max_tokens: u32,
    /// `verify.truncation_budget_tokens`: what a sample may spend in all.
    pub budget: u32,
}

impl LengthPolicy {
    pub fn from_pipeline(pipeline: &distillery_spec::Pipeline) -> Self {
        Self {
            on: pipeline.verify.on_truncated,
            max_tokens: pipeline.teacher.sampling.max_tokens.get(),
            budget: pipeline.verify.truncation_budget_tokens.get(),
        }
    }
}

/// The request seed of a re-ask, distinct from every round's (`round << 32`) and from every
/// other re-ask, so a server that seeds its sampling draws a new sample.
fn reask_seed(round: u32, index: u32, attempt: u32) -> i64 {
    (i64::from(round) << 32) | (i64::from(index & 0xffff) << 12) | i64::from(attempt & 0xfff)
}

/// Handles every truncated sample of `completion` as `policy` says, in place, and returns how
/// the length limit treated each sample (in the order of `completion.samples`). The tokens of
/// the extra requests are added to the completion's usage. A follow-up request that fails
/// without stopping the run leaves the sample as it was (rejected as truncated); a fatal one is
/// returned.
pub async fn handle(
    teacher: &RunTeacher,
    policy: LengthPolicy,
    messages: &[Message],
    round: u32,
    seed: Option<i64>,
    completion: &mut Completion,
) -> Result<Vec<LengthHandling>, TeacherError> {
    let mut handled = vec![LengthHandling::default(); completion.samples.len()];
    for (position, sample) in completion.samples.iter_mut().enumerate() {
        if sample.finish_reason != FinishReason::Length {
            continue;
        }
        let length = &mut handled[position];
        length.truncations = 1;
        let extra = match policy.on {
            OnTruncated::Reject => Ok(Usage::default()),
            OnTruncated::Continue => {
                continue_sample(teacher, policy, messages, seed, sample, length).await
            }
            OnTruncated::Reask => {
                reask_sample(teacher, policy, messages, round, sample, length).await
            }
        };
        match extra {
            Ok(usage) => completion.usage += usage,
            Err((usage, error)) => {
                completion.usage += usage;
                if error.is_fatal() {
                    return Err(error);
                }
                tracing::warn!(
                    "could not {} a truncated sample: {error}; it is rejected as truncated",
                    policy.on.name()
                );
            }
        }
    }
    Ok(handled)
}

type Spent = Result<Usage, (Usage, TeacherError)>;

async fn continue_sample(
    teacher: &RunTeacher,
    policy: LengthPolicy,
    messages: &[Message],
    seed: Option<i64>,
    sample: &mut Sample,
    length: &mut LengthHandling,
) -> Spent {
    let mut usage = Usage::default();
    let mut spent = policy.max_tokens;
    while sample.finish_reason == FinishReason::Length && spent < policy.budget {
        let ask = policy.max_tokens.min(policy.budget - spent);
        let mut request = TeacherRequest::new(messages.to_vec(), NonZeroU32::MIN);
        request.max_tokens = NonZeroU32::new(ask);
        request.seed = seed;
        request.prefill = Some(partial_message(sample));
        let next = match teacher.complete(&request).await {
            Ok(next) => next,
            Err(error) => return Err((usage, error)),
        };
        usage += next.usage;
        length.continuations += 1;
        let Some(piece) = next.samples.into_iter().next() else {
            break;
        };
        spent = spent.saturating_add(match piece.finish_reason {
            FinishReason::Length => ask,
            _ => u32::try_from(next.usage.completion_tokens)
                .unwrap_or(ask)
                .min(ask),
        });
        if piece.finish_reason == FinishReason::Length {
            length.truncations += 1;
        }
        join(sample, piece);
    }
    Ok(usage)
}

async fn reask_sample(
    teacher: &RunTeacher,
    policy: LengthPolicy,
    messages: &[Message],
    round: u32,
    sample: &mut Sample,
    length: &mut LengthHandling,
) -> Spent {
    let mut usage = Usage::default();
    let mut spent = policy.max_tokens;
    let mut last = policy.max_tokens;
    while sample.finish_reason == FinishReason::Length {
        let ask = last
            .saturating_mul(2)
            .min(policy.budget.saturating_sub(spent));
        if ask <= last {
            // No larger budget is left: asking again would be cut off the same way.
            break;
        }
        length.reasks += 1;
        let mut request = TeacherRequest::new(messages.to_vec(), NonZeroU32::MIN);
        request.max_tokens = NonZeroU32::new(ask);
        request.seed = Some(reask_seed(round, sample.index, length.reasks));
        let again = match teacher.complete(&request).await {
            Ok(again) => again,
            Err(error) => return Err((usage, error)),
        };
        usage += again.usage;
        spent = spent.saturating_add(ask);
        last = ask;
        let Some(mut fresh) = again.samples.into_iter().next() else {
            break;
        };
        if fresh.finish_reason == FinishReason::Length {
            length.truncations += 1;
        }
        fresh.index = sample.index;
        *sample = fresh;
    }
    Ok(usage)
}

/// The partial assistant message a continuation sends: the reasoning so far still open, or
/// closed and followed by the answer so far.
pub fn partial_message(sample: &Sample) -> String {
    match &sample.reasoning {
        Some(reasoning) if sample.content.is_empty() => format!("<think>\n{reasoning}"),
        Some(reasoning) => format!("<think>\n{reasoning}\n</think>\n\n{}", sample.content),
        None => sample.content.clone(),
    }
}

/// Appends a continuation to the sample it continues. While the reasoning is open, what the
/// server calls reasoning (a field, or text before `</think>`) continues it and the rest is
/// the answer; text without either is still reasoning. Once the answer has begun, the piece
/// continues the answer. The teacher client trims the edges of every piece, so a reasoning
/// seam gets a space where neither side has one; an answer seam is joined as it is (a cut
/// inside `\boxed{18}` must come back whole).
pub fn join(sample: &mut Sample, piece: Sample) {
    let open = sample.reasoning.is_some() && sample.content.is_empty();
    if open {
        let (more, answer) = match piece.reasoning {
            Some(reasoning) => (reasoning, piece.content),
            None => (piece.content, String::new()),
        };
        let reasoning = sample.reasoning.get_or_insert_with(String::new);
        if !reasoning.is_empty()
            && !more.is_empty()
            && !reasoning.ends_with(char::is_whitespace)
            && !more.starts_with(char::is_whitespace)
        {
            reasoning.push(' ');
        }
        reasoning.push_str(&more);
        sample.content = answer;
    } else {
        sample.content.push_str(&piece.content);
    }
    sample.finish_reason = piece.finish_reason;
    sample.logprobs = match (sample.logprobs.take(), piece.logprobs) {
        (Some(mut first), Some(rest)) => {
            first.extend(rest);
            Some(first)
        }
        _ => None,
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use distillery_teacher::ReasoningSource;

    fn sample(reasoning: Option<&str>, content: &str, finish: FinishReason) -> Sample {
        Sample {
            index: 0,
            reasoning: reasoning.map(str::to_owned),
            content: content.to_owned(),
            reasoning_source: ReasoningSource::Field,
            finish_reason: finish,
            logprobs: None,
        }
    }

    #[test]
    fn open_reasoning_is_sent_open_and_continued_with_the_answer() {
        let mut cut = sample(Some("Add 2 and"), "", FinishReason::Length);
        assert_eq!(partial_message(&cut), "<think>\nAdd 2 and");
        join(
            &mut cut,
            sample(Some("2 to get 4."), "\\boxed{4}", FinishReason::Stop),
        );
        assert_eq!(cut.reasoning.as_deref(), Some("Add 2 and 2 to get 4."));
        assert_eq!(cut.content, "\\boxed{4}");
        assert_eq!(cut.finish_reason, FinishReason::Stop);
    }

    #[test]
    fn a_piece_without_reasoning_still_thinks_and_an_answer_seam_is_kept_whole() {
        let mut cut = sample(Some("Step one."), "", FinishReason::Length);
        join(&mut cut, sample(None, "Step two.", FinishReason::Length));
        assert_eq!(cut.reasoning.as_deref(), Some("Step one. Step two."));
        assert!(cut.content.is_empty());
        assert_eq!(cut.finish_reason, FinishReason::Length);

        let mut answer = sample(Some("r"), "so \\boxed{1", FinishReason::Length);
        assert_eq!(
            partial_message(&answer),
            "<think>\nr\n</think>\n\nso \\boxed{1"
        );
        join(&mut answer, sample(None, "8}", FinishReason::Stop));
        assert_eq!(answer.content, "so \\boxed{18}");
        assert_eq!(answer.reasoning.as_deref(), Some("r"));
    }

    #[test]
    fn reask_seeds_never_collide_with_rounds_or_each_other() {
        let mut seen = std::collections::HashSet::new();
        for round in 0..3 {
            assert!(seen.insert(i64::from(round) << 32), "round seed");
            for index in 0..4 {
                for attempt in 1..4 {
                    assert!(seen.insert(reask_seed(round, index, attempt)));
                }
            }
        }
    }
}
