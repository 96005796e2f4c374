use std::ffi::{c_void, CString};
use std::marker::PhantomData;
use std::ops::ControlFlow;
use std::panic::resume_unwind;
use std::path::Path;
use std::ptr;

use shardpoint_sys as sys;

use crate::comm::Comm;
use crate::dtype::{Dtype, Element};
use crate::error::{check, Result};
use crate::layout::{check_view, cstring, ndim_of, path_cstring, ptr_or_null, Strided};
use crate::progress::{Progress, ProgressSlot};

/// How a checkpoint is written (`shardpoint_save_options`).
///
/// Saves are durable by default: data files, metadata and the directory are fsynced before
/// `commit` returns. [`SaveOptions::no_fsync`] opts out; [`SaveOptions::allow_partial`] accepts
/// tensors that the ranks together leave partly uncovered (otherwise `commit` fails with
/// `Uncovered` and writes nothing).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SaveOptions {
    /// Replace a checkpoint already at the path (`SHARDPOINT_SAVE_OVERWRITE`).
    pub overwrite: bool,
    /// Deprecated and without effect: saves are durable by default (`false` does not opt out;
    /// that is `no_fsync`).
    pub fsync: bool,
    /// Skip every fsync (`SHARDPOINT_SAVE_NO_FSYNC`). Faster, and safe against a crash of the
    /// process, but NOT against a power loss or a kernel crash: after one, the new checkpoint
    /// (and with `overwrite` the previous one too) may be lost or unreadable.
    pub no_fsync: bool,
    /// Accept tensors whose chunks from all ranks leave part of the global shape uncovered
    /// (`SHARDPOINT_SAVE_ALLOW_PARTIAL`).
    pub allow_partial: bool,
    /// With `Codec::Default`: 0 stores raw, 1..=9 deflates at that level. With another codec: its
    /// level (zlib 1..=9, zstd 1..=19), 0 for its fast default.
    pub compression_level: i32,
    /// How chunks are compressed (`SHARDPOINT_CODEC_*`).
    pub codec: Codec,
    /// Byte-shuffle each block before compressing it (block codecs only): floats compress better.
    pub shuffle: bool,
    /// Worker threads for I/O and checksums; 0: one per core.
    pub io_threads: u32,
    /// Extent alignment in bytes, a power of two; 0: the library default (4096).
    pub alignment: u64,
    /// Recorded in the metadata; None: the directory's name.
    pub checkpoint_id: Option<String>,
}

/// How a save compresses its chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Codec {
    /// As `compression_level` says: 0 raw, 1..=9 one zlib stream per chunk.
    #[default]
    Default,
    /// One zlib stream per chunk, read whole; readable by every format 1 reader.
    DeflateStream,
    /// Every block compressed alone with zlib (format 2): all cores, partial reads restore only
    /// their blocks.
    Zlib,
    /// Every block compressed alone with zstd (format 2).
    Zstd,
}

impl Codec {
    fn raw(self) -> u32 {
        match self {
            Codec::Default => sys::SHARDPOINT_CODEC_DEFAULT,
            Codec::DeflateStream => sys::SHARDPOINT_CODEC_DEFLATE_STREAM,
            Codec::Zlib => sys::SHARDPOINT_CODEC_ZLIB,
            Codec::Zstd => sys::SHARDPOINT_CODEC_ZSTD,
        }
    }
}

impl SaveOptions {
    pub fn new() -> SaveOptions {
        SaveOptions::default()
    }
    pub fn overwrite(mut self, yes: bool) -> Self {
        self.overwrite = yes;
        self
    }
    /// Deprecated: saves are durable by default and this has no effect. Use `no_fsync(true)` to
    /// opt out of durability.
    #[deprecated(note = "saves are durable by default; this has no effect (use no_fsync to opt out)")]
    pub fn fsync(mut self, yes: bool) -> Self {
        self.fsync = yes;
        self
    }
    /// Skips every fsync: NOT safe against a power loss or a kernel crash (see the field).
    pub fn no_fsync(mut self, yes: bool) -> Self {
        self.no_fsync = yes;
        self
    }
    /// Accepts tensors that the ranks together leave partly uncovered.
    pub fn allow_partial(mut self, yes: bool) -> Self {
        self.allow_partial = yes;
        self
    }
    /// The `SHARDPOINT_SAVE_*` flags these options stand for. The deprecated `fsync` never sets
    /// `SHARDPOINT_SAVE_FSYNC` (which would contradict `no_fsync`).
    pub fn flags(&self) -> u32 {
        let mut flags = 0;
        if self.overwrite {
            flags |= sys::SHARDPOINT_SAVE_OVERWRITE;
        }
        if self.no_fsync {
            flags |= sys::SHARDPOINT_SAVE_NO_FSYNC;
        }
        if self.allow_partial {
            flags |= sys::SHARDPOINT_SAVE_ALLOW_PARTIAL;
        }
        flags
    }
    pub fn compression_level(mut self, level: i32) -> Self {
        self.compression_level = level;
        self
    }
    pub fn codec(mut self, codec: Codec) -> Self {
        self.codec = codec;
        self
    }
    pub fn shuffle(mut self, yes: bool) -> Self {
        self.shuffle = yes;
        self
    }
    pub fn io_threads(mut self, n: u32) -> Self {
        self.io_threads = n;
        self
    }
    pub fn alignment(mut self, bytes: u64) -> Self {
        self.alignment = bytes;
        self
    }
    pub fn checkpoint_id(mut self, id: impl Into<String>) -> Self {
        self.checkpoint_id = Some(id.into());
        self
    }
}

/// One whole tensor of a batched add ([`Save::add_tensors`]), held in C order in the slice it
/// borrows.
pub struct TensorChunk<'a> {
    fqn: CString,
    dtype: Dtype,
    shape: Vec<u64>,
    data: *const c_void,
    _data: PhantomData<&'a [u8]>,
}

impl<'a> TensorChunk<'a> {
    /// The whole tensor `fqn` of `shape`, its elements in C order in `data` (at least the
    /// product of the shape).
    pub fn whole<T: Element>(fqn: &str, shape: &[u64], data: &'a [T]) -> Result<TensorChunk<'a>> {
        check_view(data.len(), shape, None)?;
        Ok(TensorChunk {
            fqn: cstring("name", fqn)?,
            dtype: T::DTYPE,
            shape: shape.to_vec(),
            data: data.as_ptr().cast(),
            _data: PhantomData,
        })
    }
}

/// A save in progress: offer what this rank holds, then [`Save::commit`].
///
/// The lifetime `'a` covers the communicator and every slice offered: the library reads them only
/// during `commit`, so they stay borrowed (unchanged, unmoved) until the save is committed or
/// dropped. Dropping an uncommitted save writes nothing.
///
/// The compiler enforces this. Data dropped before the commit:
///
/// ```compile_fail,E0597
/// use shardpoint::{Save, SaveOptions};
/// let mut save = Save::new("/tmp/ckpt", None, &SaveOptions::default()).unwrap();
/// {
///     let data = vec![1.0f32; 4];
///     save.add_tensor("x", &[4], &[0], &[4], &data).unwrap();
/// }
/// save.commit().unwrap();
/// ```
///
/// Data changed before the commit:
///
/// ```compile_fail,E0506
/// use shardpoint::{Save, SaveOptions};
/// let mut data = vec![1.0f32; 4];
/// let mut save = Save::new("/tmp/ckpt", None, &SaveOptions::default()).unwrap();
/// save.add_tensor("x", &[4], &[0], &[4], &data).unwrap();
/// data[0] = 2.0;
/// save.commit().unwrap();
/// ```
///
/// The communicator, used before the commit:
///
/// ```compile_fail,E0502
/// use shardpoint::{Comm, Save, SaveOptions};
/// let mut comm = Comm::single().unwrap();
/// let save = Save::new("/tmp/ckpt", Some(&mut comm), &SaveOptions::default()).unwrap();
/// println!("{}", comm.rank());
/// save.commit().unwrap();
/// ```
///
/// A `Save` is `Send`: it may be built on one thread and committed on another, e.g. in the
/// background while the owner of the data goes on reading it (the data is only borrowed shared).
/// Its communicator, borrowed `&'a mut`, goes along, and its callbacks run on the committing
/// thread, as does the progress closure ([`Save::set_progress`]).
pub struct Save<'a> {
    raw: *mut sys::shardpoint_save,
    comm: Option<&'a mut Comm>,
    // The closure the C handle reports to; dropped after the handle (fields drop after `drop`).
    progress: Option<ProgressSlot<'a>>,
    _borrows: PhantomData<&'a [u8]>,
}

// SAFETY: moving a Save to another thread moves everything the C save handle uses:
// - the handle itself: shardpoint.h lets a handle be used from any thread, one thread at a time;
//   every method takes `&mut self` or `self`, and Save is not Sync;
// - the communicator: borrowed exclusively (`&'a mut Comm`, and Comm is Send), so no other thread
//   can run a collective on it meanwhile;
// - the data: `&'a [T]` of `Element` types (plain, Sync) or of bytes, read by the library during
//   commit while other threads may only read it too;
// - the progress closure: `ProgressSlot` is Send (the closure must be `Send`), and the library
//   calls it only on the thread that commits.
// A field added later must be Send too, or this impl must go.
unsafe impl Send for Save<'_> {}

impl<'a> Save<'a> {
    /// Starts a save into directory `dir` (created if missing). `comm` None means one process;
    /// with a communicator, every rank of it must create its own `Save` and commit it. The
    /// communicator is borrowed exclusively until the save is committed or dropped (ask it for
    /// its rank first).
    pub fn new(dir: impl AsRef<Path>, comm: Option<&'a mut Comm>, options: &SaveOptions) -> Result<Save<'a>> {
        let dir = path_cstring(dir.as_ref())?;
        let id = options.checkpoint_id.as_deref().map(|s| cstring("checkpoint id", s)).transpose()?;
        let mut opts = sys::SHARDPOINT_SAVE_OPTIONS_INIT;
        // SAFETY: valid struct pointer.
        check(unsafe { sys::shardpoint_save_options_init(&mut opts, sys::SHARDPOINT_SAVE_OPTIONS_VERSION) })?;
        opts.flags |= options.flags();
        opts.compression_level = options.compression_level;
        opts.codec = options.codec.raw();
        opts.filters = if options.shuffle { sys::SHARDPOINT_FILTER_SHUFFLE } else { 0 };
        opts.io_threads = options.io_threads;
        opts.alignment = options.alignment;
        opts.checkpoint_id = id.as_ref().map_or(ptr::null(), |c| c.as_ptr());
        let mut raw = ptr::null_mut();
        let comm_ptr = comm.as_deref().map_or(ptr::null_mut(), Comm::as_ptr);
        // SAFETY: strings and options are copied by the call; comm stays borrowed for 'a.
        check(unsafe { sys::shardpoint_save_new(&mut raw, dir.as_ptr(), comm_ptr, &opts) })?;
        Ok(Save { raw, comm, progress: None, _borrows: PhantomData })
    }

    /// Offers a chunk held in C order: the box at `chunk_offsets` with `chunk_sizes` of a tensor of
    /// `global_shape`. `data` holds the chunk's elements (at least the product of the sizes).
    /// A 0-d tensor (scalar) has three empty shape arrays and one element.
    pub fn add_tensor<T: Element>(
        &mut self,
        fqn: &str,
        global_shape: &[u64],
        chunk_offsets: &[u64],
        chunk_sizes: &[u64],
        data: &'a [T],
    ) -> Result<()> {
        ndim_of(&[global_shape, chunk_offsets, chunk_sizes])?;
        let (first, strides) = check_view(data.len(), chunk_sizes, None)?;
        // SAFETY: the view lies inside `data`, which stays borrowed for 'a.
        unsafe {
            self.add_raw_parts(
                fqn,
                T::DTYPE,
                global_shape,
                chunk_offsets,
                chunk_sizes,
                data.as_ptr().add(first).cast(),
                strides,
            )
        }
    }

    /// Offers many whole tensors in one call of the library, all or nothing: when one is refused,
    /// none of them is kept and the error names its position in the batch.
    pub fn add_tensors(&mut self, chunks: &[TensorChunk<'a>]) -> Result<()> {
        let raw: Vec<sys::shardpoint_tensor_chunk> = chunks
            .iter()
            .map(|c| sys::shardpoint_tensor_chunk {
                fqn: c.fqn.as_ptr(),
                dtype: c.dtype.raw(),
                ndim: c.shape.len() as u32,
                global_shape: ptr_or_null(&c.shape),
                chunk_offsets: ptr::null(),
                chunk_sizes: ptr::null(),
                data: c.data,
                strides: ptr::null(),
            })
            .collect();
        // SAFETY: every pointer is into `chunks`, alive for the call; the data stays borrowed for 'a.
        check(unsafe {
            sys::shardpoint_save_add_tensors(
                self.raw,
                raw.as_ptr(),
                raw.len() as u64,
                std::mem::size_of::<sys::shardpoint_tensor_chunk>(),
            )
        })
    }

    /// Offers a chunk laid out with explicit element strides (transposed, reversed, every other
    /// row, ...). The view must lie inside `data`.
    pub fn add_tensor_strided<T: Element>(
        &mut self,
        fqn: &str,
        global_shape: &[u64],
        chunk_offsets: &[u64],
        chunk_sizes: &[u64],
        data: &'a [T],
        layout: Strided<'_>,
    ) -> Result<()> {
        ndim_of(&[global_shape, chunk_offsets, chunk_sizes])?;
        let (first, strides) = check_view(data.len(), chunk_sizes, Some(&layout))?;
        // SAFETY: as above; the strides are copied by the call.
        unsafe {
            self.add_raw_parts(
                fqn,
                T::DTYPE,
                global_shape,
                chunk_offsets,
                chunk_sizes,
                data.as_ptr().add(first).cast(),
                strides,
            )
        }
    }

    /// Offers a chunk of any dtype as raw little-endian bytes: f16, bf16, complex, f8, or anything
    /// else. `layout` counts in elements of `dtype` (None: C order).
    #[allow(clippy::too_many_arguments)]
    pub fn add_tensor_raw(
        &mut self,
        fqn: &str,
        dtype: Dtype,
        global_shape: &[u64],
        chunk_offsets: &[u64],
        chunk_sizes: &[u64],
        data: &'a [u8],
        layout: Option<Strided<'_>>,
    ) -> Result<()> {
        ndim_of(&[global_shape, chunk_offsets, chunk_sizes])?;
        let esize = dtype.size().max(1);
        let (first, strides) = check_view(data.len() / esize, chunk_sizes, layout.as_ref())?;
        // SAFETY: the view lies inside the whole elements of `data`, borrowed for 'a.
        unsafe {
            self.add_raw_parts(
                fqn,
                dtype,
                global_shape,
                chunk_offsets,
                chunk_sizes,
                data.as_ptr().add(first * esize).cast(),
                strides,
            )
        }
    }

    /// # Safety
    /// `data` and `strides` must describe memory that is readable for the chunk and stays valid
    /// and unchanged for 'a.
    #[allow(clippy::too_many_arguments)]
    unsafe fn add_raw_parts(
        &mut self,
        fqn: &str,
        dtype: Dtype,
        global_shape: &[u64],
        chunk_offsets: &[u64],
        chunk_sizes: &[u64],
        data: *const c_void,
        strides: *const i64,
    ) -> Result<()> {
        let ndim = ndim_of(&[global_shape, chunk_offsets, chunk_sizes])?;
        let fqn = cstring("name", fqn)?;
        check(sys::shardpoint_save_add_tensor(
            self.raw,
            fqn.as_ptr(),
            dtype.raw(),
            ndim,
            ptr_or_null(global_shape),
            ptr_or_null(chunk_offsets),
            ptr_or_null(chunk_sizes),
            data,
            strides,
        ))
    }

    /// Offers an opaque byte blob under `fqn`.
    pub fn add_bytes(&mut self, fqn: &str, data: &'a [u8]) -> Result<()> {
        let fqn = cstring("name", fqn)?;
        // SAFETY: `data` stays borrowed for 'a.
        check(unsafe {
            sys::shardpoint_save_add_bytes(self.raw, fqn.as_ptr(), data.as_ptr().cast(), data.len() as u64)
        })
    }

    /// Records a user key/value pair in the metadata (copied).
    pub fn set_metadata(&mut self, key: &str, value: &str) -> Result<()> {
        let key: CString = cstring("metadata key", key)?;
        let value: CString = cstring("metadata value", value)?;
        // SAFETY: both strings are copied by the call.
        check(unsafe { sys::shardpoint_save_set_metadata(self.raw, key.as_ptr(), value.as_ptr()) })
    }

    /// Reports the write of [`Save::commit`] to `f`, on the committing thread: once at the start
    /// (`done` 0), at most every 50 ms, and at the end (`done == total`, the raw bytes of this
    /// rank's chunks). `f` returns `ControlFlow::Continue(())` to go on or `ControlFlow::Break(())`
    /// to cancel: the commit then fails with `ErrorCode::Canceled` (with a communicator, the
    /// other ranks fail with `Rank`), commits nothing, removes its files, and leaves the
    /// checkpoint that was in the directory untouched. A panic in `f` cancels the same way and
    /// is resumed by `commit` once the library has returned. Setting another closure replaces
    /// this one.
    ///
    /// ```no_run
    /// use std::ops::ControlFlow;
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// use shardpoint::{Save, SaveOptions};
    /// # fn main() -> shardpoint::Result<()> {
    /// let stop = AtomicBool::new(false); // set by another thread to cancel
    /// let w = vec![0f32; 1 << 20];
    /// let mut save = Save::new("/tmp/ckpt", None, &SaveOptions::default())?;
    /// save.add_tensor("w", &[1 << 20], &[0], &[1 << 20], &w)?;
    /// save.set_progress(|p| {
    ///     println!("{:?}: {} of {} bytes", p.phase, p.done, p.total);
    ///     if stop.load(Ordering::Relaxed) { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
    /// })?;
    /// save.commit()
    /// # }
    /// ```
    ///
    /// The closure must be `Send`, as the save is (it may commit on another thread):
    ///
    /// ```compile_fail,E0277
    /// use std::ops::ControlFlow;
    /// use shardpoint::{Save, SaveOptions};
    /// let mut save = Save::new("/tmp/ckpt", None, &SaveOptions::default()).unwrap();
    /// let calls = std::rc::Rc::new(std::cell::Cell::new(0));
    /// save.set_progress(move |_| {
    ///     calls.set(calls.get() + 1);
    ///     ControlFlow::Continue(())
    /// })
    /// .unwrap();
    /// ```
    pub fn set_progress(&mut self, f: impl FnMut(Progress) -> ControlFlow<()> + Send + 'a) -> Result<()> {
        let slot = ProgressSlot::new(f);
        let (callback, user) = slot.raw();
        // SAFETY: `user` points at the slot's state, which stays at its address until the slot
        // drops; the slot goes into `self`, which frees the handle before dropping it. A slot it
        // replaces drops only after the handle points at the new one.
        check(unsafe { sys::shardpoint_save_set_progress(self.raw, Some(callback), user) })?;
        self.progress = Some(slot);
        Ok(())
    }

    /// Collective over the save's communicator: plans, writes every rank's data and commits the
    /// metadata atomically. On failure nothing is committed and a previous checkpoint at the path
    /// is intact; the one exception is `NotDurable`: the checkpoint was committed but may not
    /// survive a power loss. Tensors left partly uncovered fail with `Uncovered` unless
    /// `allow_partial`; a progress closure that asks to stop makes it fail with `Canceled`.
    /// Consumes the save, which ends the borrows.
    ///
    /// # Panics
    /// When the progress closure panicked: the commit is canceled, then the panic resumes here.
    pub fn commit(mut self) -> Result<()> {
        let raw = self.raw;
        // SAFETY: valid handle; borrowed data and the progress closure are alive for 'a, which
        // `self` still holds here.
        let call = || unsafe { sys::shardpoint_save_commit(raw) };
        let result = match self.comm.as_deref_mut() {
            Some(comm) => comm.collective(call),
            None => check(call()),
        };
        if let Some(panic) = self.progress.as_mut().and_then(ProgressSlot::take_panic) {
            resume_unwind(panic); // `self` drops while unwinding: shardpoint_save_free
        }
        result
        // `self` drops here: shardpoint_save_free.
    }
}

impl Drop for Save<'_> {
    fn drop(&mut self) {
        // SAFETY: owned handle, freed once.
        unsafe { sys::shardpoint_save_free(self.raw) };
    }
}
