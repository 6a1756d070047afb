//! The loss mask the trainer takes from `{% generation %}` blocks equals the one transformers
//! builds for TRL's `assistant_only_loss` (`apply_chat_template(...,
//! return_assistant_tokens_mask=True, return_dict=True)`), token for token, on the template
//! and tokenizer `distillery init-model` writes.
//!
//! Needs python3 with transformers (tokenizers only; no PyTorch): ignored by `cargo test`, run
//! by `make test-real`, which installs it. It fails, not skips, without it. Another Python:
//! `DISTILLERY_TRANSFORMERS_PYTHON=/path/to/python`.

mod common;
use common::run_ok;

use distillery_model::ChatTemplate;
use distillery_train::data::{Conversation, Encoder, Message};

#[test]
#[ignore = "needs python3 with transformers; run by `make test-real`"]
fn generation_markers_give_transformers_assistant_mask() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny");
    run_ok(&["init-model", "--tiny", model.to_str().unwrap()]);

    let turns = [
        ("system", "You are terse."),
        ("user", "What is 3 + 11?"),
        (
            "assistant",
            "<think>\n3 + 11 = 14, checked twice.\n</think>\n\nThe answer is \\boxed{14}.",
        ),
        ("user", "And 2 + 2? Ünïcödé, 数学."),
        ("assistant", "<think>\nfour\n</think>\n\n4"),
    ];
    let conversation = Conversation {
        messages: turns
            .iter()
            .map(|(role, content)| Message {
                role: (*role).into(),
                content: (*content).into(),
            })
            .collect(),
        origin: "test".into(),
        teacher_logprobs: None,
    };
    let template =
        ChatTemplate::from_tokenizer_config(&model.join("tokenizer_config.json")).unwrap();
    assert!(
        template.has_generation_markers(),
        "init-model's template has no markers"
    );
    let tokenizer = tokenizers::Tokenizer::from_file(model.join("tokenizer.json")).unwrap();
    let ours = Encoder {
        tokenizer: &tokenizer,
        template: &template,
        aligner: None,
    }
    .encode(&conversation)
    .unwrap();

    let python =
        std::env::var("DISTILLERY_TRANSFORMERS_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = r#"
import json, sys
from transformers import AutoTokenizer
tok = AutoTokenizer.from_pretrained(sys.argv[1])
messages = json.loads(sys.argv[2])
out = tok.apply_chat_template(messages, tokenize=True, return_assistant_tokens_mask=True, return_dict=True)
print(json.dumps({"ids": list(out["input_ids"]), "mask": list(out["assistant_masks"])}))
"#;
    let messages: Vec<serde_json::Value> = turns
        .iter()
        .map(|(role, content)| serde_json::json!({"role": role, "content": content}))
        .collect();
    let output = std::process::Command::new(&python)
        .args(["-c", script])
        .arg(&model)
        .arg(serde_json::Value::Array(messages).to_string())
        .env("HF_HUB_OFFLINE", "1")
        .env("TRANSFORMERS_VERBOSITY", "error")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e} (pip install transformers)"));
    assert!(
        output.status.success(),
        "{python} with transformers failed (pip install transformers):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let theirs: serde_json::Value = serde_json::from_slice(
        output
            .stdout
            .rsplit(|b| *b == b'\n')
            .find(|l| !l.is_empty())
            .unwrap(),
    )
    .unwrap();
    let ids: Vec<u32> = serde_json::from_value(theirs["ids"].clone()).unwrap();
    let mask: Vec<bool> = theirs["mask"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_u64().unwrap() == 1)
        .collect();
    assert_eq!(
        ids, ours.tokens,
        "transformers renders or tokenizes differently"
    );
    assert!(
        mask.iter().any(|m| *m),
        "transformers found no assistant token"
    );
    assert_eq!(mask, ours.assistant, "the assistant masks differ");
}
