use distillery_teacher::TeacherError;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Spec(#[from] distillery_spec::SpecError),
    #[error(transparent)]
    Store(#[from] distillery_store::StoreError),
    #[error(transparent)]
    Teacher(#[from] TeacherError),
    #[error("cannot start the mock teacher: {0}")]
    Mock(#[source] crate::teacher::MockLaunchError),
    #[error("{0}")]
    Unsupported(String),
    #[error("{}", .0)]
    RunExists(String),
    #[error("the definition changed since the run started, in ways that would mix incompatible rows:\n{}\nput the original definition back, start a new run, or pass --force", .changes.join("\n"))]
    UnsafeChange { changes: Vec<String> },
    #[error("the run's data is damaged:\n{}\nrestore the files (the WAL no longer holds their rows), or pass --force to accept the loss and ask the teacher again for prompts left with no rows", .problems.join("\n"))]
    Damaged { problems: Vec<String> },
    #[error("the run stopped: {0}")]
    Stopped(String),
}
