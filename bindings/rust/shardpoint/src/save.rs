use std::ffi::{c_void, CString};
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::ops::ControlFlow;
use std::panic::resume_unwind;
use std::path::Path;
use std::ptr;

use shardpoint_sys as sys;

use crate::comm::Comm;
use crate::dtype::{Dtype, Element};
use crate::error::{check, Error, ErrorCode, Result};
use crate::layout::{check_view, cstring, ndim_of, path_cstring, ptr_or_null, Strided};
use crate::progress::{Progress, ProgressSlot};
use crate::staging::{CommitAsyncError, PendingSave, Staging};

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

/// A save in progress: offer what this rank holds, then [`Save::commit`] it, or
/// [`Save::commit_async`] it and go on while it is written.
///
/// Two lifetimes, because the library holds on to two kinds of borrows for different spans:
///
/// - `'c`, the **communicator** (`Option<&'c mut Comm>`): used by the commit's collectives, so
///   borrowed exclusively until the save ends: until `commit` returns, or for an asynchronous
///   commit until its [`PendingSave`] is waited for or dropped (the collectives run on the
///   library's background thread meanwhile).
/// - `'d`, the **data**: every slice offered (and the closure of [`Save::set_progress`]). The
///   library reads the data during `commit`, or copies it into a [`Staging`] area during
///   `commit_async`, and never again: the data stays borrowed (unchanged, unmoved) until one of
///   them returns (or the save is dropped), not a moment longer. A `PendingSave` has no `'d`.
///
/// Dropping an uncommitted save writes nothing.
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
/// Its communicator, borrowed `&'c mut`, goes along, and its callbacks run on the committing
/// thread, as does the progress closure ([`Save::set_progress`]). To change the data while it is
/// written, use [`Save::commit_async`] instead.
pub struct Save<'c, 'd> {
    raw: *mut sys::shardpoint_save,
    comm: Option<&'c mut Comm>,
    // The closure the C handle reports to, set by `set_progress` or by `set_async_progress` (at
    // most one of the two is Some); dropped after the handle (fields drop after `drop`). Only the
    // 'static one may go on to a PendingSave (see `commit_async`).
    progress: Option<ProgressSlot<'d>>,
    async_progress: Option<ProgressSlot<'static>>,
    _data: PhantomData<&'d [u8]>,
}

// SAFETY: moving a Save to another thread moves everything the C save handle uses:
// - the handle itself: shardpoint.h lets a handle be used from any thread, one thread at a time;
//   every method takes `&mut self` or `self` but `staging_size` (a read of the handle), and Save
//   is not Sync;
// - the communicator: borrowed exclusively (`&'c mut Comm`, and Comm is Send), so no other thread
//   can run a collective on it meanwhile;
// - the data: `&'d [T]` of `Element` types (plain, Sync) or of bytes, read by the library during
//   commit (or commit_async) while other threads may only read it too;
// - the progress closures: `ProgressSlot` is Send (the closure must be `Send`), and the library
//   calls it only on the thread that commits (or its background thread, for `commit_async`).
// A field added later must be Send too, or this impl must go.
unsafe impl Send for Save<'_, '_> {}

impl<'c, 'd> Save<'c, 'd> {
    /// Starts a save into directory `dir` (created if missing). `comm` None means one process;
    /// with a communicator, every rank of it must create its own `Save` and commit it. The
    /// communicator is borrowed exclusively until the save is committed or dropped, or after
    /// [`Save::commit_async`] until the [`PendingSave`] is waited for or dropped (ask it for its
    /// rank first).
    pub fn new(dir: impl AsRef<Path>, comm: Option<&'c mut Comm>, options: &SaveOptions) -> Result<Save<'c, 'd>> {
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
        // SAFETY: strings and options are copied by the call; comm stays borrowed for 'c, until
        // the save (or the PendingSave it becomes) is freed.
        check(unsafe { sys::shardpoint_save_new(&mut raw, dir.as_ptr(), comm_ptr, &opts) })?;
        Ok(Save { raw, comm, progress: None, async_progress: None, _data: PhantomData })
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
        data: &'d [T],
    ) -> Result<()> {
        ndim_of(&[global_shape, chunk_offsets, chunk_sizes])?;
        let (first, strides) = check_view(data.len(), chunk_sizes, None)?;
        // SAFETY: the view lies inside `data`, which stays borrowed for 'd.
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
    pub fn add_tensors(&mut self, chunks: &[TensorChunk<'d>]) -> Result<()> {
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
        // SAFETY: every pointer is into `chunks`, alive for the call; the data stays borrowed for 'd.
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
        data: &'d [T],
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
        data: &'d [u8],
        layout: Option<Strided<'_>>,
    ) -> Result<()> {
        ndim_of(&[global_shape, chunk_offsets, chunk_sizes])?;
        let esize = dtype.size().max(1);
        let (first, strides) = check_view(data.len() / esize, chunk_sizes, layout.as_ref())?;
        // SAFETY: the view lies inside the whole elements of `data`, borrowed for 'd.
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
    /// and unchanged for 'd.
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
    pub fn add_bytes(&mut self, fqn: &str, data: &'d [u8]) -> Result<()> {
        let fqn = cstring("name", fqn)?;
        // SAFETY: `data` stays borrowed for 'd.
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
    /// is resumed by `commit` once the library has returned. Setting another closure (with this
    /// method or [`Save::set_async_progress`]) replaces this one.
    ///
    /// The closure may borrow for the data's lifetime `'d`, and so runs during `commit` only:
    /// [`Save::commit_async`] refuses a save with such a closure (`ErrorCode::State`); give it one
    /// with [`Save::set_async_progress`].
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
    pub fn set_progress(&mut self, f: impl FnMut(Progress) -> ControlFlow<()> + Send + 'd) -> Result<()> {
        let slot = ProgressSlot::new(f);
        self.report_to(&slot)?;
        self.progress = Some(slot);
        self.async_progress = None;
        Ok(())
    }

    /// As [`Save::set_progress`], for a closure that owns what it uses (`'static`: an `Arc`, a
    /// channel's sender, an atomic in a `static`), which may therefore also run during
    /// [`Save::commit_async`], on the library's background thread. `Break(())` (or a panic,
    /// resumed by [`PendingSave::wait`]) cancels the asynchronous commit as it would `commit`.
    ///
    /// Why `'static`: a [`PendingSave`] that is leaked (`std::mem::forget`) rather than dropped
    /// ends its borrows without waiting for the background thread, which would then call a
    /// closure whose borrowed captures may be gone. So the binding relies on no destructor for
    /// what that thread touches: the closure owns its captures, the communicator waits for a
    /// leaked commit before its next use, and a staging area before it is freed.
    ///
    /// A closure borrowing a local does not compile:
    ///
    /// ```compile_fail,E0597
    /// use std::ops::ControlFlow;
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// use shardpoint::{Save, SaveOptions};
    /// let mut save = Save::new("/tmp/ckpt", None, &SaveOptions::default()).unwrap();
    /// let stop = AtomicBool::new(false);
    /// let stop = &stop;
    /// save.set_async_progress(move |_| {
    ///     if stop.load(Ordering::Relaxed) { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
    /// })
    /// .unwrap();
    /// ```
    pub fn set_async_progress(&mut self, f: impl FnMut(Progress) -> ControlFlow<()> + Send + 'static) -> Result<()> {
        let slot = ProgressSlot::new(f);
        self.report_to(&slot)?;
        self.async_progress = Some(slot);
        self.progress = None;
        Ok(())
    }

    /// Points the C handle's progress callback at `slot`, which the caller then stores in `self`.
    fn report_to(&mut self, slot: &ProgressSlot<'_>) -> Result<()> {
        let (callback, user) = slot.raw();
        // SAFETY: `user` points at the slot's state, which stays at its address until the slot
        // drops; the caller puts the slot into `self`, which frees the handle (or hands it to a
        // PendingSave, with the slot) before dropping it. A slot it replaces drops only after
        // the handle points at the new one.
        check(unsafe { sys::shardpoint_save_set_progress(self.raw, Some(callback), user) })
    }

    /// The bytes of staging this rank's data takes (each chunk and blob 64-byte aligned): the
    /// smallest [`Staging`] capacity [`Save::commit_async`] accepts for what was added so far.
    pub fn staging_size(&self) -> u64 {
        let mut bytes = 0;
        // SAFETY: valid handle; a read of it, and Save is not Sync. Cannot fail for a valid
        // handle and out-pointer.
        let rc = unsafe { sys::shardpoint_save_staging_size(self.raw, &mut bytes) };
        debug_assert_eq!(rc, sys::SHARDPOINT_OK);
        bytes
    }

    /// Copies this rank's data into `staging`, then commits in the background and returns: from
    /// then on the data may change (train the next step) while the library writes it. Collective
    /// as [`Save::commit`] (every rank calls `commit_async` or `commit`); the outcome, the same
    /// as `commit`'s, comes from [`PendingSave::wait`].
    ///
    /// The types say what stays borrowed: `self` is consumed, which ends the data's borrow `'d`
    /// (the data was copied and is never read again), while the returned `PendingSave<'c, 's>`
    /// keeps the communicator (`'c`) and the staging area (`'s`), which the background thread
    /// uses until the pending save is waited for or dropped (dropping it waits). Consuming the
    /// save is what makes this possible: a method taking `&mut self` would leave the data
    /// borrowed by the still living `Save`.
    ///
    /// `staging` serves one save at a time: while an earlier asynchronous save still uses it,
    /// this call first waits for that save to end. Its capacity must be at least
    /// [`Save::staging_size`]. Each rank needs an area of its own (ranks of a [`crate::LocalGroup`]
    /// sharing one would wait for each other forever).
    ///
    /// On failure nothing was started and the save comes back in the error, to be committed with
    /// [`Save::commit`] or a larger area ([`CommitAsyncError::into_save`]): `Range` when the data
    /// does not fit in `staging`, `State` when a closure of [`Save::set_progress`] (which may
    /// borrow and so cannot run in the background) is set; also `NoMem`, `Inval`. With `?` the
    /// error converts into a plain [`Error`] (the save is dropped). With a communicator, a rank
    /// whose `commit_async` failed should still commit the save it got back: the other ranks'
    /// commits wait for it in their collectives.
    ///
    /// ```no_run
    /// use shardpoint::{Save, SaveOptions, Staging};
    /// # fn main() -> shardpoint::Result<()> {
    /// let mut w = vec![0f32; 1 << 20];
    /// let mut save = Save::new("/tmp/ckpt", None, &SaveOptions::new().overwrite(true))?;
    /// save.add_tensor("w", &[1 << 20], &[0], &[1 << 20], &w)?;
    /// let staging = Staging::new(save.staging_size())?;
    /// let pending = save.commit_async(&staging)?;
    /// w[0] = 1.0; // the next step, while the checkpoint is written (it keeps 0.0)
    /// pending.wait()
    /// # }
    /// ```
    ///
    /// Until `commit_async` has returned, the data cannot change:
    ///
    /// ```compile_fail,E0506
    /// use shardpoint::{Save, SaveOptions, Staging};
    /// let mut w = vec![0f32; 4];
    /// let staging = Staging::new(1024).unwrap();
    /// let mut save = Save::new("/tmp/ckpt", None, &SaveOptions::default()).unwrap();
    /// save.add_tensor("w", &[4], &[0], &[4], &w).unwrap();
    /// w[0] = 1.0; // still borrowed by the save
    /// let pending = save.commit_async(&staging).unwrap();
    /// pending.wait().unwrap();
    /// ```
    ///
    /// The communicator stays borrowed by the pending save:
    ///
    /// ```compile_fail,E0502
    /// use shardpoint::{Comm, Save, SaveOptions, Staging};
    /// let mut comm = Comm::single().unwrap();
    /// let staging = Staging::new(1024).unwrap();
    /// let save = Save::new("/tmp/ckpt", Some(&mut comm), &SaveOptions::default()).unwrap();
    /// let pending = save.commit_async(&staging).unwrap();
    /// println!("{}", comm.rank()); // the background thread may be in a collective
    /// pending.wait().unwrap();
    /// ```
    ///
    /// And so does the staging area:
    ///
    /// ```compile_fail,E0505
    /// use shardpoint::{Save, SaveOptions, Staging};
    /// let staging = Staging::new(1024).unwrap();
    /// let save = Save::new("/tmp/ckpt", None, &SaveOptions::default()).unwrap();
    /// let pending = save.commit_async(&staging).unwrap();
    /// drop(staging);
    /// pending.wait().unwrap();
    /// ```
    pub fn commit_async<'s>(mut self, staging: &'s Staging) -> Result<PendingSave<'c, 's>, CommitAsyncError<'c, 'd>> {
        if self.progress.is_some() {
            let error = Error::new(
                ErrorCode::State,
                "the progress closure was set with set_progress and may borrow: an asynchronous commit needs one \
                 set with set_async_progress",
            );
            return Err(CommitAsyncError { save: self, error });
        }
        let raw = self.raw;
        let staging_ptr = staging.as_ptr();
        // SAFETY: valid handles. The data is alive for 'd, which `self` still holds during the
        // call, and is not read after it. What the background thread uses afterwards outlives it
        // without relying on a destructor: the handle (freed only by the PendingSave's Drop, never
        // if it is leaked), the communicator (borrowed by the PendingSave; `Comm` waits for a
        // leaked one before its next use), the staging area (borrowed by the PendingSave; freeing
        // it waits for the save using it) and the progress closure ('static, owned by the
        // PendingSave, leaked with it).
        let call = || unsafe { sys::shardpoint_save_commit_async(raw, staging_ptr) };
        let started = match self.comm.as_deref_mut() {
            Some(comm) => comm.start_async(raw, call),
            None => check(call()),
        };
        if let Err(error) = started {
            return Err(CommitAsyncError { save: self, error });
        }
        // The handle, the communicator and the closure move on to the PendingSave; the rest of
        // the Save (its `progress`, None as checked above, and the data's PhantomData) is
        // forgotten without running Save's Drop, which would free the handle.
        let mut save = ManuallyDrop::new(self);
        Ok(PendingSave::started(raw, save.comm.take(), staging, save.async_progress.take()))
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
        // SAFETY: valid handle; borrowed data and the progress closure are alive for 'd (or
        // 'static), which `self` still holds here, and so is the communicator ('c).
        let call = || unsafe { sys::shardpoint_save_commit(raw) };
        let result = match self.comm.as_deref_mut() {
            Some(comm) => comm.collective(call),
            None => check(call()),
        };
        let panic = match (self.progress.as_mut(), self.async_progress.as_mut()) {
            (Some(slot), _) => slot.take_panic(),
            (None, Some(slot)) => slot.take_panic(),
            (None, None) => None,
        };
        if let Some(panic) = panic {
            resume_unwind(panic); // `self` drops while unwinding: shardpoint_save_free
        }
        result
        // `self` drops here: shardpoint_save_free.
    }
}

impl Drop for Save<'_, '_> {
    fn drop(&mut self) {
        // SAFETY: owned handle, freed once.
        unsafe { sys::shardpoint_save_free(self.raw) };
    }
}
