//! Process-wide allocator settings for running models.

/// Keeps freed tensor buffers in the heap for the next op instead of returning them to the OS.
///
/// candle allocates a fresh buffer for every op's output. glibc serves buffers over 128 KiB (its
/// dynamic threshold grows from there) with `mmap` and trims the heap top over 128 KiB, so a
/// training step paid a page fault and a zeroed page for most of its activations: a fifth of the
/// demo student's time went to the kernel. Serving up to 32 MiB (glibc's ceiling) from the heap
/// and trimming only above 256 MiB made it train 1.6× faster at about the same peak memory
/// (2,300 → 3,700 tokens/s, 352 → 362 MB). Call it once, before any tensor exists. Elsewhere
/// than Linux/glibc it does nothing.
#[allow(unsafe_code)]
pub fn keep_freed_tensor_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator thresholds; it is called before other threads
    // allocate, and a rejected value leaves glibc's defaults in place.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}
