//! Matrix products on f32 slices with the gemm crate (candle's own matmul kernels), for the
//! fused ops that multiply parts of their buffers without making tensors of them.

#![allow(unsafe_code)]

/// A row-major operand of a product: its data and the strides (in elements) of its rows and
/// columns, so that a transposed matrix is the same data with the strides swapped.
#[derive(Clone, Copy)]
pub(super) struct Operand<'a> {
    data: &'a [f32],
    row_stride: usize,
    col_stride: usize,
}

impl<'a> Operand<'a> {
    /// The matrix whose rows are `cols` apart in `data`.
    pub(super) fn rows(data: &'a [f32], cols: usize) -> Self {
        Operand::strided(data, cols)
    }

    /// Rows `row_stride` apart, of consecutive elements.
    pub(super) fn strided(data: &'a [f32], row_stride: usize) -> Self {
        Operand {
            data,
            row_stride,
            col_stride: 1,
        }
    }

    /// The transpose of the matrix whose rows are `cols` apart in `data`.
    pub(super) fn transposed(data: &'a [f32], cols: usize) -> Self {
        Operand {
            data,
            row_stride: 1,
            col_stride: cols,
        }
    }

    /// Whether an `r × c` matrix with these strides lies inside the data.
    fn holds(&self, r: usize, c: usize) -> bool {
        r == 0 || c == 0 || (r - 1) * self.row_stride + (c - 1) * self.col_stride < self.data.len()
    }
}

/// Who computes a product.
#[derive(Clone, Copy)]
pub(super) enum Threads {
    /// Rayon's pool, as candle's matmul does.
    Pool,
    /// The calling thread: the caller already runs one product per task.
    Caller,
}

impl Threads {
    fn parallelism(self) -> gemm::Parallelism {
        match (self, rayon::current_num_threads()) {
            (Threads::Pool, n) if n > 1 => gemm::Parallelism::Rayon(n),
            _ => gemm::Parallelism::None,
        }
    }
}

/// `dst = lhs · rhs`, or `dst += lhs · rhs` with `accumulate`: `dst` is `m × n` with rows
/// `row_stride` apart, `lhs` is `m × k` and `rhs` `k × n`.
pub(super) fn gemm(
    (dst, row_stride): (&mut [f32], usize),
    dims: (usize, usize, usize),
    lhs: Operand,
    rhs: Operand,
    accumulate: bool,
    threads: Threads,
) {
    let (m, n, _) = dims;
    assert!(
        m == 0 || n == 0 || (m - 1) * row_stride + n <= dst.len(),
        "gemm destination too short"
    );
    // SAFETY: `dst` is an initialised slice that holds the `m × n` matrix (checked above).
    unsafe {
        gemm_raw(
            (dst.as_mut_ptr(), row_stride),
            dims,
            lhs,
            rhs,
            accumulate,
            threads,
        )
    }
}

/// [`gemm`] into a raw destination, which may be uninitialised memory when not `accumulate`.
///
/// # Safety
///
/// `dst` must be valid for writes of the `m × n` matrix with rows `row_stride` apart, and for
/// reads of it when `accumulate`.
pub(super) unsafe fn gemm_raw(
    (dst, row_stride): (*mut f32, usize),
    (m, n, k): (usize, usize, usize),
    lhs: Operand,
    rhs: Operand,
    accumulate: bool,
    threads: Threads,
) {
    assert!(
        lhs.holds(m, k) && rhs.holds(k, n),
        "gemm operands too short"
    );
    // SAFETY: both operands were checked to cover their matrices, and the caller vouches for
    // `dst`; gemm does not read `dst` when `read_dst` is false (its `alpha` is then zero).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            row_stride as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.data.as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            threads.parallelism(),
        )
    }
}

/// A vector of `len` elements that `fill` writes, without zero-filling it first.
///
/// # Safety
///
/// `fill` must write all `len` elements behind the pointer it is given.
pub(super) unsafe fn filled(len: usize, fill: impl FnOnce(*mut f32)) -> Vec<f32> {
    let mut out = Vec::<f32>::with_capacity(len);
    fill(out.as_mut_ptr());
    // SAFETY: the capacity is `len`, and the caller's `fill` wrote every element.
    unsafe { out.set_len(len) };
    out
}
