use std::ffi::{c_char, c_void, CStr};
use std::ops::ControlFlow;
use std::panic::resume_unwind;
use std::path::Path;
use std::ptr;
use std::sync::{PoisonError, RwLock};

use shardpoint_sys as sys;

use crate::comm::Comm;
use crate::dtype::{normalize_bools, Dtype, Element, Pod};
use crate::error::{check, Error, ErrorCode, Result};
use crate::layout::{check_destination, check_whole, cstring, ndim_of, path_cstring, ptr_or_null, whole_elements, Strided};
use crate::progress::{Progress, ProgressState};

/// How a checkpoint is read (`shardpoint_load_options`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadOptions {
    /// Check the CRC-32 of every byte read (default true; false sets `SHARDPOINT_LOAD_NO_VERIFY`).
    pub verify: bool,
    /// Skip requests for entries the checkpoint lacks instead of failing
    /// (`SHARDPOINT_LOAD_ALLOW_PARTIAL`).
    pub allow_partial: bool,
    /// Worker threads for reads and checksums; 0: one per core.
    pub io_threads: u32,
}

impl Default for LoadOptions {
    fn default() -> LoadOptions {
        LoadOptions { verify: true, allow_partial: false, io_threads: 0 }
    }
}

impl LoadOptions {
    pub fn new() -> LoadOptions {
        LoadOptions::default()
    }
    pub fn verify(mut self, yes: bool) -> Self {
        self.verify = yes;
        self
    }
    pub fn allow_partial(mut self, yes: bool) -> Self {
        self.allow_partial = yes;
        self
    }
    pub fn io_threads(mut self, n: u32) -> Self {
        self.io_threads = n;
        self
    }
}

/// What the checkpoint says about the save that made it. Strings borrow from the reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageInfo<'r> {
    pub checkpoint_id: &'r str,
    pub save_id: &'r str,
    pub library_version: &'r str,
    pub created_unix_ns: i64,
    pub world_size: i32,
    pub format_major: u32,
    pub format_minor: u32,
    pub alignment: u32,
    pub file_count: u64,
    pub total_stored_bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    Tensor,
    Bytes,
    /// A kind newer than this binding.
    Other(i32),
}

/// One entry of the checkpoint. Borrowed data lives as long as the reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryInfo<'r> {
    /// Position in the reader's entry list (sorted by fqn).
    pub index: u64,
    pub fqn: &'r str,
    pub kind: EntryKind,
    /// The tensor's dtype; None for bytes entries (and dtypes newer than this binding, see
    /// `dtype_raw`).
    pub dtype: Option<Dtype>,
    pub dtype_raw: i32,
    /// Global shape (empty for scalars and bytes entries).
    pub shape: &'r [u64],
    pub chunk_count: u64,
    /// Elements of the global shape (bytes: the length).
    pub numel: u64,
    /// Raw bytes of the whole tensor or blob.
    pub nbytes: u64,
    /// Bytes on disk.
    pub stored_bytes: u64,
    /// Elements covered by saved chunks; less than `numel` when partly saved.
    pub covered_numel: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transform {
    None,
    /// One zlib stream per chunk.
    Deflate,
    /// Format 2: every block compressed alone with zlib.
    ZlibBlocks,
    /// Format 2: every block compressed alone with zstd.
    ZstdBlocks,
    Other(i32),
}

/// Where one saved chunk is and how it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkInfo<'r> {
    pub offsets: &'r [u64],
    pub sizes: &'r [u64],
    /// Data file, relative to the checkpoint directory.
    pub file: &'r str,
    pub file_offset: u64,
    pub stored_length: u64,
    pub raw_length: u64,
    pub crc32: u32,
    pub transform: Transform,
    pub writer_rank: i32,
    /// Block transforms: the element size of the byte shuffle; 0: none.
    pub shuffle_width: u32,
}

/// An open checkpoint: validated metadata plus the directory of its files.
///
/// Queries and reads may run from several threads at once (the reader is `Sync`).
pub struct Reader {
    raw: *mut sys::shardpoint_reader,
    // The C reader has one progress callback, which every verify starting meanwhile uses. A
    // verify with progress installs its closure under the write lock and removes it before
    // unlocking; a plain verify holds the read lock, so it never starts while a closure is
    // installed (it would call that closure from its own thread, concurrently with its owner).
    verify_lock: RwLock<()>,
}

// SAFETY: the header allows a reader's query and read functions to be called concurrently, and
// the handle may be freed from any thread. The one piece of mutable state they share, the
// progress callback, is only set under `verify_lock` (see the field).
unsafe impl Send for Reader {}
unsafe impl Sync for Reader {}

/// A borrowed C string of the reader as &str.
unsafe fn text<'r>(p: *const c_char, what: &str) -> Result<&'r str> {
    if p.is_null() {
        return Ok("");
    }
    CStr::from_ptr(p).to_str().map_err(|_| Error::new(ErrorCode::Format, format!("{what} is not UTF-8")))
}

unsafe fn dims<'r>(p: *const u64, n: u32) -> &'r [u64] {
    if n == 0 || p.is_null() {
        &[]
    } else {
        std::slice::from_raw_parts(p, n as usize)
    }
}

impl Reader {
    /// Opens the checkpoint in `dir` with default options.
    pub fn open(dir: impl AsRef<Path>) -> Result<Reader> {
        Reader::open_with(dir, &LoadOptions::default())
    }

    /// Opens the checkpoint in `dir`; `options` apply to every read through this reader.
    pub fn open_with(dir: impl AsRef<Path>, options: &LoadOptions) -> Result<Reader> {
        Reader::open_on(dir, options, None)
    }

    /// Opens the checkpoint in `dir` collectively over `comm`: rank 0 alone reads the metadata
    /// file and broadcasts it (one read for the whole job); when rank 0 cannot, every rank fails
    /// with its error code. The communicator is borrowed exclusively for the call only.
    pub fn open_shared(dir: impl AsRef<Path>, options: &LoadOptions, comm: &mut Comm) -> Result<Reader> {
        Reader::open_on(dir, options, Some(comm))
    }

    fn open_on(dir: impl AsRef<Path>, options: &LoadOptions, comm: Option<&mut Comm>) -> Result<Reader> {
        let dir = path_cstring(dir.as_ref())?;
        let mut opts = sys::SHARDPOINT_LOAD_OPTIONS_INIT;
        // SAFETY: valid struct pointer.
        check(unsafe { sys::shardpoint_load_options_init(&mut opts, sys::SHARDPOINT_LOAD_OPTIONS_VERSION) })?;
        if !options.verify {
            opts.flags |= sys::SHARDPOINT_LOAD_NO_VERIFY;
        }
        if options.allow_partial {
            opts.flags |= sys::SHARDPOINT_LOAD_ALLOW_PARTIAL;
        }
        opts.io_threads = options.io_threads;
        let mut raw = ptr::null_mut();
        // SAFETY: path and options are copied; the communicator is only used during the call.
        let mut call = |comm_ptr| unsafe { sys::shardpoint_reader_open_shared(&mut raw, dir.as_ptr(), &opts, comm_ptr) };
        match comm {
            Some(comm) => {
                let comm_ptr = comm.as_ptr();
                comm.collective(|| call(comm_ptr))?
            }
            None => check(call(ptr::null_mut()))?,
        }
        Ok(Reader { raw, verify_lock: RwLock::new(()) })
    }

    pub(crate) fn as_ptr(&self) -> *mut sys::shardpoint_reader {
        self.raw
    }

    pub fn storage_info(&self) -> Result<StorageInfo<'_>> {
        let mut s = std::mem::MaybeUninit::<sys::shardpoint_storage_info>::zeroed();
        // SAFETY: valid handle and out-pointer; strings are owned by the reader.
        unsafe {
            check(sys::shardpoint_reader_storage_info(self.raw, s.as_mut_ptr()))?;
            let s = s.assume_init();
            Ok(StorageInfo {
                checkpoint_id: text(s.checkpoint_id, "checkpoint id")?,
                save_id: text(s.save_id, "save id")?,
                library_version: text(s.library_version, "library version")?,
                created_unix_ns: s.created_unix_ns,
                world_size: s.world_size,
                format_major: s.format_major,
                format_minor: s.format_minor,
                alignment: s.alignment,
                file_count: s.file_count,
                total_stored_bytes: s.total_stored_bytes,
            })
        }
    }

    /// Number of entries.
    pub fn entry_count(&self) -> Result<u64> {
        let mut n = 0;
        // SAFETY: valid handle and out-pointer.
        check(unsafe { sys::shardpoint_reader_entry_count(self.raw, &mut n) })?;
        Ok(n)
    }

    /// Entry `index` (entries are sorted by fqn).
    pub fn entry(&self, index: u64) -> Result<EntryInfo<'_>> {
        let mut e = std::mem::MaybeUninit::<sys::shardpoint_entry_info>::zeroed();
        // SAFETY: valid handle and out-pointer; the arrays and strings are owned by the reader.
        unsafe {
            check(sys::shardpoint_reader_entry_info(self.raw, index, e.as_mut_ptr()))?;
            let e = e.assume_init();
            let kind = match e.kind {
                sys::SHARDPOINT_ENTRY_TENSOR => EntryKind::Tensor,
                sys::SHARDPOINT_ENTRY_BYTES => EntryKind::Bytes,
                other => EntryKind::Other(other),
            };
            Ok(EntryInfo {
                index,
                fqn: text(e.fqn, "entry name")?,
                kind,
                dtype: if kind == EntryKind::Tensor { Dtype::from_raw(e.dtype) } else { None },
                dtype_raw: e.dtype,
                shape: dims(e.shape, e.ndim),
                chunk_count: e.chunk_count,
                numel: e.numel,
                nbytes: e.nbytes,
                stored_bytes: e.stored_bytes,
                covered_numel: e.covered_numel,
            })
        }
    }

    /// Every entry, sorted by fqn.
    pub fn entries(&self) -> Result<Vec<EntryInfo<'_>>> {
        (0..self.entry_count()?).map(|i| self.entry(i)).collect()
    }

    /// The index of entry `fqn` (`ENOTFOUND` if there is none).
    pub fn find(&self, fqn: &str) -> Result<u64> {
        let c = cstring("name", fqn)?;
        let mut index = 0;
        // SAFETY: valid handle, string and out-pointer.
        check(unsafe { sys::shardpoint_reader_find(self.raw, c.as_ptr(), &mut index) })?;
        Ok(index)
    }

    /// The entry named `fqn` (`ENOTFOUND` if there is none).
    pub fn entry_by_name(&self, fqn: &str) -> Result<EntryInfo<'_>> {
        self.entry(self.find(fqn)?)
    }

    /// Chunk `chunk` of entry `index`.
    pub fn chunk(&self, index: u64, chunk: u64) -> Result<ChunkInfo<'_>> {
        let ndim = self.entry(index)?.shape.len() as u32;
        let mut c = std::mem::MaybeUninit::<sys::shardpoint_chunk_info>::zeroed();
        // SAFETY: valid handle and out-pointer; offsets/sizes hold the entry's ndim values.
        unsafe {
            check(sys::shardpoint_reader_chunk_info(self.raw, index, chunk, c.as_mut_ptr()))?;
            let c = c.assume_init();
            Ok(ChunkInfo {
                offsets: dims(c.offsets, ndim),
                sizes: dims(c.sizes, ndim),
                file: text(c.file, "file name")?,
                file_offset: c.file_offset,
                stored_length: c.stored_length,
                raw_length: c.raw_length,
                crc32: c.crc32,
                transform: match c.transform {
                    sys::SHARDPOINT_TRANSFORM_NONE => Transform::None,
                    sys::SHARDPOINT_TRANSFORM_DEFLATE => Transform::Deflate,
                    sys::SHARDPOINT_TRANSFORM_ZLIB_BLOCKS => Transform::ZlibBlocks,
                    sys::SHARDPOINT_TRANSFORM_ZSTD_BLOCKS => Transform::ZstdBlocks,
                    other => Transform::Other(other),
                },
                writer_rank: c.writer_rank,
                shuffle_width: c.shuffle_width,
            })
        }
    }

    /// Every chunk of entry `index`.
    pub fn chunks(&self, index: u64) -> Result<Vec<ChunkInfo<'_>>> {
        (0..self.entry(index)?.chunk_count).map(|c| self.chunk(index, c)).collect()
    }

    /// The user key/value pairs.
    pub fn metadata(&self) -> Result<Vec<(&str, &str)>> {
        let mut n = 0;
        // SAFETY: valid handle and out-pointers; strings are owned by the reader.
        unsafe {
            check(sys::shardpoint_reader_metadata_count(self.raw, &mut n))?;
            (0..n)
                .map(|i| {
                    let (mut k, mut v) = (ptr::null(), ptr::null());
                    check(sys::shardpoint_reader_metadata_at(self.raw, i, &mut k, &mut v))?;
                    Ok((text(k, "metadata key")?, text(v, "metadata value")?))
                })
                .collect()
        }
    }

    /// The value of user metadata `key` (`ENOTFOUND` if absent).
    pub fn metadata_get(&self, key: &str) -> Result<&str> {
        let c = cstring("metadata key", key)?;
        let mut v = ptr::null();
        // SAFETY: valid handle, string and out-pointer.
        unsafe {
            check(sys::shardpoint_reader_metadata_get(self.raw, c.as_ptr(), &mut v))?;
            text(v, "metadata value")
        }
    }

    /// Reads every stored extent and checks its CRC-32 (whatever the verify option says).
    /// Verifies run concurrently, except while one of [`Reader::verify_with_progress`] runs.
    pub fn verify(&self) -> Result<()> {
        // No progress closure is installed while this lock is held (see `verify_lock`).
        let _shared = self.verify_lock.read().unwrap_or_else(PoisonError::into_inner);
        // SAFETY: valid handle; a read function, safe to run concurrently with others.
        check(unsafe { sys::shardpoint_reader_verify(self.raw) })
    }

    /// [`Reader::verify`], reporting to `f` on this thread: once at the start (`done` 0), at most
    /// every 50 ms, and at the end (`done == total`, the stored bytes checked). `f` returns
    /// `ControlFlow::Continue(())` to go on or `ControlFlow::Break(())` to stop: the verify then
    /// fails with `ErrorCode::Canceled`. The C reader has one progress callback, so verifies with
    /// progress run one at a time, and plain verifies wait for them (queries and reads do not);
    /// `f` itself must not verify this reader (that would wait for itself).
    ///
    /// # Panics
    /// When `f` panicked: the verify is canceled, then the panic resumes here.
    pub fn verify_with_progress(&self, f: impl FnMut(Progress) -> ControlFlow<()>) -> Result<()> {
        let mut state = ProgressState::new(f);
        let callback = state.callback();
        let user = ptr::addr_of_mut!(state).cast::<c_void>();
        let result = {
            // No other verify runs while the closure is installed (see `verify_lock`).
            let _exclusive = self.verify_lock.write().unwrap_or_else(PoisonError::into_inner);
            // SAFETY: `state` outlives the installation, which ends below before this block does;
            // only the verify of this thread runs meanwhile, so only it calls the closure.
            check(unsafe { sys::shardpoint_reader_set_progress(self.raw, Some(callback), user) })?;
            // SAFETY: valid handle; a read function.
            let result = check(unsafe { sys::shardpoint_reader_verify(self.raw) });
            // SAFETY: valid handle; removes the pointer to `state` before it goes away.
            let rc = unsafe { sys::shardpoint_reader_set_progress(self.raw, None, ptr::null_mut()) };
            if rc != sys::SHARDPOINT_OK {
                // Cannot happen (the call fails only for a NULL reader). Were the reader to keep
                // a pointer to `state`, a later verify would call a closure that is gone.
                std::process::abort();
            }
            result
        };
        if let Some(panic) = state.take_panic() {
            resume_unwind(panic);
        }
        result
    }

    /// Reads the box (`box_offsets`, `box_sizes`) of tensor `fqn` into `dst` in C order. `dst`
    /// must hold exactly the box's elements (`Shape` otherwise) and `T` must be the stored dtype
    /// (`Dtype`; nothing is converted). To read a whole tensor without restating its offsets,
    /// see [`Reader::read_whole`].
    pub fn read_tensor<T: Element>(
        &self,
        fqn: &str,
        box_offsets: &[u64],
        box_sizes: &[u64],
        dst: &mut [T],
    ) -> Result<()> {
        ndim_of(&[box_offsets, box_sizes])?;
        let (first, strides) = check_destination(fqn, dst.len(), box_sizes, None)?;
        // SAFETY: the view lies inside `dst`, exclusively borrowed for the call.
        unsafe { self.read_into(fqn, T::DTYPE, box_offsets, box_sizes, dst, first * std::mem::size_of::<T>(), strides) }
    }

    /// Reads a box into `dst` laid out with explicit element strides (every element the box
    /// places must lie inside `dst`, else `Range`).
    pub fn read_tensor_strided<T: Element>(
        &self,
        fqn: &str,
        box_offsets: &[u64],
        box_sizes: &[u64],
        dst: &mut [T],
        layout: Strided<'_>,
    ) -> Result<()> {
        ndim_of(&[box_offsets, box_sizes])?;
        let (first, strides) = check_destination(fqn, dst.len(), box_sizes, Some(&layout))?;
        // SAFETY: as above.
        unsafe { self.read_into(fqn, T::DTYPE, box_offsets, box_sizes, dst, first * std::mem::size_of::<T>(), strides) }
    }

    /// Reads a box of any dtype as raw little-endian bytes; `layout` counts in elements of
    /// `dtype` (None: C order).
    pub fn read_tensor_raw(
        &self,
        fqn: &str,
        dtype: Dtype,
        box_offsets: &[u64],
        box_sizes: &[u64],
        dst: &mut [u8],
        layout: Option<Strided<'_>>,
    ) -> Result<()> {
        ndim_of(&[box_offsets, box_sizes])?;
        let esize = dtype.size().max(1);
        let (first, strides) = check_destination(fqn, whole_elements(fqn, dst.len(), esize)?, box_sizes, layout.as_ref())?;
        // SAFETY: the view lies inside the whole elements of `dst`; u8 has no invalid values.
        unsafe { self.read_into(fqn, dtype, box_offsets, box_sizes, dst, first * esize, strides) }
    }

    /// # Safety
    /// The box at byte `first_byte` of `dst` laid out by `strides` must lie inside `dst`.
    #[allow(clippy::too_many_arguments)]
    unsafe fn read_into<T: Element>(
        &self,
        fqn: &str,
        dtype: Dtype,
        box_offsets: &[u64],
        box_sizes: &[u64],
        dst: &mut [T],
        first_byte: usize,
        strides: *const i64,
    ) -> Result<()> {
        let ndim = ndim_of(&[box_offsets, box_sizes])?;
        let c = cstring("name", fqn)?;
        let rc = sys::shardpoint_reader_read_tensor(
            self.raw,
            c.as_ptr(),
            dtype.raw(),
            ndim,
            ptr_or_null(box_offsets),
            ptr_or_null(box_sizes),
            dst.as_mut_ptr().cast::<u8>().add(first_byte).cast(),
            strides,
        );
        let result = check(rc);
        if T::DTYPE == Dtype::Bool {
            // Also after a failure: the destination may hold partial data.
            normalize_bools(dst.as_mut_ptr().cast(), dst.len());
        }
        result
    }

    /// Reads the whole tensor `fqn`, whose shape the caller states as `shape`, into `dst` in C
    /// order. A tensor of another shape is a `Shape` error naming both shapes ("destination has
    /// shape [6, 7] but 'w' is [6, 8]"), never a partial read.
    pub fn read_whole<T: Element>(&self, fqn: &str, shape: &[u64], dst: &mut [T]) -> Result<()> {
        let zeros = self.whole_box(fqn, shape)?;
        self.read_tensor(fqn, &zeros, shape, dst)
    }

    /// The offsets of a whole-tensor request, after checking `shape` against the stored one. A
    /// missing or bytes entry is left to the library (`NotFound`, a skip under `allow_partial`,
    /// `Kind`).
    pub(crate) fn whole_box(&self, fqn: &str, shape: &[u64]) -> Result<Vec<u64>> {
        match self.entry_by_name(fqn) {
            Ok(e) if e.kind == EntryKind::Tensor => check_whole(fqn, shape, e.shape)?,
            Ok(_) => {}
            Err(err) if err.kind() == ErrorCode::NotFound => {}
            Err(err) => return Err(err),
        }
        Ok(vec![0u64; shape.len()])
    }

    /// Reads the whole tensor `fqn` into a new C-order vector; returns it with the shape.
    pub fn read_tensor_vec<T: Element>(&self, fqn: &str) -> Result<(Vec<T>, Vec<u64>)> {
        let e = self.entry_by_name(fqn)?;
        let shape = e.shape.to_vec();
        let n = usize::try_from(e.numel).map_err(|_| Error::new(ErrorCode::NoMem, "tensor too large"))?;
        let mut v = vec![T::default(); n];
        let zeros = vec![0u64; shape.len()];
        self.read_tensor(fqn, &zeros, &shape, &mut v)?;
        Ok((v, shape))
    }

    /// Reads blob `fqn` into `dst` (at least its length); returns the length.
    pub fn read_bytes(&self, fqn: &str, dst: &mut [u8]) -> Result<usize> {
        let c = cstring("name", fqn)?;
        let mut len = 0u64;
        // SAFETY: `dst` is writable for its capacity.
        check(unsafe {
            sys::shardpoint_reader_read_bytes(self.raw, c.as_ptr(), dst.as_mut_ptr().cast(), dst.len() as u64, &mut len)
        })?;
        Ok(len as usize)
    }

    /// Reads blob `fqn` into a new vector.
    pub fn read_bytes_vec(&self, fqn: &str) -> Result<Vec<u8>> {
        let e = self.entry_by_name(fqn)?;
        let n = usize::try_from(e.nbytes).map_err(|_| Error::new(ErrorCode::NoMem, "blob too large"))?;
        let mut v = vec![0u8; n];
        let len = self.read_bytes(fqn, &mut v)?;
        v.truncate(len);
        Ok(v)
    }

    /// Reads a whole tensor of a dtype without a native Rust type into a vector of a plain type of
    /// the same size, e.g. bf16 into `Vec<u16>`, complex64 into `Vec<u64>`, f8 into `Vec<u8>`.
    pub fn read_tensor_raw_vec<T: Pod>(&self, fqn: &str, dtype: Dtype) -> Result<(Vec<T>, Vec<u64>)> {
        if std::mem::size_of::<T>() != dtype.size() {
            return Err(Error::new(
                ErrorCode::Dtype,
                format!("{dtype} has {} bytes per element, the vector {}", dtype.size(), std::mem::size_of::<T>()),
            ));
        }
        let e = self.entry_by_name(fqn)?;
        let shape = e.shape.to_vec();
        let n = usize::try_from(e.numel).map_err(|_| Error::new(ErrorCode::NoMem, "tensor too large"))?;
        let mut v = vec![T::default(); n];
        let zeros = vec![0u64; shape.len()];
        self.read_tensor_raw(fqn, dtype, &zeros, &shape, crate::dtype::as_bytes_mut(&mut v), None)?;
        Ok((v, shape))
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        // SAFETY: owned handle; every Load borrowing it is gone.
        unsafe { sys::shardpoint_reader_free(self.raw) };
    }
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader").field("entries", &self.entry_count().ok()).finish()
    }
}
