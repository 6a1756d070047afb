//! The shard writer: appends to the WAL with group commit and cuts segments into shards.

use super::*;

/// Options of a [`ShardWriter`].
#[derive(Debug, Clone, Default)]
pub struct WriterOptions {
    /// Cut a shard when the segment holds this many generations (0: never by count).
    pub shard_rows: u64,
    /// Cut a non-empty segment this long after its first row (zero: never by time).
    pub shard_interval: Duration,
    /// Extra footer key-value metadata. The writer always adds the schema version, the frozen
    /// definition and its hash, and the shard kind; an entry here with the same key wins.
    pub footer_metadata: Vec<(String, String)>,
}

impl WriterOptions {
    pub fn from_output(output: &distillery_spec::Output) -> Self {
        Self {
            shard_rows: u64::from(output.shard_rows.get()),
            shard_interval: output.shard_interval,
            footer_metadata: Vec::new(),
        }
    }
}

/// Writes finished generations of a run: WAL with group commit, shard cuts.
pub struct ShardWriter {
    run: RunDir,
    options: WriterOptions,
    next_segment: u64,
    segment: Option<(u64, WalSegment)>,
    segment_started: Option<Instant>,
    cut: Vec<ShardInfo>,
    fail_after: Option<u64>,
}

impl ShardWriter {
    /// Buffers generations (one WAL line: recovered all together or not at all). They count
    /// as done only after [`Self::commit`].
    pub fn append(&mut self, generations: &[Generation]) -> Result<()> {
        if generations.is_empty() {
            return Ok(());
        }
        if self.segment.is_none() {
            let index = self.next_segment;
            let path = self.run.wal_dir().join(segment_file_name(index));
            let mut segment = WalSegment::create(&path)?;
            segment.fail_after = self.fail_after.map(FailAfter);
            self.segment = Some((index, segment));
            self.next_segment += 1;
            self.segment_started = Some(Instant::now());
        }
        let (_, segment) = self.segment.as_mut().expect("opened above");
        segment.append(generations)
    }

    /// Writes and fsyncs everything appended since the last commit (group commit).
    pub fn commit(&mut self) -> Result<()> {
        match &mut self.segment {
            Some((_, segment)) => segment.commit(),
            None => Ok(()),
        }
    }

    /// Generations in the current segment (committed and pending).
    pub fn segment_rows(&self) -> u64 {
        self.segment.as_ref().map_or(0, |(_, s)| {
            s.committed_generations() + s.pending_generations()
        })
    }

    /// Whether the current segment is due for a cut.
    pub fn cut_due(&self) -> bool {
        let rows = self.segment_rows();
        if rows == 0 {
            return false;
        }
        let by_rows = self.options.shard_rows > 0 && rows >= self.options.shard_rows;
        let by_time = !self.options.shard_interval.is_zero()
            && self
                .segment_started
                .is_some_and(|t| t.elapsed() >= self.options.shard_interval);
        by_rows || by_time
    }

    /// Commits, and cuts the segment into shards if it is due.
    pub fn cut_if_due(&mut self) -> Result<Option<ShardInfo>> {
        if !self.cut_due() {
            return Ok(None);
        }
        self.cut_now()
    }

    /// Commits and cuts the current segment, if it has rows.
    pub fn cut_now(&mut self) -> Result<Option<ShardInfo>> {
        self.commit()?;
        let Some((index, segment)) = self.segment.take() else {
            return Ok(None);
        };
        drop(segment);
        self.segment_started = None;
        let (info, _) = self.run.cut_segment(index, &self.options.footer_metadata)?;
        self.cut.push(info.clone());
        Ok(Some(info))
    }

    /// Commits and cuts what is left. Returns the cuts `finish` made (see
    /// [`Self::shards_cut`] for all of this writer's cuts).
    pub fn finish(mut self) -> Result<Vec<ShardInfo>> {
        Ok(self.cut_now()?.into_iter().collect())
    }

    /// Every cut this writer made, in order.
    pub fn shards_cut(&self) -> &[ShardInfo] {
        &self.cut
    }

    /// For tests of full-disk handling: WAL writes fail with "No space left on device" once a
    /// segment would exceed `bytes` (part of the data lands first, as on a real full disk).
    #[doc(hidden)]
    pub fn simulate_disk_full_after(&mut self, bytes: u64) {
        self.fail_after = Some(bytes);
        if let Some((_, segment)) = &mut self.segment {
            segment.fail_after = Some(FailAfter(bytes));
        }
    }
}

impl RunDir {
    /// Opens a writer at the segment after every existing segment and shard.
    pub fn writer(&self, options: WriterOptions) -> Result<ShardWriter> {
        let next_segment = self
            .wal_segments()?
            .into_iter()
            .chain(self.shard_files()?.into_iter().map(|(_, index, _)| index))
            .max()
            .map_or(0, |max| max + 1);
        Ok(ShardWriter {
            run: self.clone(),
            options,
            next_segment,
            segment: None,
            segment_started: None,
            cut: Vec::new(),
            fail_after: None,
        })
    }
}
