//! Parquet shards: atomic, durable writing and streaming reading of generation rows.
//!
//! A shard is written to `<name>.tmp`, fsynced, renamed to `<name>`, and its directory fsynced:
//! a reader sees either no file or the whole file. Files are ZSTD-compressed; the footer's
//! key-value metadata holds the schema version, the frozen pipeline definition and its hash.

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use crate::error::{Result, StoreError};
use crate::record::Generation;
use crate::schema::{from_record_batch, generation_schema, to_record_batch};
use crate::wal::sync_dir;

/// Rows per record batch when writing and reading.
pub const BATCH_ROWS: usize = 1024;
/// Rows per Parquet row group.
pub const ROW_GROUP_ROWS: usize = 8192;

/// Writer properties of every file the store writes: ZSTD, footer metadata.
pub fn writer_properties(metadata: &[(String, String)]) -> WriterProperties {
    let level = ZstdLevel::try_new(3).expect("3 is a valid zstd level");
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_key_value_metadata(Some(
            metadata
                .iter()
                .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
                .collect(),
        ))
        .build()
}

/// The temporary name a file is written under before its rename.
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".tmp");
    path.with_file_name(name)
}

/// A Parquet file being written under its temporary name; [`AtomicParquet::finish`] makes it
/// durable and visible.
pub struct AtomicParquet {
    path: PathBuf,
    tmp: PathBuf,
    writer: ArrowWriter<File>,
    rows: u64,
}

impl AtomicParquet {
    pub fn create(path: &Path, schema: SchemaRef, metadata: &[(String, String)]) -> Result<Self> {
        let tmp = tmp_path(path);
        let file = File::create(&tmp).map_err(StoreError::io("create", &tmp))?;
        let writer = ArrowWriter::try_new(file, schema, Some(writer_properties(metadata)))
            .map_err(StoreError::parquet(&tmp))?;
        Ok(Self {
            path: path.to_owned(),
            tmp,
            writer,
            rows: 0,
        })
    }

    pub fn write_batch(&mut self, batch: &RecordBatch) -> Result<()> {
        self.rows += batch.num_rows() as u64;
        self.writer
            .write(batch)
            .map_err(|e| parquet_write_error(&self.tmp, e))
    }

    pub fn write_generations(&mut self, rows: &[Generation]) -> Result<()> {
        for chunk in rows.chunks(BATCH_ROWS) {
            let batch = to_record_batch(chunk)?;
            self.write_batch(&batch)?;
        }
        Ok(())
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Closes, fsyncs, renames into place and fsyncs the directory. Returns the file's size.
    pub fn finish(mut self) -> Result<u64> {
        self.writer
            .finish()
            .map_err(|e| parquet_write_error(&self.tmp, e))?;
        let file = self.writer.inner();
        file.sync_all()
            .map_err(StoreError::io("fsync", &self.tmp))?;
        let bytes = file
            .metadata()
            .map_err(StoreError::io("stat", &self.tmp))?
            .len();
        durable_rename(&self.tmp, &self.path)?;
        Ok(bytes)
    }

    /// Gives up: removes the temporary file (best effort).
    pub fn abandon(self) {
        let tmp = self.tmp.clone();
        drop(self);
        let _ = std::fs::remove_file(tmp);
    }
}

fn parquet_write_error(path: &Path, error: parquet::errors::ParquetError) -> StoreError {
    // Surface OS errors (a full disk) as I/O errors naming the file.
    match error {
        parquet::errors::ParquetError::External(inner) => {
            match inner.downcast::<std::io::Error>() {
                Ok(io) => StoreError::Io {
                    op: "write",
                    path: path.to_owned(),
                    source: *io,
                },
                Err(other) => StoreError::Parquet {
                    path: path.to_owned(),
                    source: parquet::errors::ParquetError::External(other),
                },
            }
        }
        other => StoreError::Parquet {
            path: path.to_owned(),
            source: other,
        },
    }
}

/// Writes generations to `path` atomically. Returns the file's size in bytes.
pub fn write_shard(path: &Path, rows: &[Generation], metadata: &[(String, String)]) -> Result<u64> {
    let mut file = AtomicParquet::create(path, generation_schema(), metadata)?;
    file.write_generations(rows)?;
    file.finish()
}

/// Streams the generations of one Parquet file, batch by batch.
pub struct ShardFileReader {
    path: PathBuf,
    reader: ParquetRecordBatchReader,
    rows_before: u64,
    buffered: std::vec::IntoIter<Generation>,
}

impl ShardFileReader {
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(StoreError::io("open", path))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(StoreError::parquet(path))?
            .with_batch_size(BATCH_ROWS)
            .build()
            .map_err(StoreError::parquet(path))?;
        Ok(Self {
            path: path.to_owned(),
            reader,
            rows_before: 0,
            buffered: Vec::new().into_iter(),
        })
    }

    /// The next record batch, decoded.
    fn next_batch(&mut self) -> Option<Result<Vec<Generation>>> {
        let batch = match self.reader.next()? {
            Ok(batch) => batch,
            Err(e) => {
                return Some(Err(StoreError::BadRow {
                    path: self.path.clone(),
                    row: self.rows_before,
                    message: e.to_string(),
                }));
            }
        };
        let first = self.rows_before;
        self.rows_before += batch.num_rows() as u64;
        Some(from_record_batch(&batch).map_err(|e| e.in_file(&self.path, first)))
    }
}

impl Iterator for ShardFileReader {
    type Item = Result<Generation>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(row) = self.buffered.next() {
                return Some(Ok(row));
            }
            match self.next_batch()? {
                Ok(rows) => self.buffered = rows.into_iter(),
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

/// The Arrow schema of a Parquet file (as stored in its footer) and its row count.
pub fn file_schema(path: &Path) -> Result<(SchemaRef, u64)> {
    let file = File::open(path).map_err(StoreError::io("open", path))?;
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(file).map_err(StoreError::parquet(path))?;
    let rows = builder.metadata().file_metadata().num_rows().max(0) as u64;
    Ok((builder.schema().clone(), rows))
}

/// Reads the footer key-value metadata of a Parquet file.
pub fn footer_metadata(path: &Path) -> Result<Vec<(String, String)>> {
    let file = File::open(path).map_err(StoreError::io("open", path))?;
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(file).map_err(StoreError::parquet(path))?;
    Ok(builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .map(|kv| {
            kv.iter()
                .map(|kv| (kv.key.clone(), kv.value.clone().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default())
}

/// Makes a rename or removal in `dir` durable.
pub fn durable_rename(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to).map_err(StoreError::io("rename into place", to))?;
    sync_dir(to.parent().unwrap_or(Path::new(".")))
}
