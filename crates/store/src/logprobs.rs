//! The teacher's top-k log-probabilities of every generated token, stored compactly so a
//! student can later be distilled on them without a second teacher pass.
//!
//! Per generated position the row keeps the token the teacher wrote (its bytes), that token's
//! log-probability, and the `k` most likely tokens with theirs. Token bytes, not ids: an
//! OpenAI-compatible server sends token strings, and the trainer maps them to the student's
//! vocabulary by their bytes. In Parquet the token columns are `list<binary>`, which the writer
//! dictionary-encodes per row group, so a token costs a small index, not its bytes.
//!
//! Log-probabilities are quantised to one byte each with a per-position scale `L` (f16), the
//! largest `−logprob` of the position: `q = round(255·√(−lp / L))`, `lp = −L·(q/255)²`. The
//! square root spends the resolution where the probability mass is (near 0 nats the step is
//! `L/65025`; near `−L`, where probabilities are negligible, it is `2L/255`).

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryBuilder, Float16Builder, Int32Builder, ListBuilder,
    RecordBatch, StructArray,
};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{DataType, Field, Fields, Float16Type, Int32Type};
use half::f16;
use serde::{Deserialize, Serialize};

/// A log-probability below this is clamped: servers send −9999 or −inf for impossible tokens,
/// and nothing below it carries mass an f32 softmax could see.
pub const MIN_LOGPROB: f32 = -100.0;

/// The teacher's top-k log-probabilities of one sample's generated tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TeacherLogprobs {
    /// Alternatives kept per position (`top_logprobs`).
    pub k: u8,
    /// The generated token of each position, as bytes.
    pub tokens: Vec<Vec<u8>>,
    /// Per position, the scale `L` of its quantised log-probabilities (f16 bits).
    pub scales: Vec<u16>,
    /// Per position, the generated token's quantised log-probability.
    pub logprobs: Vec<u8>,
    /// `k` per position, most likely first; an empty entry pads a position the server gave
    /// fewer than `k` alternatives.
    pub top_tokens: Vec<Vec<u8>>,
    /// The quantised log-probability of each entry of `top_tokens`.
    pub top_logprobs: Vec<u8>,
}

/// One position, dequantised.
#[derive(Debug, Clone, PartialEq)]
pub struct Position<'a> {
    pub token: &'a [u8],
    pub logprob: f32,
    /// The alternatives the server sent, most likely first (padding removed).
    pub top: Vec<(&'a [u8], f32)>,
}

fn clamp(lp: f32) -> f32 {
    if lp.is_nan() {
        MIN_LOGPROB
    } else {
        lp.clamp(MIN_LOGPROB, 0.0)
    }
}

fn quantise(lp: f32, scale: f32) -> u8 {
    if scale <= 0.0 {
        return 0;
    }
    (255.0 * (-clamp(lp) / scale).sqrt())
        .round()
        .clamp(0.0, 255.0) as u8
}

fn dequantise(q: u8, scale: f32) -> f32 {
    let x = f32::from(q) / 255.0;
    -scale * x * x
}

/// The f16 at or above `x` (x ≥ 0), so no value of the position quantises above 255.
fn scale_bits(x: f32) -> u16 {
    let h = f16::from_f32(x);
    if h.to_f32() < x {
        f16::from_bits(h.to_bits() + 1).to_bits()
    } else {
        h.to_bits()
    }
}

impl TeacherLogprobs {
    /// An empty record keeping `k` alternatives per position.
    pub fn new(k: u8) -> Self {
        Self {
            k,
            tokens: Vec::new(),
            scales: Vec::new(),
            logprobs: Vec::new(),
            top_tokens: Vec::new(),
            top_logprobs: Vec::new(),
        }
    }

    /// Appends one generated position: its token, log-probability and alternatives (the first
    /// `k` are kept).
    pub fn push<'a>(
        &mut self,
        token: &[u8],
        logprob: f32,
        top: impl IntoIterator<Item = (&'a [u8], f32)>,
    ) {
        let k = usize::from(self.k);
        let top: Vec<(&[u8], f32)> = top.into_iter().take(k).collect();
        let largest = top
            .iter()
            .map(|(_, lp)| -clamp(*lp))
            .fold(-clamp(logprob), f32::max);
        let bits = scale_bits(largest);
        let scale = f16::from_bits(bits).to_f32();
        self.tokens.push(token.to_vec());
        self.scales.push(bits);
        self.logprobs.push(quantise(logprob, scale));
        for i in 0..k {
            match top.get(i) {
                Some((t, lp)) => {
                    self.top_tokens.push(t.to_vec());
                    self.top_logprobs.push(quantise(*lp, scale));
                }
                None => {
                    self.top_tokens.push(Vec::new());
                    self.top_logprobs.push(u8::MAX);
                }
            }
        }
    }

    /// Generated positions held.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The bytes of the generated text these tokens spell.
    pub fn text_bytes(&self) -> Vec<u8> {
        self.tokens.concat()
    }

    /// Position `i`, dequantised.
    pub fn position(&self, i: usize) -> Position<'_> {
        let scale = f16::from_bits(self.scales[i]).to_f32();
        let k = usize::from(self.k);
        let top = (i * k..(i + 1) * k)
            .filter(|&j| !self.top_tokens[j].is_empty())
            .map(|j| {
                (
                    self.top_tokens[j].as_slice(),
                    dequantise(self.top_logprobs[j], scale),
                )
            })
            .collect();
        Position {
            token: &self.tokens[i],
            logprob: dequantise(self.logprobs[i], scale),
            top,
        }
    }

    /// Whether the parallel arrays have consistent lengths (a record read from a file that
    /// another tool changed may not).
    pub fn check(&self) -> Result<(), String> {
        let n = self.tokens.len();
        let k = usize::from(self.k);
        if self.scales.len() != n || self.logprobs.len() != n {
            return Err(format!(
                "{n} tokens but {} scales and {} log-probabilities",
                self.scales.len(),
                self.logprobs.len()
            ));
        }
        if self.top_tokens.len() != n * k || self.top_logprobs.len() != n * k {
            return Err(format!(
                "{n} positions of k = {k} need {} alternatives, found {} tokens and {} \
                 log-probabilities",
                n * k,
                self.top_tokens.len(),
                self.top_logprobs.len()
            ));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// JSON (`export --format jsonl`)

/// A token in JSON: its text, and its bytes when they are not UTF-8 (a byte-level token that is
/// part of a character), as OpenAI's `logprobs.content[].bytes`.
fn token_json(bytes: &[u8], logprob: f32) -> serde_json::Value {
    let mut object = serde_json::Map::new();
    match std::str::from_utf8(bytes) {
        Ok(text) => {
            object.insert("token".into(), text.into());
        }
        Err(_) => {
            object.insert("token".into(), String::from_utf8_lossy(bytes).into());
            object.insert("bytes".into(), bytes.to_vec().into());
        }
    }
    object.insert("logprob".into(), f64::from(logprob).into());
    serde_json::Value::Object(object)
}

fn token_from_json(value: &serde_json::Value, at: &str) -> Result<(Vec<u8>, f32), String> {
    let object = value
        .as_object()
        .ok_or_else(|| format!("{at} is not an object"))?;
    let bytes = match object.get("bytes") {
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
            .collect::<Option<Vec<u8>>>()
            .ok_or_else(|| format!("{at}.bytes is not a list of bytes (0 to 255)"))?,
        Some(serde_json::Value::Null) | None => object
            .get("token")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| format!("{at}.token is missing or not a string"))?
            .as_bytes()
            .to_vec(),
        Some(_) => return Err(format!("{at}.bytes is not a list")),
    };
    let logprob = object
        .get("logprob")
        .and_then(serde_json::Value::as_f64)
        .ok_or_else(|| format!("{at}.logprob is missing or not a number"))?;
    if logprob > 0.0 {
        return Err(format!("{at}.logprob is {logprob}, above 0"));
    }
    Ok((bytes, logprob as f32))
}

impl TeacherLogprobs {
    /// The JSON form `export --format jsonl` writes, shaped like an OpenAI-compatible server's
    /// `logprobs`: `{"k": K, "content": [{"token", "logprob", "top_logprobs": [{"token",
    /// "logprob"}, …]}, …]}`, one entry per generated token in order, log-probabilities
    /// dequantised, `bytes` (a list of byte values) beside `token` only where the token's bytes
    /// are not UTF-8.
    pub fn to_json(&self) -> serde_json::Value {
        let content: Vec<serde_json::Value> = (0..self.len())
            .map(|i| {
                let position = self.position(i);
                let mut entry = token_json(position.token, position.logprob);
                let top: Vec<serde_json::Value> = position
                    .top
                    .iter()
                    .map(|(token, lp)| token_json(token, *lp))
                    .collect();
                entry
                    .as_object_mut()
                    .expect("an object")
                    .insert("top_logprobs".into(), top.into());
                entry
            })
            .collect();
        serde_json::json!({ "k": self.k, "content": content })
    }

    /// Reads [`Self::to_json`]'s form back (quantising again). The error names the field.
    pub fn from_json(value: &serde_json::Value) -> Result<Self, String> {
        let k = value
            .get("k")
            .and_then(serde_json::Value::as_u64)
            .and_then(|k| u8::try_from(k).ok())
            .filter(|&k| k > 0)
            .ok_or_else(|| {
                format!("`{COLUMN}.k` is missing or not a whole number from 1 to 255")
            })?;
        let content = value
            .get("content")
            .and_then(serde_json::Value::as_array)
            .ok_or_else(|| format!("`{COLUMN}.content` is missing or not a list"))?;
        let mut out = Self::new(k);
        for (i, entry) in content.iter().enumerate() {
            let at = format!("`{COLUMN}.content[{i}]`");
            let (token, logprob) = token_from_json(entry, &at)?;
            let top = match entry.get("top_logprobs") {
                None | Some(serde_json::Value::Null) => Vec::new(),
                Some(serde_json::Value::Array(items)) => items
                    .iter()
                    .enumerate()
                    .map(|(j, t)| token_from_json(t, &format!("{at}.top_logprobs[{j}]")))
                    .collect::<Result<Vec<_>, _>>()?,
                Some(_) => return Err(format!("{at}.top_logprobs is not a list")),
            };
            out.push(
                &token,
                logprob,
                top.iter().map(|(t, lp)| (t.as_slice(), *lp)),
            );
        }
        Ok(out)
    }
}

// The Parquet column

/// Name of the column (nullable: rows without log-probabilities, and files written before the
/// column existed, read as `None`).
pub const COLUMN: &str = "teacher_logprobs";

fn binary_list() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Binary, true)))
}

fn fields() -> Fields {
    Fields::from(vec![
        Field::new("k", DataType::Int32, true),
        Field::new("tokens", binary_list(), true),
        Field::new(
            "scales",
            DataType::List(Arc::new(Field::new("item", DataType::Float16, true))),
            true,
        ),
        Field::new("logprobs", DataType::Binary, true),
        Field::new("top_tokens", binary_list(), true),
        Field::new("top_logprobs", DataType::Binary, true),
    ])
}

/// The column's Arrow field.
pub fn field() -> Field {
    Field::new(COLUMN, DataType::Struct(fields()), true)
}

/// The column for `rows` (null where a row has none).
pub fn to_array<'a>(rows: impl ExactSizeIterator<Item = Option<&'a TeacherLogprobs>>) -> ArrayRef {
    let n = rows.len();
    let mut k = Int32Builder::with_capacity(n);
    let mut tokens = ListBuilder::new(BinaryBuilder::new());
    let mut scales = ListBuilder::new(Float16Builder::new());
    let mut logprobs = BinaryBuilder::new();
    let mut top_tokens = ListBuilder::new(BinaryBuilder::new());
    let mut top_logprobs = BinaryBuilder::new();
    let mut valid = Vec::with_capacity(n);
    for row in rows {
        valid.push(row.is_some());
        match row {
            Some(r) => {
                k.append_value(i32::from(r.k));
                for t in &r.tokens {
                    tokens.values().append_value(t);
                }
                for s in &r.scales {
                    scales.values().append_value(f16::from_bits(*s));
                }
                for t in &r.top_tokens {
                    top_tokens.values().append_value(t);
                }
                logprobs.append_value(&r.logprobs);
                top_logprobs.append_value(&r.top_logprobs);
            }
            None => {
                k.append_null();
                logprobs.append_null();
                top_logprobs.append_null();
            }
        }
        tokens.append(row.is_some());
        scales.append(row.is_some());
        top_tokens.append(row.is_some());
    }
    let children: Vec<ArrayRef> = vec![
        Arc::new(k.finish()),
        Arc::new(tokens.finish()),
        Arc::new(scales.finish()),
        Arc::new(logprobs.finish()),
        Arc::new(top_tokens.finish()),
        Arc::new(top_logprobs.finish()),
    ];
    Arc::new(StructArray::new(
        fields(),
        children,
        Some(NullBuffer::from(valid)),
    ))
}

/// What the column costs in Parquet files: its compressed bytes, and the generated tokens
/// it holds (`None` when no file has the column).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Footprint {
    pub rows: u64,
    pub tokens: u64,
    pub bytes: u64,
    pub k: u8,
}

impl Footprint {
    pub fn bytes_per_token(&self) -> f64 {
        self.bytes as f64 / self.tokens.max(1) as f64
    }
}

/// The column's footprint over `files`: compressed column-chunk sizes from the footers, and
/// the token count from the column itself.
pub fn footprint(files: &[std::path::PathBuf]) -> crate::Result<Option<Footprint>> {
    use parquet::arrow::ProjectionMask;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    let mut total = Footprint::default();
    let mut found = false;
    for path in files {
        let file = std::fs::File::open(path).map_err(crate::StoreError::io("open", path))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(crate::StoreError::parquet(path))?;
        let Ok(index) = builder.schema().index_of(COLUMN) else {
            continue;
        };
        found = true;
        for group in builder.metadata().row_groups() {
            for column in group.columns() {
                if column.column_path().parts().first().map(String::as_str) == Some(COLUMN) {
                    total.bytes += column.compressed_size().max(0) as u64;
                }
            }
        }
        let mask = ProjectionMask::roots(builder.parquet_schema(), [index]);
        let reader = builder
            .with_projection(mask)
            .build()
            .map_err(crate::StoreError::parquet(path))?;
        for batch in reader {
            let batch = batch.map_err(|e| crate::StoreError::Source {
                path: path.clone(),
                message: e.to_string(),
            })?;
            let column = Reader::new(&batch).map_err(crate::StoreError::Schema)?;
            for row in 0..batch.num_rows() {
                if let Some(r) = column.get(row).map_err(crate::StoreError::Schema)? {
                    total.rows += 1;
                    total.tokens += r.len() as u64;
                    total.k = total.k.max(r.k);
                }
            }
        }
    }
    Ok(found.then_some(total))
}

/// One line for `inspect`.
pub fn describe(footprint: Option<Footprint>) -> String {
    match footprint {
        Some(f) if f.rows > 0 => format!(
            "teacher log-probabilities: {} rows, {} generated tokens, k = {}, {:.1} bytes per \
             generated token in the shards\n",
            f.rows,
            f.tokens,
            f.k,
            f.bytes_per_token()
        ),
        _ => "teacher log-probabilities: none (capture them with [teacher] top_logprobs = k)\n"
            .into(),
    }
}

/// Reads the column of a record batch, when it has one.
pub struct Reader {
    array: Option<StructArray>,
}

impl Reader {
    pub fn new(batch: &RecordBatch) -> Result<Self, String> {
        let Some(array) = batch.column_by_name(COLUMN) else {
            return Ok(Self { array: None });
        };
        let array = array
            .as_struct_opt()
            .ok_or_else(|| {
                format!(
                    "column `{COLUMN}` is {}, expected a struct",
                    array.data_type()
                )
            })?
            .clone();
        for field in fields().iter() {
            if array.column_by_name(field.name()).is_none() {
                return Err(format!("column `{COLUMN}` has no field `{}`", field.name()));
            }
        }
        Ok(Self { array: Some(array) })
    }

    /// Row `row`'s log-probabilities (`None` when the row has none).
    pub fn get(&self, row: usize) -> Result<Option<TeacherLogprobs>, String> {
        let Some(array) = &self.array else {
            return Ok(None);
        };
        if array.is_null(row) {
            return Ok(None);
        }
        let child = |name: &str| array.column_by_name(name).expect("checked in new");
        let wrong = |name: &str, a: &ArrayRef| format!("`{COLUMN}.{name}` is {}", a.data_type());
        let k_col = child("k");
        let k = k_col
            .as_primitive_opt::<Int32Type>()
            .ok_or_else(|| wrong("k", k_col))?;
        if k.is_null(row) {
            return Err(format!("`{COLUMN}.k` is null"));
        }
        let k =
            u8::try_from(k.value(row)).map_err(|_| format!("`{COLUMN}.k` is {}", k.value(row)))?;
        let binaries = |name: &str| -> Result<Vec<Vec<u8>>, String> {
            let col = child(name);
            let list = col.as_list_opt::<i32>().ok_or_else(|| wrong(name, col))?;
            let values = list.value(row);
            let values = values
                .as_binary_opt::<i32>()
                .ok_or_else(|| format!("`{COLUMN}.{name}` holds {}", values.data_type()))?;
            Ok(values
                .iter()
                .map(|v| v.unwrap_or_default().to_vec())
                .collect())
        };
        let bytes = |name: &str| -> Result<Vec<u8>, String> {
            let col = child(name);
            let b = col.as_binary_opt::<i32>().ok_or_else(|| wrong(name, col))?;
            Ok(b.value(row).to_vec())
        };
        let scales_col = child("scales");
        let scales_list = scales_col
            .as_list_opt::<i32>()
            .ok_or_else(|| wrong("scales", scales_col))?;
        let scales_values = scales_list.value(row);
        let scales = scales_values
            .as_primitive_opt::<Float16Type>()
            .ok_or_else(|| format!("`{COLUMN}.scales` holds {}", scales_values.data_type()))?
            .values()
            .iter()
            .map(|s| s.to_bits())
            .collect();
        let record = TeacherLogprobs {
            k,
            tokens: binaries("tokens")?,
            scales,
            logprobs: bytes("logprobs")?,
            top_tokens: binaries("top_tokens")?,
            top_logprobs: bytes("top_logprobs")?,
        };
        record.check().map_err(|e| format!("`{COLUMN}`: {e}"))?;
        Ok(Some(record))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantisation_keeps_high_probabilities_precise() {
        let mut r = TeacherLogprobs::new(3);
        let top: [(&[u8], f32); 3] = [(b"a", -0.01), (b"b", -4.6), (b"c", -20.0)];
        r.push(b"a", -0.01, top);
        r.check().unwrap();
        let p = r.position(0);
        assert_eq!(p.token, b"a");
        // Near 0 nats the step is L/65025 = 0.0003.
        assert!((p.logprob - -0.01).abs() < 0.002, "{}", p.logprob);
        assert!((p.top[1].1 - -4.6).abs() < 0.1, "{:?}", p.top);
        assert!((p.top[2].1 - -20.0).abs() < 1e-3, "{:?}", p.top);
        // Probabilities within 1% where they matter.
        assert!((p.top[1].1.exp() / (-4.6f32).exp() - 1.0).abs() < 0.1);
    }

    #[test]
    fn fewer_alternatives_than_k_are_padded_and_dropped_on_read() {
        let mut r = TeacherLogprobs::new(4);
        r.push(b"x", -0.5, [(&b"x"[..], -0.5), (&b"y"[..], -1.5)]);
        r.push(b"\xe4", f32::NEG_INFINITY, std::iter::empty());
        r.check().unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r.top_tokens.len(), 8);
        assert_eq!(r.position(0).top.len(), 2);
        let p = r.position(1);
        assert!(p.top.is_empty());
        assert_eq!(p.logprob, MIN_LOGPROB);
        assert_eq!(r.text_bytes(), b"x\xe4");
    }

    #[test]
    fn the_scale_rounds_up_so_nothing_overflows() {
        let mut r = TeacherLogprobs::new(1);
        // 13.37 is not an f16: rounding it to nearest would give a scale below it.
        r.push(b"t", -13.37, [(&b"t"[..], -13.37)]);
        assert_eq!(r.logprobs[0], 255);
        assert!((r.position(0).logprob - -13.37).abs() < 0.01);
        // All-certain positions quantise to 0 with a zero scale.
        r.push(b"u", 0.0, [(&b"u"[..], 0.0)]);
        assert_eq!(r.position(1).logprob, 0.0);
    }

    #[test]
    fn the_json_form_round_trips_and_names_bad_fields() {
        let mut r = TeacherLogprobs::new(3);
        r.push(b"The", -0.02, [(&b"The"[..], -0.02), (&b"A"[..], -4.1)]);
        // A byte-level token that is half a character.
        r.push(
            b"\xe4",
            -1.5,
            [(&b"\xe4"[..], -1.5), (&b" x"[..], -2.0), (&b"y"[..], -9.0)],
        );
        let json = r.to_json();
        assert_eq!(json["k"], 3);
        assert_eq!(json["content"][0]["token"], "The");
        assert!(json["content"][0].get("bytes").is_none());
        assert_eq!(
            json["content"][0]["top_logprobs"].as_array().unwrap().len(),
            2
        );
        assert_eq!(json["content"][1]["bytes"], serde_json::json!([0xe4]));
        let lp = json["content"][0]["logprob"].as_f64().unwrap();
        assert!((lp - -0.02).abs() < 0.002, "{lp}");
        let back = TeacherLogprobs::from_json(&json).unwrap();
        assert_eq!(back.text_bytes(), r.text_bytes());
        for i in 0..r.len() {
            let (a, b) = (r.position(i), back.position(i));
            assert_eq!(a.token, b.token);
            assert!((a.logprob - b.logprob).abs() < 1e-3);
            assert_eq!(a.top.len(), b.top.len());
            for (x, y) in a.top.iter().zip(&b.top) {
                assert_eq!(x.0, y.0);
                assert!((x.1 - y.1).abs() < 1e-3, "{x:?} {y:?}");
            }
        }
        // Quantising what was dequantised changes nothing.
        assert_eq!(TeacherLogprobs::from_json(&back.to_json()).unwrap(), back);

        let mut bad = json.clone();
        bad["content"][1]["top_logprobs"][2]["logprob"] = "x".into();
        let error = TeacherLogprobs::from_json(&bad).unwrap_err();
        assert!(
            error.contains("`teacher_logprobs.content[1]`.top_logprobs[2].logprob"),
            "{error}"
        );
        let error = TeacherLogprobs::from_json(&serde_json::json!({"content": []})).unwrap_err();
        assert!(error.contains("teacher_logprobs.k"), "{error}");
        let mut positive = json;
        positive["content"][0]["logprob"] = 0.5.into();
        assert!(
            TeacherLogprobs::from_json(&positive)
                .unwrap_err()
                .contains("above 0")
        );
    }
}
