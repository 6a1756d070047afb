//! Drives `distillery validate` and `distillery mock-teacher` the way a user does.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};

mod common;
use common::{distillery, repo_root};

#[test]
fn shipped_pipelines_validate() {
    let smollm2 = repo_root().join("models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    for name in [
        "gsm8k-mock",
        "gsm8k-deepseek",
        "gsm8k-vllm",
        "gsm8k-cluster",
        "gsm8k-local",
        "humaneval-mock",
        "humaneval-vllm",
        "pycode-mock",
    ] {
        let file = repo_root().join(format!("pipelines/{name}.toml"));
        let output = distillery().arg("validate").arg(&file).output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        if name == "gsm8k-local" && !smollm2.exists() {
            // A clone without `make model`: the checkpoint is the one thing missing.
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(!output.status.success(), "{stdout}");
            assert!(stderr.contains("has 1 error"), "{stderr}");
            assert!(stderr.contains("`make model`"), "{stderr}");
            continue;
        }
        assert!(
            output.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(stdout.contains(&format!("pipeline `{name}`")), "{stdout}");
    }
}

/// gsm8k-local names the SmolLM2 checkpoint that `make model` downloads into the git-ignored
/// models/. Without it (a fresh clone) validation fails on that file alone, and says how to get
/// it; `shipped_pipelines_validate` covers the definition with it.
#[test]
fn the_local_pipeline_without_its_checkpoint_says_make_model() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo_root().join("pipelines/gsm8k-local.toml")).unwrap();
    // The same definition where models/ is absent; the source is still found.
    let source = repo_root().join("datasets/gsm8k/test.jsonl");
    let text = text.replace(
        "\"../datasets/gsm8k/test.jsonl\"",
        &format!("{:?}", source.display().to_string()),
    );
    let file = dir.path().join("gsm8k-local.toml");
    std::fs::write(&file, text).unwrap();
    let output = distillery().arg("validate").arg(&file).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("has 1 error"), "{stderr}");
    assert!(
        stderr.contains("teacher.local.checkpoint: ")
            && stderr.contains("SmolLM2-135M-Instruct.Q4_1.gguf does not exist")
            && stderr.contains("`make model`"),
        "{stderr}"
    );
}

#[test]
fn a_broken_definition_is_rejected_with_every_error_located() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broken.toml");
    std::fs::write(
        &file,
        r#"name = "broken"

[source]
path = "missing.jsonl"
prompt_field = "question"

[teacher]
kind = "openai"
base_url = "http://127.0.0.1:1/v1"
model = "m"
temperature = 7.5
concurrancy = 4
"#,
    )
    .unwrap();
    let output = distillery().arg("validate").arg(&file).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let shown = file.display().to_string();
    // The missing file, the out-of-range value and the misspelt key, each with line:column
    // and field path, all in one report.
    assert!(stderr.contains("has 3 errors"), "{stderr}");
    for expected in [
        format!("{shown}:4:8: source.path: "),
        format!("{shown}:11:15: teacher.temperature: must be between 0 and 2, got 7.5"),
        format!("{shown}:12:1: teacher.concurrancy: unknown field `concurrancy`"),
    ] {
        assert!(stderr.contains(&expected), "{expected} not in\n{stderr}");
    }
    assert!(stderr.contains("missing.jsonl does not exist"), "{stderr}");
}

#[test]
fn invalid_toml_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "name = \"x\"\n[source\npath = 1\n").unwrap();
    let output = distillery().arg("validate").arg(&file).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("{}:2:", file.display())),
        "{stderr}"
    );
}

/// Kills the server when the test ends, pass or fail.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn http(base: &str, request: &str) -> String {
    let authority = base
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap();
    let mut stream = TcpStream::connect(authority).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

#[test]
fn mock_teacher_serves_an_openai_compatible_simulator() {
    let dataset = repo_root().join("datasets/gsm8k/test.jsonl");
    let mut child = distillery()
        .args(["mock-teacher", "--listen", "127.0.0.1:0", "--accuracy", "1"])
        .arg("--dataset")
        .arg(&dataset)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _server = Server(child);
    let mut base = String::new();
    BufReader::new(stdout).read_line(&mut base).unwrap();
    let base = base.trim().to_owned();
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");

    let models = http(
        &base,
        "GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(models.starts_with("HTTP/1.1 200"), "{models}");
    assert!(models.contains("simulator"), "{models}");

    let first_question = std::fs::read_to_string(&dataset).unwrap();
    let row: serde_json::Value =
        serde_json::from_str(first_question.lines().next().unwrap()).unwrap();
    let body = serde_json::json!({
        "model": "distillery-mock-r1",
        "messages": [{"role": "user", "content": row["question"]}],
    })
    .to_string();
    let reply = http(
        &base,
        &format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let json: serde_json::Value =
        serde_json::from_str(reply.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    let message = &json["choices"][0]["message"];
    let gold = row["answer"]
        .as_str()
        .unwrap()
        .rsplit("#### ")
        .next()
        .unwrap();
    assert!(
        message["content"]
            .as_str()
            .unwrap()
            .contains(&format!("\\boxed{{{gold}}}")),
        "{message}"
    );
    assert!(!message["reasoning_content"].as_str().unwrap().is_empty());
}

#[test]
fn mock_teacher_rejects_bad_settings() {
    let output = distillery()
        .args(["mock-teacher", "--accuracy", "1.5"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--accuracy: must be between 0 and 1"),
        "{stderr}"
    );
}
