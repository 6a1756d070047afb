//! Continuous batching, as vLLM and llama.cpp's server schedule: a request joins the running
//! batch at the first step after it arrives, and a sequence that finishes leaves at once, its
//! slot taken by the next waiting request, instead of every sequence waiting for the longest
//! one of a fixed batch. Long prompts are fed in chunks so that one prompt never stalls the
//! sequences already decoding.

use std::collections::VecDeque;
use std::sync::Arc;

use distillery_model::{
    FinishReason, GenerateOptions, Generated, RowOptions, TokenLogprobs, sample_token,
};
use rand::{SeedableRng, rngs::StdRng};
use rayon::prelude::*;

use crate::engine::{Engine, Sequence};
use crate::error::{Error, Result};

/// One sequence to generate: `tag` is the caller's, handed back with every token.
#[derive(Debug, Clone)]
pub struct Request<T> {
    pub tag: T,
    pub prompt: Vec<u32>,
    /// This sequence's seed and length limit.
    pub row: RowOptions,
}

/// A token just sampled for the request tagged `tag`; `finish` is set on its last one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenEvent<'a, T> {
    pub tag: &'a T,
    pub token: u32,
    pub finish: Option<FinishReason>,
}

/// A finished request.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished<T> {
    pub tag: T,
    pub generated: Generated,
}

/// How many sequences run together and how many tokens one step may feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Sequences decoding at once (their KV caches are what memory holds).
    pub max_sequences: usize,
    /// Tokens one forward pass takes: decoding sequences' one each, then prompt chunks.
    pub max_step_tokens: usize,
}

impl BatchLimits {
    pub fn new(max_sequences: usize) -> Self {
        Self {
            max_sequences,
            max_step_tokens: 512,
        }
    }
}

struct Running<T> {
    tag: T,
    sequence: Sequence,
    rng: StdRng,
    limit: usize,
    generated: Generated,
    /// Prompt tokens not fed yet, or the token sampled last.
    pending: Vec<u32>,
}

/// The scheduler: [`submit`](Self::submit) requests, call [`step`](Self::step) until
/// [`is_idle`](Self::is_idle).
pub struct Batcher<T> {
    engine: Arc<Engine>,
    options: GenerateOptions,
    limits: BatchLimits,
    waiting: VecDeque<Request<T>>,
    running: Vec<Running<T>>,
}

impl<T> Batcher<T> {
    /// `options` gives the sampling (temperature, top-p, stop tokens, log-probabilities); its
    /// `seed` and `max_new_tokens` are ignored for each request's [`RowOptions`].
    pub fn new(engine: Arc<Engine>, options: GenerateOptions, limits: BatchLimits) -> Result<Self> {
        if !(options.temperature >= 0.0 && options.top_p > 0.0) {
            return Err(Error::InvalidInput(format!(
                "temperature must be >= 0 and top_p > 0 (got {} and {})",
                options.temperature, options.top_p
            )));
        }
        if limits.max_sequences == 0 || limits.max_step_tokens == 0 {
            return Err(Error::InvalidInput(
                "a batch needs room for at least one sequence and one token".into(),
            ));
        }
        Ok(Self {
            engine,
            options,
            limits,
            waiting: VecDeque::new(),
            running: Vec::new(),
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Queues a request; it starts at the next step with a free slot. A request the model
    /// cannot run (empty, unknown tokens, longer than the context) is refused here, so that it
    /// never fails the others' step.
    pub fn submit(&mut self, request: Request<T>) -> Result<()> {
        let cfg = self.engine.config();
        if request.prompt.is_empty() {
            return Err(Error::InvalidInput("the prompt is empty".into()));
        }
        if let Some(&bad) = request
            .prompt
            .iter()
            .find(|&&t| t as usize >= cfg.vocab_size)
        {
            return Err(Error::InvalidInput(format!(
                "token id {bad} is outside the vocabulary ({})",
                cfg.vocab_size
            )));
        }
        let longest = request.prompt.len() + request.row.max_new_tokens;
        if longest > cfg.max_position_embeddings {
            return Err(Error::InvalidInput(format!(
                "a prompt of {} tokens and up to {} new ones exceed the model's context of {}",
                request.prompt.len(),
                request.row.max_new_tokens,
                cfg.max_position_embeddings
            )));
        }
        self.waiting.push_back(request);
        Ok(())
    }

    /// Nothing running and nothing waiting.
    pub fn is_idle(&self) -> bool {
        self.running.is_empty() && self.waiting.is_empty()
    }

    /// Sequences decoding now.
    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// Drops every request whose tag `abandoned` picks (its caller is gone), running or not.
    pub fn cancel(&mut self, abandoned: impl Fn(&T) -> bool) {
        self.waiting.retain(|r| !abandoned(&r.tag));
        self.running.retain(|r| !abandoned(&r.tag));
    }

    /// Takes every request out, running or waiting (after a failed step, to answer them).
    pub fn drain(&mut self) -> Vec<T> {
        let running = self.running.drain(..).map(|r| r.tag);
        running
            .chain(self.waiting.drain(..).map(|r| r.tag))
            .collect()
    }

    /// One forward pass: admits waiting requests into free slots, feeds every running
    /// sequence its next tokens, samples the next token of each whose prompt is all in, and
    /// returns the requests that finished (their slots are free for the next step).
    /// `on_token` sees every sampled token as soon as it is chosen.
    ///
    /// On an error nothing is sampled; the requests stay where they were, and
    /// [`drain`](Self::drain) takes them out to answer them.
    pub fn step(
        &mut self,
        mut on_token: impl FnMut(TokenEvent<'_, T>),
    ) -> Result<Vec<Finished<T>>> {
        let mut finished = Vec::new();
        while self.running.len() < self.limits.max_sequences {
            let Some(request) = self.waiting.pop_front() else {
                break;
            };
            let generated = Generated {
                tokens: Vec::new(),
                finish: FinishReason::Length,
                logprobs: Vec::new(),
            };
            if request.row.max_new_tokens == 0 {
                finished.push(Finished {
                    tag: request.tag,
                    generated,
                });
                continue;
            }
            self.running.push(Running {
                tag: request.tag,
                sequence: self.engine.new_sequence(),
                rng: StdRng::seed_from_u64(request.row.seed),
                limit: request.row.max_new_tokens,
                generated,
                pending: request.prompt,
            });
        }
        if self.running.is_empty() {
            return Ok(finished);
        }

        // Decoding sequences take one token each; prompts share what the step has left, in
        // arrival order, and a prompt that does not fit whole goes in a chunk.
        let decoding = self.running.iter().filter(|r| r.pending.len() == 1).count();
        let mut budget = self.limits.max_step_tokens.saturating_sub(decoding).max(1);
        let mut feed: Vec<usize> = Vec::with_capacity(self.running.len());
        for r in &self.running {
            let n = if r.pending.len() == 1 {
                1
            } else {
                let n = r.pending.len().min(budget);
                budget -= n;
                n
            };
            feed.push(n);
        }
        let logits = {
            let mut batch: Vec<(&mut Sequence, &[u32])> = self
                .running
                .iter_mut()
                .zip(&feed)
                .filter(|(_, n)| **n > 0)
                .map(|(r, &n)| (&mut r.sequence, &r.pending[..n]))
                .collect();
            self.engine.forward(&mut batch)?
        };

        // Sample where a sequence's pending tokens are all in (in parallel: each has its own
        // sampler, so the result does not depend on the order).
        let options = &self.options;
        let mut logits = logits.into_iter();
        let mut ready: Vec<(usize, Vec<f32>)> = Vec::new();
        for (i, (r, &n)) in self.running.iter_mut().zip(&feed).enumerate() {
            if n == 0 {
                continue;
            }
            let row = logits.next().expect("one row of logits per fed sequence");
            r.pending.drain(..n);
            if r.pending.is_empty() {
                ready.push((i, row));
            }
        }
        let sampled: Vec<(u32, Option<TokenLogprobs>)> = {
            let mut rngs: Vec<Option<&mut StdRng>> =
                self.running.iter_mut().map(|r| Some(&mut r.rng)).collect();
            let jobs: Vec<(&mut StdRng, &[f32])> = ready
                .iter()
                .map(|(i, row)| (rngs[*i].take().expect("one row per sequence"), &row[..]))
                .collect();
            jobs.into_par_iter()
                .map(|(rng, row)| {
                    let token = sample_token(row, options, rng);
                    let logprobs = (options.top_logprobs > 0)
                        .then(|| TokenLogprobs::of(row, token, options.top_logprobs));
                    (token, logprobs)
                })
                .collect()
        };
        for (&(i, _), (token, logprobs)) in ready.iter().zip(sampled) {
            let r = &mut self.running[i];
            r.generated.tokens.push(token);
            r.generated.logprobs.extend(logprobs);
            let finish = if options.stop_token_ids.contains(&token) {
                Some(FinishReason::Stop)
            } else if r.generated.tokens.len() >= r.limit {
                Some(FinishReason::Length)
            } else {
                r.pending.push(token);
                None
            };
            if let Some(f) = finish {
                r.generated.finish = f;
            }
            on_token(TokenEvent {
                tag: &r.tag,
                token,
                finish,
            });
        }
        for r in std::mem::take(&mut self.running) {
            if r.pending.is_empty() {
                finished.push(Finished {
                    tag: r.tag,
                    generated: r.generated,
                });
            } else {
                self.running.push(r);
            }
        }
        Ok(finished)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{self, prompt};
    use candle_core::quantized::GgmlDType;
    use distillery_model::Arch;

    fn engine() -> Arc<Engine> {
        let cfg = testing::config(Arch::Llama);
        let checkpoint = testing::quantized(&cfg, 21, GgmlDType::Q4_1);
        Arc::new(Engine::from_checkpoint(&checkpoint).unwrap())
    }

    fn sampling() -> GenerateOptions {
        GenerateOptions {
            temperature: 0.9,
            top_p: 0.95,
            top_logprobs: 2,
            ..GenerateOptions::greedy(0)
        }
    }

    fn request(i: usize, new_tokens: usize) -> Request<usize> {
        Request {
            tag: i,
            prompt: prompt(100 + i as u64, 3 + i % 5, 700),
            row: RowOptions {
                seed: i as u64,
                max_new_tokens: new_tokens,
            },
        }
    }

    /// Runs every request to the end; the finished ones by tag, and how many tokens each step
    /// sampled.
    fn run(batcher: &mut Batcher<usize>) -> (Vec<Option<Generated>>, Vec<usize>) {
        let mut done = vec![None; 16];
        let mut sampled = Vec::new();
        let mut streamed: Vec<Vec<u32>> = vec![Vec::new(); 16];
        while !batcher.is_idle() {
            let mut tokens = 0;
            let finished = batcher
                .step(|e| {
                    streamed[*e.tag].push(e.token);
                    tokens += 1;
                })
                .unwrap();
            for f in finished {
                assert_eq!(
                    streamed[f.tag], f.generated.tokens,
                    "the stream spells the answer"
                );
                done[f.tag] = Some(f.generated);
            }
            sampled.push(tokens);
        }
        (done, sampled)
    }

    #[test]
    fn each_answer_is_what_it_would_be_alone_and_slots_refill_at_once() {
        let engine = engine();
        let lengths = [9, 2, 5, 1, 7, 3, 0, 4];
        let alone: Vec<Generated> = lengths
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                let mut b =
                    Batcher::new(Arc::clone(&engine), sampling(), BatchLimits::new(1)).unwrap();
                b.submit(request(i, n)).unwrap();
                run(&mut b).0[i].clone().unwrap()
            })
            .collect();
        let mut batcher = Batcher::new(engine, sampling(), BatchLimits::new(3)).unwrap();
        for (i, &n) in lengths.iter().enumerate() {
            batcher.submit(request(i, n)).unwrap();
        }
        let (together, sampled) = run(&mut batcher);
        for (i, want) in alone.iter().enumerate() {
            let got = together[i].as_ref().unwrap();
            assert_eq!(got.tokens, want.tokens, "request {i}");
            assert_eq!(got.finish, FinishReason::Length);
            assert_eq!(got.tokens.len(), lengths[i]);
            assert_eq!(got.logprobs.len(), lengths[i]);
        }
        // Three slots stay full while requests wait: a finished sequence's slot is taken at
        // the very next step, so the 31 tokens take 12 steps, the first 9 full (a batch at a
        // time, 9 then 7 then 4 long, would take 20).
        assert_eq!(sampled.iter().sum::<usize>(), 31);
        assert!(sampled.len() <= 12, "{sampled:?}");
        assert!(sampled[..9].iter().all(|&n| n == 3), "{sampled:?}");
    }

    #[test]
    fn a_prompt_fed_in_chunks_gives_the_same_answer() {
        let engine = engine();
        let long = Request {
            prompt: prompt(7, 40, 700),
            ..request(0, 6)
        };
        let mut whole = Batcher::new(Arc::clone(&engine), sampling(), BatchLimits::new(2)).unwrap();
        whole.submit(long.clone()).unwrap();
        let limits = BatchLimits {
            max_sequences: 2,
            max_step_tokens: 7,
        };
        let mut chunked = Batcher::new(engine, sampling(), limits).unwrap();
        chunked.submit(long).unwrap();
        chunked.submit(request(1, 12)).unwrap();
        let (a, _) = run(&mut whole);
        let (b, steps) = run(&mut chunked);
        let (a, b) = (a[0].as_ref().unwrap(), b[0].as_ref().unwrap());
        assert_eq!(a.tokens, b.tokens);
        for (x, y) in a.logprobs.iter().zip(&b.logprobs) {
            assert!((x.logprob - y.logprob).abs() < 1e-4);
        }
        // 40 prompt tokens 7 at a time beside a decoding sequence: 7 steps before its first.
        assert!(steps.len() >= 12, "{steps:?}");
    }

    #[test]
    fn stop_tokens_end_a_sequence_and_stay_in_it() {
        let engine = engine();
        let mut probe = Batcher::new(Arc::clone(&engine), sampling(), BatchLimits::new(1)).unwrap();
        probe.submit(request(2, 6)).unwrap();
        let free = run(&mut probe).0[2].clone().unwrap();
        let stop = free.tokens[2];
        let options = GenerateOptions {
            stop_token_ids: vec![stop],
            ..sampling()
        };
        let mut batcher = Batcher::new(engine, options, BatchLimits::new(1)).unwrap();
        batcher.submit(request(2, 6)).unwrap();
        let stopped = run(&mut batcher).0[2].clone().unwrap();
        let end = free.tokens.iter().position(|&t| t == stop).unwrap();
        assert_eq!(stopped.tokens, free.tokens[..=end]);
        assert_eq!(stopped.finish, FinishReason::Stop);
    }

    #[test]
    fn bad_requests_are_refused_alone_and_cancelled_ones_leave() {
        let engine = engine();
        let context = engine.config().max_position_embeddings;
        let mut batcher = Batcher::new(engine, sampling(), BatchLimits::new(2)).unwrap();
        let empty = Request {
            prompt: vec![],
            ..request(0, 3)
        };
        assert!(
            batcher
                .submit(empty)
                .unwrap_err()
                .to_string()
                .contains("empty")
        );
        let unknown = Request {
            prompt: vec![5, 9_999],
            ..request(1, 3)
        };
        let err = batcher.submit(unknown).unwrap_err();
        assert!(err.to_string().contains("9999"), "{err}");
        let err = batcher.submit(request(2, context)).unwrap_err();
        assert!(err.to_string().contains("context"), "{err}");
        assert!(batcher.is_idle());
        for i in 3..6 {
            batcher.submit(request(i, 50)).unwrap();
        }
        batcher.step(|_| {}).unwrap();
        batcher.cancel(|&tag| tag != 5);
        assert_eq!(batcher.running(), 0);
        let (done, _) = run(&mut batcher);
        assert!(done[3].is_none() && done[4].is_none());
        assert_eq!(done[5].as_ref().unwrap().tokens.len(), 50);
        assert!(
            Batcher::<usize>::new(batcher.engine.clone(), sampling(), BatchLimits::new(0)).is_err()
        );
    }
}
