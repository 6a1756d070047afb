//! Optional, not in CI: a pipeline against a real OpenAI-compatible server, llama.cpp's (from
//! the PyPI package `llama-cpp-python[server]`) serving SmolLM2-135M-Instruct on 127.0.0.1.
//!
//! ```sh
//! make model                                   # the GGUF, into models/smollm2
//! python3 -m venv .venv-llama && .venv-llama/bin/pip install cmake 'llama-cpp-python[server]'
//! DISTILLERY_LLAMA_PYTHON=.venv-llama/bin/python \
//!     cargo test -p distillery --test llama_server -- --ignored
//! ```

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use distillery_store::{Generation, RunDir, RunStatus, Which};

mod common;
use common::{distillery, gsm8k, repo_root};

const PROMPTS: u64 = 4;
const SAMPLES: u64 = 2;

/// The llama.cpp server; killed when dropped.
struct LlamaServer {
    child: Child,
    port: u16,
}

impl LlamaServer {
    fn start(python: &str, model: &Path) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(python)
            .args(["-m", "llama_cpp.server", "--host", "127.0.0.1"])
            .args(["--port", &port.to_string()])
            .args(["--model", &model.display().to_string()])
            .args(["--model_alias", "smollm2", "--n_ctx", "2048"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {python} -m llama_cpp.server: {e}"));
        let mut server = Self { child, port };
        server.wait_ready();
        server
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("llama.cpp server exited early with {status}");
            }
            if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) {
                let request = "GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
                let mut reply = String::new();
                if stream.write_all(request.as_bytes()).is_ok()
                    && stream.read_to_string(&mut reply).is_ok()
                    && reply.starts_with("HTTP/1.1 200")
                {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!(
            "llama.cpp server not ready on port {} after 120 s",
            self.port
        );
    }
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
#[ignore = "needs `make model` and llama-cpp-python[server]; see the file's header"]
fn a_pipeline_runs_against_llama_cpp_server() {
    let model = repo_root().join("models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        model.is_file(),
        "{} is missing: run `make model` first",
        model.display()
    );
    let python = std::env::var("DISTILLERY_LLAMA_PYTHON").unwrap_or_else(|_| "python3".into());
    let probe = Command::new(&python)
        .args(["-c", "import llama_cpp.server"])
        .status()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    assert!(
        probe.success(),
        "{python} cannot import llama_cpp.server: pip install 'llama-cpp-python[server]' \
         (and point DISTILLERY_LLAMA_PYTHON at that interpreter)"
    );

    let server = LlamaServer::start(&python, &model);
    let dir = tempfile::tempdir().unwrap();
    for stream in [false, true] {
        let definition = dir.path().join(format!("llama-{stream}.toml"));
        std::fs::write(
            &definition,
            format!(
                "name = \"llama-server\"\n\
                 [source]\n\
                 path = \"{}\"\n\
                 prompt_field = \"question\"\n\
                 answer_field = \"answer\"\n\
                 answer_extract = \"gsm8k\"\n\
                 limit = {PROMPTS}\n\
                 [teacher]\n\
                 kind = \"openai\"\n\
                 base_url = \"http://127.0.0.1:{}/v1\"\n\
                 model = \"smollm2\"\n\
                 n = {SAMPLES}\n\
                 max_tokens = 96\n\
                 concurrency = 2\n\
                 stream = {stream}\n",
                gsm8k().display(),
                server.port
            ),
        )
        .unwrap();
        let run = dir.path().join(format!("run-{stream}"));
        let started = Instant::now();
        let output = distillery()
            .arg("run")
            .arg(&definition)
            .arg("--run-dir")
            .arg(&run)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "distillery run failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        eprintln!("stream = {stream}: {:.1?}", started.elapsed());

        let manifest = RunDir::open(&run).unwrap().manifest().unwrap();
        assert_eq!(manifest.status, RunStatus::Completed);
        assert_eq!(manifest.counts.prompts_done, PROMPTS);
        assert_eq!(manifest.counts.generations, PROMPTS * SAMPLES);
        let rows: Vec<Generation> = distillery_store::read_generations(&run, Which::All)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(rows.len() as u64, PROMPTS * SAMPLES);
        assert!(
            rows.iter().all(|r| r.teacher_model == "smollm2"),
            "every row names the served model"
        );
        assert!(
            rows.iter().any(|r| !r.content.trim().is_empty()),
            "the server wrote some text"
        );
        // llama-cpp-python ignores `stream_options.include_usage`: usage only without stream.
        if stream {
            let log = String::from_utf8_lossy(&output.stderr);
            assert!(log.contains("sends no token usage"), "{log}");
        } else {
            assert!(
                manifest.tokens.completion > 0,
                "usage came back: {:?}",
                manifest.tokens
            );
        }
        // SmolLM2 writes no `<think>`: its answers are recorded, with a reason, not dropped.
        for row in rows.iter().filter(|r| !r.accepted) {
            assert!(row.reject_reason.is_some(), "{row:?}");
        }
    }
}
