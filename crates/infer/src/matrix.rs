//! A weight matrix `[out, in]` in one of the formats the engine multiplies in, and the
//! multiplication of a few activation rows by it, split across rayon's threads by output
//! columns.

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use distillery_model::Param;
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::quant::{
    self, BLOCK, DotFn, Q4_1_BYTES, Q8_0_BYTES, QRow, QRows, dequantize_q4_1, dequantize_q8_0,
};

#[derive(Debug, Clone)]
enum Data {
    F32(Vec<f32>),
    /// GGUF `Q4_1` blocks, row after row, each row repacked ([`quant::repack_q4_1`]).
    Q4_1(Vec<u8>),
    /// GGUF `Q8_0` blocks, row after row, each row repacked ([`quant::repack_q8_0`]).
    Q8_0(Vec<u8>),
}

/// A `[rows, cols]` weight: `y = x · Wᵀ` maps `cols` inputs to `rows` outputs.
#[derive(Debug, Clone)]
pub(crate) struct Matrix {
    rows: usize,
    cols: usize,
    data: Data,
}

/// Output columns per task: a few tasks per thread, so that they balance, and no fewer than
/// 16 columns, so that each pays for itself.
fn columns_per_task(columns: usize) -> usize {
    let tasks = 4 * rayon::current_num_threads();
    columns.div_ceil(tasks).max(16)
}

impl Matrix {
    /// The matrix a checkpoint weight becomes: `Q4_1` and `Q8_0` blocks are kept as they
    /// are; other block formats are requantized to `Q8_0` (8 bits, so no worse than theirs);
    /// dense tensors become f32.
    pub(crate) fn from_param(name: &str, param: &Param) -> Result<Matrix> {
        let shape_error = |dims: &[usize]| Error::Weight {
            name: name.to_string(),
            message: format!("expected a matrix, found shape {dims:?}"),
        };
        match param {
            Param::Dense(t) => {
                let (rows, cols) = t.dims2().map_err(|_| shape_error(t.dims()))?;
                Ok(Matrix {
                    rows,
                    cols,
                    data: Data::F32(dense_f32(name, t)?),
                })
            }
            Param::Quantized(q) => Self::from_blocks(name, q),
        }
    }

    fn from_blocks(name: &str, q: &QTensor) -> Result<Matrix> {
        let dims = q.shape().dims();
        let &[rows, cols] = dims else {
            return Err(Error::Weight {
                name: name.to_string(),
                message: format!("expected a matrix, found shape {dims:?}"),
            });
        };
        let candle = |e: candle_core::Error| Error::Weight {
            name: name.to_string(),
            message: e.to_string(),
        };
        let repacked = |repack: fn(&[u8]) -> Vec<u8>| -> Result<Vec<u8>> {
            let bytes = q.data().map_err(candle)?;
            Ok(bytes
                .chunks_exact(bytes.len() / rows)
                .flat_map(repack)
                .collect())
        };
        let data = match q.dtype() {
            GgmlDType::Q4_1 if cols % BLOCK == 0 => Data::Q4_1(repacked(quant::repack_q4_1)?),
            GgmlDType::Q8_0 if cols % BLOCK == 0 => Data::Q8_0(repacked(quant::repack_q8_0)?),
            other => {
                let dense = q.dequantize(&Device::Cpu).map_err(candle)?;
                let dense = dense_f32(name, &dense)?;
                let float = matches!(other, GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16);
                if float || cols % BLOCK != 0 {
                    Data::F32(dense)
                } else {
                    Data::Q8_0(
                        dense
                            .chunks_exact(cols)
                            .flat_map(quant::quantize_q8_0)
                            .collect(),
                    )
                }
            }
        };
        Ok(Matrix { rows, cols, data })
    }

    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    pub(crate) fn cols(&self) -> usize {
        self.cols
    }

    /// Matrices with the same inputs stacked into one (`[a; b; ...]`), so that one pass over
    /// the activations feeds them all (q/k/v, gate/up). Formats that differ meet in f32.
    pub(crate) fn stack(parts: Vec<Matrix>) -> Matrix {
        let cols = parts[0].cols;
        debug_assert!(parts.iter().all(|p| p.cols == cols));
        let rows = parts.iter().map(|p| p.rows).sum();
        let same = |f: fn(&Data) -> bool| parts.iter().all(|p| f(&p.data));
        let data = if same(|d| matches!(d, Data::Q4_1(_))) || same(|d| matches!(d, Data::Q8_0(_))) {
            let mut bytes = Vec::new();
            for p in &parts {
                match &p.data {
                    Data::Q4_1(b) | Data::Q8_0(b) => bytes.extend_from_slice(b),
                    Data::F32(_) => unreachable!("checked above"),
                }
            }
            match parts[0].data {
                Data::Q4_1(_) => Data::Q4_1(bytes),
                _ => Data::Q8_0(bytes),
            }
        } else {
            Data::F32(parts.iter().flat_map(|p| p.to_f32()).collect())
        };
        Matrix { rows, cols, data }
    }

    /// Every weight as f32, row after row.
    fn to_f32(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.rows * self.cols];
        for (r, row) in out.chunks_exact_mut(self.cols).enumerate() {
            self.row_into(r, row);
        }
        out
    }

    /// Row `r` as f32 (an embedding lookup).
    pub(crate) fn row_into(&self, r: usize, out: &mut [f32]) {
        match &self.data {
            Data::F32(w) => out.copy_from_slice(&w[r * self.cols..(r + 1) * self.cols]),
            Data::Q4_1(w) => {
                let n = self.cols / BLOCK * Q4_1_BYTES;
                dequantize_q4_1(&w[r * n..(r + 1) * n], out)
            }
            Data::Q8_0(w) => {
                let n = self.cols / BLOCK * Q8_0_BYTES;
                dequantize_q8_0(&w[r * n..(r + 1) * n], out)
            }
        }
    }

    /// `x · Wᵀ` for `x` of `m` rows of `cols` values: `m` rows of `rows` values.
    pub(crate) fn matmul(&self, x: &[f32], m: usize) -> Vec<f32> {
        debug_assert_eq!(x.len(), m * self.cols);
        let n = self.rows;
        // Each task computes a run of output columns for every input row, so a weight row
        // is read from memory once per call however many rows there are; the result comes
        // out column-major and is transposed at the end.
        let mut out_t = vec![0f32; n * m];
        match &self.data {
            Data::F32(w) => {
                let (k, dot) = (self.cols, quant::f32_kernel());
                self.by_columns(&mut out_t, m, |c, out| {
                    let row = &w[c * k..(c + 1) * k];
                    for (r, o) in out.iter_mut().enumerate() {
                        *o = dot(row, &x[r * k..(r + 1) * k]);
                    }
                });
            }
            Data::Q4_1(w) => {
                self.blocks_matmul(w, Q4_1_BYTES, quant::q4_1_kernel(), x, m, &mut out_t)
            }
            Data::Q8_0(w) => {
                self.blocks_matmul(w, Q8_0_BYTES, quant::q8_0_kernel(), x, m, &mut out_t)
            }
        }
        if m == 1 {
            return out_t;
        }
        let mut out = vec![0f32; m * n];
        for (c, col) in out_t.chunks_exact(m).enumerate() {
            for (r, &v) in col.iter().enumerate() {
                out[r * n + c] = v;
            }
        }
        out
    }

    fn blocks_matmul(
        &self,
        w: &[u8],
        block_bytes: usize,
        dot: DotFn,
        x: &[f32],
        m: usize,
        out_t: &mut [f32],
    ) {
        let acts = QRows::quantize(x, self.cols);
        let rows: Vec<QRow<'_>> = (0..m).map(|r| acts.row(r)).collect();
        let row_bytes = self.cols / BLOCK * block_bytes;
        self.by_columns(out_t, m, |c, out| {
            dot(&w[c * row_bytes..(c + 1) * row_bytes], &rows, out)
        });
    }

    /// Runs `column(c, out)` for every output column `c`, its `m` results in `out`, a run of
    /// columns per task.
    fn by_columns(&self, out_t: &mut [f32], m: usize, column: impl Fn(usize, &mut [f32]) + Sync) {
        let per_task = columns_per_task(self.rows);
        out_t
            .par_chunks_mut(per_task * m)
            .enumerate()
            .for_each(|(task, out)| {
                for (c, out) in out.chunks_exact_mut(m).enumerate() {
                    column(task * per_task + c, out);
                }
            });
    }
}

/// A dense tensor's values as f32, row-major.
pub(crate) fn dense_f32(name: &str, t: &Tensor) -> Result<Vec<f32>> {
    t.to_dtype(DType::F32)
        .and_then(|t| t.to_device(&Device::Cpu))
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1::<f32>())
        .map_err(|e| Error::Weight {
            name: name.to_string(),
            message: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::QTensor;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    fn random(rng: &mut StdRng, n: usize) -> Vec<f32> {
        (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
    }

    fn reference(w: &[f32], x: &[f32], m: usize, rows: usize, cols: usize) -> Vec<f32> {
        let mut out = vec![0f32; m * rows];
        for r in 0..m {
            for c in 0..rows {
                out[r * rows + c] = (0..cols).map(|i| x[r * cols + i] * w[c * cols + i]).sum();
            }
        }
        out
    }

    fn quantized(dense: &[f32], rows: usize, cols: usize, dtype: GgmlDType) -> Matrix {
        let t = Tensor::from_vec(dense.to_vec(), (rows, cols), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&t, dtype).unwrap();
        Matrix::from_param("w", &Param::Quantized(std::sync::Arc::new(q))).unwrap()
    }

    #[test]
    fn every_format_multiplies_like_its_dequantized_weights() {
        let mut rng = StdRng::seed_from_u64(7);
        // 70 output rows: two full tasks and a partial one.
        let (rows, cols) = (70, 96);
        let dense = random(&mut rng, rows * cols);
        for dtype in [
            GgmlDType::Q4_1,
            GgmlDType::Q8_0,
            GgmlDType::Q4K,
            GgmlDType::F16,
        ] {
            let cols = if dtype == GgmlDType::Q4K { 256 } else { cols };
            let dense = random(&mut rng, rows * cols);
            let matrix = quantized(&dense, rows, cols, dtype);
            let weights = matrix.to_f32();
            for m in [1, 3] {
                let x = random(&mut rng, m * cols);
                let got = matrix.matmul(&x, m);
                let want = reference(&weights, &x, m, rows, cols);
                for (g, w) in got.iter().zip(&want) {
                    // Activations are quantized to 8 bits: about 1/254 of each row's scale.
                    assert!(
                        (g - w).abs() < 0.02 * (cols as f32).sqrt(),
                        "{dtype:?}: {g} vs {w}"
                    );
                }
            }
        }
        let f32_matrix = Matrix::from_param(
            "w",
            &Param::Dense(Tensor::from_vec(dense.clone(), (rows, cols), &Device::Cpu).unwrap()),
        )
        .unwrap();
        let x = random(&mut rng, 2 * cols);
        let got = f32_matrix.matmul(&x, 2);
        for (g, w) in got.iter().zip(reference(&dense, &x, 2, rows, cols)) {
            assert!((g - w).abs() < 1e-4, "{g} vs {w}");
        }
    }

    #[test]
    fn stacked_matrices_are_their_parts_one_after_another() {
        let mut rng = StdRng::seed_from_u64(8);
        let a = quantized(&random(&mut rng, 4 * 64), 4, 64, GgmlDType::Q4_1);
        let b = quantized(&random(&mut rng, 2 * 64), 2, 64, GgmlDType::Q4_1);
        let c = quantized(&random(&mut rng, 2 * 64), 2, 64, GgmlDType::Q8_0);
        let x = random(&mut rng, 64);
        let (ya, yb, yc) = (a.matmul(&x, 1), b.matmul(&x, 1), c.matmul(&x, 1));
        let same = Matrix::stack(vec![a.clone(), b.clone()]);
        assert!(matches!(same.data, Data::Q4_1(_)));
        assert_eq!(same.matmul(&x, 1), [ya.clone(), yb.clone()].concat());
        let mixed = Matrix::stack(vec![a, c]);
        assert!(matches!(mixed.data, Data::F32(_)));
        assert_eq!(mixed.rows(), 6);
        for (g, w) in mixed.matmul(&x, 1).iter().zip([ya, yc].concat()) {
            assert!((g - w).abs() < 0.05, "{g} vs {w}");
        }
    }

    #[test]
    fn a_weight_that_is_not_a_matrix_is_an_error_naming_it() {
        let t = Tensor::zeros(8, DType::F32, &Device::Cpu).unwrap();
        let err = Matrix::from_param("model.norm.weight", &Param::Dense(t)).unwrap_err();
        assert!(err.to_string().contains("model.norm.weight"), "{err}");
    }
}
