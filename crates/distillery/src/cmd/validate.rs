use std::path::PathBuf;
use std::process::ExitCode;

use distillery_spec::{Pipeline, SpecError};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Pipeline definitions (TOML) to check.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut failed = false;
    for file in &args.files {
        match Pipeline::from_file(file) {
            Ok(pipeline) => crate::outln!(
                "{}: ok (pipeline `{}`, {} teacher, {} sample(s) per prompt)",
                file.display(),
                pipeline.name,
                kind_name(&pipeline),
                pipeline.teacher.samples_per_prompt,
            )?,
            Err(error @ SpecError::Invalid { .. }) => {
                failed = true;
                eprintln!("{error}");
            }
            Err(error) => {
                failed = true;
                eprintln!("error: {error}");
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn kind_name(pipeline: &Pipeline) -> &'static str {
    match pipeline.teacher.kind() {
        distillery_spec::TeacherKind::Openai => "openai",
        distillery_spec::TeacherKind::Local => "local",
        distillery_spec::TeacherKind::Mock => "mock",
    }
}
