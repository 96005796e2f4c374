use std::ffi::c_void;
use std::marker::PhantomData;
use std::ops::ControlFlow;
use std::panic::resume_unwind;
use std::ptr;

use shardpoint_sys as sys;

use crate::comm::Comm;
use crate::dtype::{normalize_bools, Dtype, Element};
use crate::error::{check, Result};
use crate::layout::{check_destination, cstring, ndim_of, ptr_or_null, whole_elements, Strided};
use crate::progress::{Progress, ProgressSlot};
use crate::reader::Reader;

/// A set of read requests executed together by [`Load::execute`].
///
/// The lifetime `'a` covers the reader, the communicator and every destination: the library
/// writes the destinations only during `execute`, so they stay mutably borrowed until the load is
/// executed or dropped. Reading a destination before `execute` does not compile:
///
/// ```compile_fail,E0502
/// use shardpoint::{Load, Reader};
/// let reader = Reader::open("/tmp/ckpt").unwrap();
/// let mut dst = vec![0f32; 4];
/// let mut load = Load::new(&reader, None).unwrap();
/// load.add_tensor("x", &[0], &[4], &mut dst).unwrap();
/// println!("{}", dst[0]);
/// load.execute().unwrap();
/// ```
///
/// Nor does freeing the reader first:
///
/// ```compile_fail,E0505
/// use shardpoint::{Load, Reader};
/// let reader = Reader::open("/tmp/ckpt").unwrap();
/// let load = Load::new(&reader, None).unwrap();
/// drop(reader);
/// load.execute().unwrap();
/// ```
///
/// A `Load` is `Send`: it may be built on one thread and executed on another; its destinations,
/// its communicator (borrowed `&'a mut`) and its progress closure ([`Load::set_progress`]) go
/// along.
pub struct Load<'a> {
    raw: *mut sys::shardpoint_load,
    reader: &'a Reader,
    comm: Option<&'a mut Comm>,
    // `bool` destinations, re-checked after execute (see `normalize_bools`).
    bools: Vec<(*mut u8, usize)>,
    // The closure the C handle reports to; dropped after the handle (fields drop after `drop`).
    progress: Option<ProgressSlot<'a>>,
    _borrows: PhantomData<(&'a Reader, &'a mut [u8])>,
}

// SAFETY: moving a Load to another thread moves everything the C load handle uses:
// - the handle itself: shardpoint.h lets a handle be used from any thread, one thread at a time;
//   Load is not Sync, so its one `&self` method (`skipped_count`) cannot race with the others;
// - the communicator: borrowed exclusively (`&'a mut Comm`, and Comm is Send);
// - the destinations (and the `bools` pointers into them): `&'a mut [T]` of `Element` types
//   (plain, Send), written by nobody else until execute;
// - the reader: `&'a Reader`, which is Sync; the header allows a reader's reads from several
//   threads at once (`shardpoint_reader_read_tensor` is itself a one-request load);
// - the progress closure: `ProgressSlot` is Send (the closure must be `Send`), and the library
//   calls it only on the thread that executes.
// A field added later must be Send too, or this impl must go.
unsafe impl Send for Load<'_> {}

impl<'a> Load<'a> {
    /// Starts a load from `reader`. With a communicator, `execute` is collective over it: every
    /// rank creates its own load (from its own reader) and executes it. The communicator is
    /// borrowed exclusively until the load is executed or dropped.
    pub fn new(reader: &'a Reader, comm: Option<&'a mut Comm>) -> Result<Load<'a>> {
        let mut raw = ptr::null_mut();
        let comm_ptr = comm.as_deref().map_or(ptr::null_mut(), Comm::as_ptr);
        // SAFETY: reader and comm stay borrowed for 'a, and so outlive the load.
        check(unsafe { sys::shardpoint_load_new(&mut raw, reader.as_ptr(), comm_ptr) })?;
        Ok(Load { raw, reader, comm, bools: Vec::new(), progress: None, _borrows: PhantomData })
    }

    /// Requests the whole tensor `fqn`, whose shape the caller states as `shape`, into `dst` in C
    /// order. A tensor of another shape is a `Shape` error naming both shapes.
    pub fn add_whole<T: Element>(&mut self, fqn: &str, shape: &[u64], dst: &'a mut [T]) -> Result<()> {
        let zeros = self.reader.whole_box(fqn, shape)?;
        self.add_tensor(fqn, &zeros, shape, dst)
    }

    /// Requests the box (`box_offsets`, `box_sizes`) of tensor `fqn` into `dst` in C order. `dst`
    /// must hold exactly the box's elements (`Shape` otherwise). The element type must be the
    /// stored dtype (`EDTYPE` otherwise): nothing is converted.
    pub fn add_tensor<T: Element>(
        &mut self,
        fqn: &str,
        box_offsets: &[u64],
        box_sizes: &[u64],
        dst: &'a mut [T],
    ) -> Result<()> {
        ndim_of(&[box_offsets, box_sizes])?;
        let (first, strides) = check_destination(fqn, dst.len(), box_sizes, None)?;
        self.add_slice(fqn, T::DTYPE, box_offsets, box_sizes, dst, first * std::mem::size_of::<T>(), strides)
    }

    /// Requests a box into `dst` laid out with explicit element strides.
    pub fn add_tensor_strided<T: Element>(
        &mut self,
        fqn: &str,
        box_offsets: &[u64],
        box_sizes: &[u64],
        dst: &'a mut [T],
        layout: Strided<'_>,
    ) -> Result<()> {
        ndim_of(&[box_offsets, box_sizes])?;
        let (first, strides) = check_destination(fqn, dst.len(), box_sizes, Some(&layout))?;
        self.add_slice(fqn, T::DTYPE, box_offsets, box_sizes, dst, first * std::mem::size_of::<T>(), strides)
    }

    /// Requests a box of any dtype as raw little-endian bytes; `layout` counts in elements of
    /// `dtype` (None: C order).
    pub fn add_tensor_raw(
        &mut self,
        fqn: &str,
        dtype: Dtype,
        box_offsets: &[u64],
        box_sizes: &[u64],
        dst: &'a mut [u8],
        layout: Option<Strided<'_>>,
    ) -> Result<()> {
        ndim_of(&[box_offsets, box_sizes])?;
        let esize = dtype.size().max(1);
        let (first, strides) =
            check_destination(fqn, whole_elements(fqn, dst.len(), esize)?, box_sizes, layout.as_ref())?;
        self.add_slice(fqn, dtype, box_offsets, box_sizes, dst, first * esize, strides)
    }

    #[allow(clippy::too_many_arguments)]
    fn add_slice<T: Element>(
        &mut self,
        fqn: &str,
        dtype: Dtype,
        box_offsets: &[u64],
        box_sizes: &[u64],
        dst: &'a mut [T],
        first_byte: usize,
        strides: *const i64,
    ) -> Result<()> {
        let ndim = ndim_of(&[box_offsets, box_sizes])?;
        let fqn = cstring("name", fqn)?;
        let len = dst.len();
        let base = dst.as_mut_ptr().cast::<u8>();
        // SAFETY: check_view put the box inside `dst`, which stays exclusively borrowed for 'a;
        // `first_byte` is at most its length.
        check(unsafe {
            sys::shardpoint_load_add_tensor(
                self.raw,
                fqn.as_ptr(),
                dtype.raw(),
                ndim,
                ptr_or_null(box_offsets),
                ptr_or_null(box_sizes),
                base.add(first_byte).cast::<c_void>(),
                strides,
            )
        })?;
        if T::DTYPE == Dtype::Bool {
            self.bools.push((base, len));
        }
        Ok(())
    }

    /// Requests blob `fqn` into `dst`, which must hold at least its length (`ERANGE`).
    pub fn add_bytes(&mut self, fqn: &str, dst: &'a mut [u8]) -> Result<()> {
        let fqn = cstring("name", fqn)?;
        // SAFETY: `dst` stays exclusively borrowed for 'a.
        check(unsafe {
            sys::shardpoint_load_add_bytes(self.raw, fqn.as_ptr(), dst.as_mut_ptr().cast(), dst.len() as u64)
        })
    }

    /// Requests skipped because `allow_partial` was set and their entry is missing.
    pub fn skipped_count(&self) -> Result<u64> {
        let mut n = 0;
        // SAFETY: valid handle and out-pointer.
        check(unsafe { sys::shardpoint_load_skipped_count(self.raw, &mut n) })?;
        Ok(n)
    }

    /// Reports the read of [`Load::execute`] to `f`, on the executing thread: once at the start
    /// (`done` 0), at most every 50 ms, and at the end (`done == total`: the bytes this rank
    /// reads, raw bytes for compressed data). `f` returns `ControlFlow::Continue(())` to go on or
    /// `ControlFlow::Break(())` to cancel: `execute` then fails with `ErrorCode::Canceled` (with a
    /// communicator, the other ranks fail with `Rank`) and the destinations may hold partial
    /// data. A panic in `f` cancels the same way and is resumed by `execute` once the library
    /// has returned. Setting another closure replaces this one.
    pub fn set_progress(&mut self, f: impl FnMut(Progress) -> ControlFlow<()> + Send + 'a) -> Result<()> {
        let slot = ProgressSlot::new(f);
        let (callback, user) = slot.raw();
        // SAFETY: `user` points at the slot's state, which stays at its address until the slot
        // drops; the slot goes into `self`, which frees the handle before dropping it. A slot it
        // replaces drops only after the handle points at the new one.
        check(unsafe { sys::shardpoint_load_set_progress(self.raw, Some(callback), user) })?;
        self.progress = Some(slot);
        Ok(())
    }

    /// Reads every requested byte into the destinations (collective when the load has a
    /// communicator). On failure the destinations may hold partial data. Consumes the load, which
    /// ends the borrows.
    ///
    /// # Panics
    /// When the progress closure panicked: the load is canceled, then the panic resumes here.
    pub fn execute(mut self) -> Result<()> {
        let raw = self.raw;
        // SAFETY: valid handle; every destination and the progress closure are still borrowed
        // through `self`.
        let call = || unsafe { sys::shardpoint_load_execute(raw) };
        let result = match self.comm.as_deref_mut() {
            Some(comm) => comm.collective(call),
            None => check(call()),
        };
        for &(p, len) in &self.bools {
            // SAFETY: still exclusively borrowed for 'a; only accessed as bytes.
            unsafe { normalize_bools(p, len) };
        }
        if let Some(panic) = self.progress.as_mut().and_then(ProgressSlot::take_panic) {
            resume_unwind(panic); // `self` drops while unwinding: shardpoint_load_free
        }
        result
    }
}

impl Drop for Load<'_> {
    fn drop(&mut self) {
        // SAFETY: owned handle, freed once.
        unsafe { sys::shardpoint_load_free(self.raw) };
    }
}
