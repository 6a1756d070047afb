//! Turning a candidate solution and a benchmark's tests into one program to run.

use serde::{Deserialize, Serialize};

use super::Sandbox;
use crate::{Check, Reason, Verdict};

/// One HumanEval problem (`HumanEval.jsonl` row).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HumanEvalTask {
    pub task_id: String,
    pub prompt: String,
    pub canonical_solution: String,
    pub test: String,
    pub entry_point: String,
}

/// `prompt + completion + test + check(entry_point)`, the program HumanEval's harness runs.
pub fn humaneval_program(prompt: &str, completion: &str, test: &str, entry_point: &str) -> String {
    format!("{prompt}{completion}\n\n{test}\n\ncheck({entry_point})\n")
}

/// An MBPP-style program: the solution, optional setup code, then each `assert` line.
pub fn mbpp_program(solution: &str, test_setup: &str, tests: &[String]) -> String {
    let mut program = format!("{solution}\n\n{test_setup}\n\n");
    for test in tests {
        program.push_str(test);
        program.push('\n');
    }
    program
}

/// The code of the last fenced block in a model answer (```` ```python ```` preferred), or
/// `None` when the answer has no fenced block.
pub fn extract_code_block(answer: &str) -> Option<&str> {
    let mut last_any = None;
    let mut last_python = None;
    let mut rest = answer;
    let mut offset = 0;
    while let Some(open) = rest.find("```") {
        let after_fence = &rest[open + 3..];
        let info_end = after_fence.find('\n')?;
        let info = after_fence[..info_end].trim().to_ascii_lowercase();
        let body_start = open + 3 + info_end + 1;
        let Some(close) = rest[body_start..].find("```") else {
            break;
        };
        let body = &answer[offset + body_start..offset + body_start + close];
        if info.is_empty() || info == "python" || info == "py" || info == "python3" {
            if info.is_empty() {
                last_any = Some(body);
            } else {
                last_python = Some(body);
            }
        }
        let consumed = body_start + close + 3;
        offset += consumed;
        rest = &rest[consumed..];
    }
    last_python.or(last_any)
}

impl Sandbox {
    /// Runs a HumanEval completion against the task's tests.
    pub fn run_humaneval(&self, task: &HumanEvalTask, completion: &str) -> Verdict {
        self.check_program(&humaneval_program(
            &task.prompt,
            completion,
            &task.test,
            &task.entry_point,
        ))
    }

    /// Checks a model answer to a HumanEval task: the last fenced code block, or the whole answer
    /// when it has none.
    pub fn check_humaneval_answer(&self, task: &HumanEvalTask, answer: &str) -> Verdict {
        let code = extract_code_block(answer).unwrap_or(answer);
        if code.trim().is_empty() {
            return Verdict::fail(Check::Code, Reason::CodeNoCode);
        }
        self.run_humaneval(task, code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs() {
        let p = humaneval_program(
            "def f(x):\n",
            "    return x\n",
            "def check(c):\n    assert c(1) == 1\n",
            "f",
        );
        assert!(p.ends_with("check(f)\n"));
        assert!(p.starts_with("def f(x):\n    return x\n"));
        let m = mbpp_program("def g(): return 2", "", &["assert g() == 2".to_string()]);
        assert!(m.ends_with("assert g() == 2\n"));
    }

    #[test]
    fn code_blocks() {
        let answer =
            "Try:\n```\nprint(1)\n```\nBetter:\n```python\ndef f():\n    return 2\n```\nDone.";
        assert_eq!(extract_code_block(answer), Some("def f():\n    return 2\n"));
        assert_eq!(extract_code_block("```\nx = 1\n```"), Some("x = 1\n"));
        assert_eq!(extract_code_block("no code"), None);
        assert_eq!(extract_code_block("```python\nunclosed"), None);
    }
}
