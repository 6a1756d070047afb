//! A run split across machines: `run --shard I/N` (and `--shard auto` from a Slurm array's
//! environment) as concurrent processes against one teacher, two of them killed with
//! `kill -9` and resumed, then `status` and `export` over the shard directories; and the
//! shard sets `export` refuses.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{
    MockProcess, distillery, manifest, meaning, mock_definition, rows, run_ok, served_definition,
};
use distillery_spec::Shard;
use distillery_store::{Generation, RunDir, RunStatus, Which};

/// Source rows of the end-to-end run; 4 shards of about 60.
const PROMPTS: u64 = 240;

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `distillery` with no scheduler in its environment, whatever runs the tests.
fn hermetic() -> Command {
    without_scheduler(distillery())
}

fn without_scheduler(mut command: Command) -> Command {
    for variable in [
        "SLURM_ARRAY_TASK_ID",
        "SLURM_ARRAY_TASK_COUNT",
        "SLURM_ARRAY_TASK_MIN",
        "SLURM_ARRAY_TASK_MAX",
        "SLURM_ARRAY_TASK_STEP",
        "JOB_COMPLETION_INDEX",
    ] {
        command.env_remove(variable);
    }
    command
}

fn output(command: &mut Command) -> Output {
    command.output().unwrap()
}

/// The environment of task 3 of `sbatch --array=0-3`.
fn slurm_task_3(command: &mut Command) -> &mut Command {
    command
        .env("SLURM_ARRAY_TASK_ID", "3")
        .env("SLURM_ARRAY_TASK_COUNT", "4")
        .env("SLURM_ARRAY_TASK_MIN", "0")
        .env("SLURM_ARRAY_TASK_MAX", "3")
}

/// Generations committed to the run's WAL so far (one line holds a prompt's samples).
fn wal_records(run: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(run.join("wal")) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .map(|t| t.lines().count())
        .sum()
}

/// Every row of an exported dataset.
fn dataset(dir: &Path) -> Vec<Generation> {
    distillery_store::read_generations(dir, Which::All)
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn killed_midway(mut child: Child, run: &Path, name: &str) {
    let started = Instant::now();
    while wal_records(run) < 4 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "{name} finished before it could be killed midway"
        );
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{name} makes no progress"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(child.try_wait().unwrap().is_none(), "{name} ended too soon");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}

#[test]
fn four_concurrent_shards_killed_and_resumed_export_the_unsharded_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let mock = MockProcess::start(&["--latency-ms", "60"]);
    let def = dir.path().join("sharded.toml");
    served_definition(
        &def,
        "sharded",
        PROMPTS,
        &mock.base_url,
        "n = 2\nconcurrency = 2",
    );

    // The reference: one unsharded run of the same definition.
    let whole = dir.path().join("whole");
    run_ok(&["run", s(&def), "--run-dir", s(&whole), "--plain"]);
    let whole_ds = dir.path().join("whole-ds");
    run_ok(&["export", s(&whole), "--out", s(&whole_ds), "--all"]);

    // Four shards at once; shard 3 finds its number in a Slurm array task's environment.
    let runs = dir.path().join("runs");
    let shard_dir = |i: u32| runs.join(format!("shard-{i}-of-4"));
    let mut children: Vec<Child> = (0..4)
        .map(|i| {
            let mut command = hermetic();
            command.args(["run", s(&def), "--run-dir", s(&runs), "--plain"]);
            if i == 3 {
                slurm_task_3(&mut command).args(["--shard", "auto"]);
            } else {
                command.args(["--shard", &format!("{i}/4")]);
            }
            command
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    let third = children.pop().unwrap();
    let second = children.remove(1);
    killed_midway(second, &shard_dir(1), "shard 1/4");
    killed_midway(third, &shard_dir(3), "shard 3/4 (--shard auto)");
    for (child, i) in children.iter_mut().zip([0, 2]) {
        assert!(child.wait().unwrap().success(), "shard {i}/4 failed");
    }
    for i in [1, 3] {
        let done = RunDir::open(shard_dir(i))
            .unwrap()
            .recover()
            .unwrap()
            .done_ids
            .len() as u64;
        let total = manifest(&shard_dir(i)).counts.prompts_total.unwrap();
        assert!(
            done > 0 && done < total,
            "shard {i}/4 was killed midway: {done} of {total} prompts"
        );
    }

    // Two shards unfinished: status says which (exit 3), export refuses naming them.
    let status = output(hermetic().args(["status", s(&runs)]));
    assert_eq!(status.status.code(), Some(3), "{}", text(&status.stdout));
    let report = text(&status.stdout);
    for (i, word) in [
        (0, "completed"),
        (1, "running"),
        (2, "completed"),
        (3, "running"),
    ] {
        let line = report
            .lines()
            .find(|l| l.starts_with(&format!("shard {i}/4")))
            .unwrap_or_else(|| panic!("no line for shard {i}/4:\n{report}"));
        assert!(line.contains(word), "{line}");
    }
    let refused = output(hermetic().args(["export", s(&runs), "--out", s(&dir.path().join("no"))]));
    assert!(!refused.status.success());
    let error = text(&refused.stderr);
    assert!(
        error.contains("shard 1/4") && error.contains("shard 3/4") && !error.contains("shard 0/4"),
        "{error}"
    );
    assert!(!dir.path().join("no").exists());

    // Resumed as a scheduler would restart them: the same command with --resume (shard 3 in
    // the same Slurm environment), and `distillery resume` for shard 1.
    run_ok(&["resume", s(&shard_dir(1)), "--plain"]);
    let resumed = output(
        slurm_task_3(&mut hermetic())
            .args(["run", s(&def), "--run-dir", s(&runs), "--plain"])
            .args(["--shard", "auto", "--resume"]),
    );
    assert!(resumed.status.success(), "{}", text(&resumed.stderr));

    let status = output(hermetic().args(["status", s(&runs)]));
    assert!(status.status.success(), "{}", text(&status.stdout));
    assert!(
        text(&status.stdout).contains(&format!("{PROMPTS} of {PROMPTS} prompts done")),
        "{}",
        text(&status.stdout)
    );

    // Every shard holds only its prompts; together they hold every prompt once.
    let mut total = 0;
    for i in 0..4 {
        let run = shard_dir(i);
        let m = manifest(&run);
        let shard = Shard::new(i, 4).unwrap();
        assert_eq!(m.shard, Some(shard));
        assert_eq!(m.status, RunStatus::Completed);
        total += m.counts.prompts_total.unwrap();
        for row in rows(&run) {
            assert!(shard.contains(&row.id), "{} is not shard {shard}'s", row.id);
        }
    }
    assert_eq!(total, PROMPTS);

    let sharded_ds = dir.path().join("sharded-ds");
    run_ok(&["export", s(&runs), "--out", s(&sharded_ds), "--all"]);
    let sharded = dataset(&sharded_ds);
    let keys: BTreeSet<(String, u32)> = sharded
        .iter()
        .map(|r| (r.id.clone(), r.sample_index))
        .collect();
    assert_eq!(
        sharded.len(),
        2 * PROMPTS as usize,
        "every (prompt, sample)"
    );
    assert_eq!(keys.len(), sharded.len(), "each exactly once");
    assert_eq!(
        meaning(&sharded),
        meaning(&dataset(&whole_ds)),
        "the same rows as the unsharded run"
    );
}

/// Four shards of a small run with the built-in mock teacher, in `runs/`.
fn small_sharded_run(dir: &Path, mock: &str) -> (PathBuf, PathBuf) {
    let def = mock_definition(dir, "small", 24, "", mock);
    let runs = dir.join("runs");
    for i in 0..4 {
        run_ok(&[
            "run",
            s(&def),
            "--run-dir",
            s(&runs),
            "--shard",
            &format!("{i}/4"),
            "--plain",
        ]);
    }
    (def, runs)
}

#[test]
fn export_names_a_missing_shard_and_a_shard_of_another_definition() {
    let dir = tempfile::tempdir().unwrap();
    let (def, runs) = small_sharded_run(dir.path(), "");
    let out = dir.path().join("ds");
    let export = |inputs: &[&Path]| {
        let mut command = hermetic();
        command.arg("export");
        for input in inputs {
            command.arg(input);
        }
        output(command.args(["--out", s(&out), "--force"]))
    };
    assert!(export(&[&runs]).status.success());

    // Shard 2 left out (a glob that misses it): named, with where it should be.
    let given: Vec<PathBuf> = [0, 1, 3]
        .iter()
        .map(|i| runs.join(format!("shard-{i}-of-4")))
        .collect();
    let missing = export(&given.iter().map(PathBuf::as_path).collect::<Vec<_>>());
    assert!(!missing.status.success());
    let error = text(&missing.stderr);
    assert!(
        error.contains("shard 2/4 of `small` is missing") && error.contains("shard-2-of-4"),
        "{error}"
    );

    // Shard 2 replaced by a shard of another definition (another accuracy, same name).
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let (_, foreign_runs) = small_sharded_run(&other, "accuracy = 0.3");
    let shard2 = runs.join("shard-2-of-4");
    std::fs::rename(&shard2, dir.path().join("kept")).unwrap();
    std::fs::rename(foreign_runs.join("shard-2-of-4"), &shard2).unwrap();
    let foreign = export(&[&runs]);
    assert!(!foreign.status.success());
    let error = text(&foreign.stderr);
    assert!(error.contains("ran different definitions"), "{error}");
    let odd_line = error
        .lines()
        .find(|l| l.contains("shard-2-of-4"))
        .unwrap_or_else(|| panic!("the foreign shard is not named: {error}"));
    assert!(!odd_line.contains("shard-0-of-4"), "{error}");
    let status = output(hermetic().args(["status", s(&runs)]));
    assert_eq!(status.status.code(), Some(1), "{}", text(&status.stdout));

    // A shard directory holds one shard: another one is refused, even with --resume.
    std::fs::remove_dir_all(&shard2).unwrap();
    std::fs::remove_dir_all(runs.join("shard-1-of-4")).unwrap();
    std::fs::rename(dir.path().join("kept"), runs.join("shard-1-of-4")).unwrap();
    let wrong = output(hermetic().args([
        "run",
        s(&def),
        "--run-dir",
        s(&runs),
        "--shard",
        "1/4",
        "--resume",
        "--plain",
    ]));
    assert!(!wrong.status.success());
    let error = text(&wrong.stderr);
    assert!(
        error.contains("holds a run of shard 2/4, not shard 1/4"),
        "{error}"
    );
}

#[test]
fn shard_auto_without_a_scheduler_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let def = mock_definition(dir.path(), "auto", 4, "", "");
    let run = |command: &mut Command| {
        let out = output(command.args(["run", s(&def), "--shard", "auto", "--plain"]));
        assert!(!out.status.success());
        text(&out.stderr)
    };
    let error = run(&mut hermetic());
    assert!(
        error.contains("SLURM_ARRAY_TASK_ID") && error.contains("JOB_COMPLETION_INDEX"),
        "{error}"
    );
    let error = run(hermetic().env("JOB_COMPLETION_INDEX", "1"));
    assert!(error.contains("--shards N"), "{error}");
    // A Kubernetes Indexed Job with its completions given.
    let out = output(
        hermetic()
            .env("JOB_COMPLETION_INDEX", "1")
            .args([
                "run",
                s(&def),
                "--shard",
                "auto",
                "--shards",
                "2",
                "--plain",
            ])
            .args(["--run-dir", s(&dir.path().join("k8s"))]),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        manifest(&dir.path().join("k8s/shard-1-of-2")).shard,
        Some(Shard::new(1, 2).unwrap())
    );
}

/// A port nobody listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn the_slurm_script_runs_each_array_task_as_a_shard_against_its_own_teacher() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let script = common::repo_root().join("deploy/slurm/distill.sbatch");
    // Every node serves its teacher on the same port; the tasks run one after the other here,
    // each starting and stopping its own server, the mock teacher standing in for vLLM.
    let port = free_port().to_string();
    let def = dir.path().join("cluster.toml");
    let base_url = format!("http://127.0.0.1:{port}/v1");
    served_definition(&def, "slurm", 30, &base_url, "n = 2");
    let teacher = format!(
        "{} mock-teacher --listen 127.0.0.1:{port} --seed 5 --dataset {}",
        env!("CARGO_BIN_EXE_distillery"),
        common::gsm8k().display()
    );
    for task in ["1", "2"] {
        // `sbatch --array=1-2`: tasks 1 and 2 are shards 0 and 1.
        let out = output(
            without_scheduler(Command::new("bash"))
                .arg(&script)
                .current_dir(dir.path())
                .env("SLURM_ARRAY_TASK_ID", task)
                .env("SLURM_ARRAY_TASK_MIN", "1")
                .env("SLURM_ARRAY_TASK_MAX", "2")
                .env("DEFINITION", &def)
                .env("RUNS", &runs)
                .env("DISTILLERY", env!("CARGO_BIN_EXE_distillery"))
                .env("PORT", &port)
                .env("TEACHER_CMD", &teacher),
        );
        assert!(
            out.status.success(),
            "task {task}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
    }
    assert!(dir.path().join("logs/teacher-local_2.log").is_file());
    let status = output(hermetic().args(["status", s(&runs)]));
    let report = text(&status.stdout);
    assert!(status.status.success(), "{report}");
    assert!(report.contains("2 of 2 shards present"), "{report}");
    assert!(report.contains("30 of 30 prompts done"), "{report}");
    run_ok(&["export", s(&runs), "--out", s(&dir.path().join("ds"))]);
}
