//! The code sandbox against real HumanEval problems and hostile programs.
//!
//! These tests need `python3`; without it they fail with a message saying so rather than pass.

use std::path::{Path, PathBuf};
use std::time::Duration;

use distillery_verify::code::{HumanEvalTask, Sandbox, SandboxLimits, Termination};
use distillery_verify::{Reason, TimeLimit};

fn limits() -> SandboxLimits {
    SandboxLimits {
        wall_time: Duration::from_secs(10),
        cpu_time: Duration::from_secs(10),
        memory_bytes: 512 << 20,
        output_bytes: 64 << 10,
        max_processes: 16,
    }
}

/// A sandbox whose interpreter is known to work; panics with a clear message otherwise.
fn sandbox(limits: SandboxLimits) -> Sandbox {
    let sandbox = Sandbox::new(limits);
    assert!(
        sandbox.python().is_some(),
        "python3 is required for the code-sandbox tests and was not found in /usr/local/bin, /usr/bin, /bin or PATH"
    );
    let probe = sandbox.run_python("print('ready')");
    assert!(
        probe.success() && probe.stdout == "ready\n",
        "python3 ({:?}) does not run in the sandbox: {probe:?}",
        sandbox.python()
    );
    sandbox
}

fn humaneval() -> Vec<HumanEvalTask> {
    let path: PathBuf =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/humaneval/HumanEval.jsonl");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("HumanEval data missing at {}: {e}", path.display()));
    text.lines()
        .map(|l| serde_json::from_str(l).expect("HumanEval row"))
        .collect()
}

fn code(result: &distillery_verify::code::SandboxResult) -> &'static str {
    result.verdict().code()
}

#[test]
fn humaneval_canonical_solutions_pass_and_broken_ones_fail() {
    let sandbox = sandbox(limits());
    let tasks = humaneval();
    for index in [0, 2, 12, 31, 53, 100, 163] {
        let task = &tasks[index];
        let verdict = sandbox.run_humaneval(task, &task.canonical_solution);
        assert!(
            verdict.is_pass(),
            "{}: canonical solution should pass: {verdict}",
            task.task_id
        );

        let broken = sandbox.run_humaneval(task, "    return None\n");
        assert_eq!(
            broken.code(),
            "code.failed",
            "{}: `return None` should fail: {broken}",
            task.task_id
        );
        println!("{}: canonical pass, broken -> {broken}", task.task_id);
    }
    // Another task's solution is valid Python that fails the tests.
    let verdict = sandbox.run_humaneval(&tasks[0], &tasks[2].canonical_solution);
    assert!(
        matches!(verdict.reason(), Some(Reason::CodeFailed { .. })),
        "{verdict}"
    );
    // A syntax error is a failure of its own kind.
    assert_eq!(
        sandbox.run_humaneval(&tasks[0], "    return (\n").code(),
        "code.syntax"
    );
    // A model answer with a fenced block.
    let task = &tasks[53];
    let answer = format!(
        "Here you go:\n```python\n{}{}```\n",
        task.prompt, task.canonical_solution
    );
    assert!(sandbox.check_humaneval_answer(task, &answer).is_pass());
}

#[test]
fn infinite_loop_times_out_and_the_group_is_gone() {
    let sandbox = sandbox(SandboxLimits {
        wall_time: Duration::from_secs(1),
        ..limits()
    });
    let result = sandbox.run_python("while True:\n    pass\n");
    println!(
        "infinite loop: {:?} after {:?}, leftover {}",
        result.termination, result.wall_time, result.leftover_processes
    );
    assert_eq!(result.termination, Termination::WallTimeout);
    assert!(matches!(
        result.verdict().reason(),
        Some(Reason::CodeTimeout {
            limit: TimeLimit::Wall,
            ..
        })
    ));
    assert!(
        result.wall_time < Duration::from_secs(4),
        "{:?}",
        result.wall_time
    );
    assert_eq!(result.leftover_processes, 0);

    // A sleeping program uses no CPU: only the wall clock stops it.
    let result = sandbox.run_python("import time\ntime.sleep(60)\n");
    assert_eq!(result.termination, Termination::WallTimeout);
}

#[test]
fn cpu_limit_is_enforced_by_the_kernel() {
    let sandbox = sandbox(SandboxLimits {
        cpu_time: Duration::from_secs(1),
        wall_time: Duration::from_secs(20),
        ..limits()
    });
    let result = sandbox.run_python("while True:\n    pass\n");
    println!(
        "cpu hog: {:?}, cpu {:?}",
        result.termination, result.cpu_time
    );
    assert!(
        matches!(
            result.verdict().reason(),
            Some(Reason::CodeTimeout {
                limit: TimeLimit::Cpu,
                ..
            })
        ),
        "{result:?}"
    );
    assert!(result.wall_time < Duration::from_secs(8));
}

#[test]
fn fork_bomb_is_refused_by_the_guard() {
    let sandbox = sandbox(limits());
    let result = sandbox.run_python("import os\nwhile True:\n    os.fork()\n");
    println!("fork bomb (guarded): {}", result.verdict());
    assert_eq!(code(&result), "code.forbidden");
    assert_eq!(result.leftover_processes, 0);
}

#[test]
fn fork_bomb_is_contained_by_os_limits_alone() {
    // Without the audit hook only rlimits, the private uid and the group kill stand in the way.
    let sandbox = sandbox(SandboxLimits {
        wall_time: Duration::from_secs(2),
        ..limits()
    })
    .with_audit_guard(false);
    let bomb = "import os, time\n\
                for _ in range(10_000):\n    try:\n        os.fork()\n    except OSError:\n        time.sleep(0.01)\n\
                time.sleep(60)\n";
    let result = sandbox.run_python(bomb);
    println!(
        "fork bomb (OS limits only): {:?}, privileges dropped: {}, leftover {}, {:?}",
        result.termination, result.privileges_dropped, result.leftover_processes, result.wall_time
    );
    assert!(!result.success());
    assert_eq!(
        result.leftover_processes, 0,
        "processes of the fork bomb survived"
    );
    assert!(
        result.wall_time < Duration::from_secs(8),
        "{:?}",
        result.wall_time
    );

    // Children that leave the process group are still found (by their private uid) when run as root.
    let escape = "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(60)\nelse:\n    time.sleep(0.2)\n";
    let result = sandbox.run_python(escape);
    println!(
        "setsid escape: {:?}, leftover {}",
        result.termination, result.leftover_processes
    );
    if result.privileges_dropped {
        assert_eq!(result.leftover_processes, 0);
    }
}

#[test]
fn memory_hog_reports_memory() {
    let sandbox = sandbox(SandboxLimits {
        memory_bytes: 256 << 20,
        ..limits()
    });
    for program in [
        "x = bytearray(4 * 1024**3)\n",
        "chunks = []\nwhile True:\n    chunks.append(b'x' * (1 << 20))\n",
    ] {
        let result = sandbox.run_python(program);
        println!("memory hog: {}", result.verdict());
        assert_eq!(code(&result), "code.memory", "{result:?}");
    }
}

#[test]
fn huge_output_is_truncated_and_reported() {
    let sandbox = sandbox(limits());
    let result = sandbox.run_python("while True:\n    print('x' * 1000)\n");
    println!(
        "output flood: {} ({} bytes kept)",
        result.verdict(),
        result.stdout.len()
    );
    assert_eq!(code(&result), "code.output_limit");
    assert!(result.output_truncated);
    assert!(result.stdout.len() <= 64 << 10);

    // Files count too: RLIMIT_FSIZE stops a file past the limit.
    let result =
        sandbox.run_python("with open('big.txt', 'w') as f:\n    f.write('x' * (10 << 20))\n");
    println!("big file: {}", result.verdict());
    assert_eq!(code(&result), "code.output_limit");
}

#[test]
fn writes_outside_the_temp_dir_are_refused() {
    let sandbox = sandbox(limits());
    let target = std::env::temp_dir().join(format!("distillery-escape-{}", std::process::id()));
    let _ = std::fs::remove_file(&target);
    let attempts = [
        format!(
            "open({:?}, 'w').write('escaped')\n",
            target.display().to_string()
        ),
        format!("import os\nos.system('touch {}')\n", target.display()),
        format!(
            "import subprocess\nsubprocess.run(['touch', {:?}])\n",
            target.display().to_string()
        ),
        format!(
            "import os\nos.open({:?}, os.O_WRONLY | os.O_CREAT)\n",
            target.display().to_string()
        ),
        format!(
            "import os\nos.symlink('/etc/passwd', {:?})\n",
            target.display().to_string()
        ),
    ];
    for program in &attempts {
        let result = sandbox.run_python(program);
        println!("escape attempt -> {}", result.verdict());
        assert_eq!(code(&result), "code.forbidden", "{program}: {result:?}");
        assert!(!target.exists(), "{program} wrote {}", target.display());
    }
    // Inside the working directory is fine, and relative paths that climb out are not.
    let ok = sandbox
        .run_python("open('notes.txt', 'w').write('fine')\nprint(open('notes.txt').read())\n");
    assert!(ok.success() && ok.stdout == "fine\n", "{ok:?}");
    let climb = sandbox.run_python("open('../climbed.txt', 'w').write('x')\n");
    assert_eq!(code(&climb), "code.forbidden");
}

#[test]
fn network_is_unavailable() {
    let program =
        "import socket\nsocket.create_connection(('1.1.1.1', 53), timeout=2)\nprint('connected')\n";
    let guarded = sandbox(limits()).run_python(program);
    println!(
        "network (guarded): {}, isolated: {}",
        guarded.verdict(),
        guarded.network_isolated
    );
    assert_eq!(code(&guarded), "code.forbidden");

    let unguarded = sandbox(limits())
        .with_audit_guard(false)
        .run_python(program);
    println!(
        "network (OS only): {}, isolated: {}",
        unguarded.verdict(),
        unguarded.network_isolated
    );
    if unguarded.network_isolated {
        assert!(
            !unguarded.success(),
            "connected despite the network namespace: {unguarded:?}"
        );
    } else {
        println!(
            "note: network namespaces are not permitted here; only the audit hook blocks sockets"
        );
    }
}

#[test]
fn environment_is_minimal_and_private() {
    let sandbox = sandbox(limits());
    let result = sandbox.run_python(
        "import os, sys\nprint(sorted(k for k in os.environ if k not in ('LC_CTYPE',)))\nprint(os.getcwd() == os.environ['HOME'] == os.environ['TMPDIR'])\nprint(sys.flags.isolated)\n",
    );
    assert!(result.success(), "{result:?}");
    assert_eq!(
        result.stdout,
        "['HOME', 'LANG', 'PATH', 'PYTHONDONTWRITEBYTECODE', 'TMPDIR']\nTrue\n1\n"
    );
}

#[test]
fn missing_interpreter_is_a_sandbox_error() {
    let result = Sandbox::new(limits())
        .with_python("/nonexistent/python3")
        .run_python("print(1)");
    assert!(matches!(result.termination, Termination::SpawnFailed(_)));
    assert_eq!(code(&result), "code.sandbox_error");
}
