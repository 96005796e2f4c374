use std::ffi::{c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

use shardpoint_sys as sys;

use crate::error::{check, Error, ErrorCode, Result};

/// What a collective returns; any error makes the library fail the call with `ECOMM`, and its
/// text is appended to that error's message.
pub type CollectiveResult = std::result::Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// Collectives implemented by the host program (threads, a service, an RPC layer, ...).
///
/// Rank 0 is the root. The library calls these only from inside collective shardpoint calls
/// (`Save::commit`, `Load::execute` with a communicator, `Reader::open_shared`), on the thread
/// that makes the call (which may be another than the one that created the save or load), in the
/// same order on every rank. A transport that can fail midway should abort the job rather than
/// return an error: the other ranks may be blocked in their own callbacks.
///
/// An asynchronous commit ([`crate::Save::commit_async`]) calls them on the library's background
/// thread instead, from the return of `commit_async` until the [`crate::PendingSave`] is waited
/// for or dropped. That is why the trait requires `Send`: the object is used from another thread
/// than the one that created it, though never from two at once (the pending save holds the
/// communicator's `&mut Comm` meanwhile, see [`Comm`]). With MPI underneath, the background
/// thread needs a communicator of its own (`MPI_Comm_dup`) and `MPI_THREAD_MULTIPLE`.
pub trait Collectives: Send {
    /// This process's rank, `0 <= rank < size`.
    fn rank(&self) -> i32;
    /// Number of ranks, at least 1.
    fn size(&self) -> i32;
    /// Every rank sends `send` (the same length everywhere). On rank 0 `recv` is `Some` buffer of
    /// `size * send.len()` bytes that receives rank r's bytes at offset `r * send.len()`; on the
    /// other ranks it is `None`.
    fn gather(&mut self, send: &[u8], recv: Option<&mut [u8]>) -> CollectiveResult;
    /// Copies rank 0's `buf` into `buf` on every other rank.
    fn broadcast(&mut self, buf: &mut [u8]) -> CollectiveResult;
}

/// What the C side's `user` pointer points at: the host's collectives plus the text of the last
/// callback failure, so the resulting `ECOMM` error can say what went wrong.
struct CallbackState {
    inner: Box<dyn Collectives>,
    size: usize,
    last_error: Option<String>,
}

/// A communicator: how the ranks of one job talk during collective calls.
///
/// Every collective call borrows it exclusively (`&mut Comm`): [`crate::Save::new`] and
/// [`crate::Load::new`] until the save or load is gone, [`crate::Reader::open_shared`] for the
/// call. So one communicator serves one collective at a time, and a `Save` or `Load` holding it
/// can move to another thread with it.
///
/// `Comm` is `Send` but not `Sync`, and cannot be: the C ABI lets a communicator handle be used by
/// one thread at a time only, and a collective must be called in the same order on every rank.
/// Two threads of one rank running collectives on the same communicator would interleave their
/// messages (as with one MPI communicator), and each collective also rewrites the callback
/// state here. Give each thread that needs collectives its own communicator.
///
/// ```compile_fail,E0277
/// fn assert_sync<T: Sync>() {}
/// assert_sync::<shardpoint::Comm>();
/// ```
///
/// # Asynchronous saves
///
/// During [`crate::Save::commit_async`] the library calls the callbacks on its own background
/// thread, while the [`crate::PendingSave`] holds the `&mut Comm`: nothing else can use the
/// communicator until the pending save has been waited for or dropped. A pending save that is
/// leaked instead (`std::mem::forget`, an `Rc` cycle) gives the borrow back without waiting, so
/// the communicator remembers the asynchronous commit running on it and waits for it before any
/// further use of its handle and before it is freed: leaking a pending save leaks its handle, it
/// never lets two threads use one communicator.
pub struct Comm {
    raw: *mut sys::shardpoint_comm,
    // Owned by the C communicator (freed by its destroy callback); NULL for `single`.
    state: *mut CallbackState,
    // Asked of the C handle once, at creation: `rank()` and `size()` never touch the handle, so
    // they cannot race with a background commit still using it (see `async_save`).
    rank: i32,
    size: i32,
    // The C save whose asynchronous commit may still be running on this communicator (NULL:
    // none). Set by `start_async` when a commit starts, cleared by `end_async` when its
    // PendingSave waited for it or was dropped. Still set when we are used again means that
    // PendingSave was leaked: its handle is then never freed and nobody else can reach it, so
    // `settle` may wait on it.
    async_save: *mut sys::shardpoint_save,
}

// SAFETY: the C ABI lets a handle be used from any thread, one thread at a time; the callback
// state holds a `Send` object (`Collectives: Send`) and is only touched by collective calls, which
// take `&mut Comm` and run the callbacks on their own thread (or on the library's background
// thread during an asynchronous commit, which holds the `&mut Comm` or is waited for by `settle`
// before the next use). `async_save` is only used through `&mut self`, and a save handle may be
// waited on from any thread. Not Sync: see the doc comment.
unsafe impl Send for Comm {}

impl Comm {
    /// A communicator for a job of one process (rank 0 of 1).
    pub fn single() -> Result<Comm> {
        let mut raw = ptr::null_mut();
        // SAFETY: valid out-pointer.
        check(unsafe { sys::shardpoint_comm_new_single(&mut raw) })?;
        Ok(Comm::owning(raw, ptr::null_mut()))
    }

    /// A communicator over collectives written in Rust (`shardpoint_comm_new_callbacks`).
    pub fn from_collectives<C: Collectives + 'static>(collectives: C) -> Result<Comm> {
        let rank = collectives.rank();
        let size = collectives.size();
        let state = Box::into_raw(Box::new(CallbackState {
            inner: Box::new(collectives),
            size: usize::try_from(size).unwrap_or(0),
            last_error: None,
        }));
        let mut cb = sys::SHARDPOINT_COMM_CALLBACKS_INIT;
        // SAFETY: valid struct pointer; fills the defaults of this version.
        let rc = unsafe { sys::shardpoint_comm_callbacks_init(&mut cb, sys::SHARDPOINT_COMM_CALLBACKS_VERSION) };
        if rc != sys::SHARDPOINT_OK {
            let err = Error::from_last(rc);
            // SAFETY: not handed to the library.
            drop(unsafe { Box::from_raw(state) });
            return Err(err);
        }
        cb.rank = rank;
        cb.size = size;
        cb.user = state.cast::<c_void>();
        cb.gather = Some(gather_trampoline);
        cb.broadcast = Some(broadcast_trampoline);
        cb.destroy = Some(destroy_trampoline);
        let mut raw = ptr::null_mut();
        // SAFETY: the struct is copied; `user` stays valid until destroy.
        let rc = unsafe { sys::shardpoint_comm_new_callbacks(&mut raw, &cb) };
        if rc != sys::SHARDPOINT_OK {
            let err = Error::from_last(rc);
            // SAFETY: on failure the library keeps no reference and never calls destroy.
            drop(unsafe { Box::from_raw(state) });
            return Err(err);
        }
        Ok(Comm::owning(raw, state))
    }

    /// Takes ownership of a new C communicator (and of its callback state, NULL for `single`).
    fn owning(raw: *mut sys::shardpoint_comm, state: *mut CallbackState) -> Comm {
        let (mut rank, mut size) = (0, 0);
        // SAFETY: valid handle, used by this thread only; cannot fail for a non-NULL communicator.
        let rc = unsafe { sys::shardpoint_comm_rank(raw, &mut rank) };
        debug_assert_eq!(rc, 0);
        // SAFETY: as above.
        let rc = unsafe { sys::shardpoint_comm_size(raw, &mut size) };
        debug_assert_eq!(rc, 0);
        Comm { raw, state, rank, size, async_save: ptr::null_mut() }
    }

    /// This communicator's rank.
    pub fn rank(&self) -> i32 {
        self.rank
    }

    /// The number of ranks.
    pub fn size(&self) -> i32 {
        self.size
    }

    /// The C handle, for the calls that store it (`shardpoint_save_new`, `shardpoint_load_new`):
    /// they do not use it; what does goes through `collective` or `start_async`.
    pub(crate) fn as_ptr(&self) -> *mut sys::shardpoint_comm {
        self.raw
    }

    /// Runs one collective C call; on failure, adds the text of a failed callback to the error.
    /// `&mut self`: no other collective can run on this communicator meanwhile.
    pub(crate) fn collective(&mut self, call: impl FnOnce() -> c_int) -> Result<()> {
        self.settle();
        self.set_callback_error(None);
        let rc = call();
        self.outcome(rc)
    }

    /// Starts the asynchronous commit of `save` (`call`: `shardpoint_save_commit_async`), whose
    /// callbacks will run on the library's background thread. On success the caller must keep
    /// `&mut self` borrowed until it calls `end_async` after waiting for or freeing `save`.
    pub(crate) fn start_async(&mut self, save: *mut sys::shardpoint_save, call: impl FnOnce() -> c_int) -> Result<()> {
        self.settle();
        self.set_callback_error(None);
        // The call only copies and starts the thread: no callback runs on this one.
        check(call())?;
        self.async_save = save;
        Ok(())
    }

    /// The asynchronous commit of `async_save` ended (waited for, or its handle freed):
    /// `rc` is its outcome, or `SHARDPOINT_OK` when nobody asks for one. Must run right after the
    /// C call that returned `rc`, on its thread (the library's last error is per thread).
    pub(crate) fn end_async(&mut self, rc: c_int) -> Result<()> {
        self.async_save = ptr::null_mut();
        self.outcome(rc)
    }

    /// The result of a collective C call that returned `rc`, with the text of a failed callback.
    fn outcome(&mut self, rc: c_int) -> Result<()> {
        if rc == sys::SHARDPOINT_OK {
            return Ok(());
        }
        let err = Error::from_last(rc);
        match self.set_callback_error(None) {
            Some(cause) => Err(err.with_context(&format!("callback: {cause}"))),
            None => Err(err),
        }
    }

    /// Waits for the asynchronous commit of a leaked PendingSave that may still use this
    /// communicator (see `async_save`); its outcome is lost with it.
    fn settle(&mut self) {
        if self.async_save.is_null() {
            return;
        }
        // SAFETY: a live handle (a leaked PendingSave never frees it) that nothing else uses: the
        // PendingSave that owned it held `&mut self` until it was leaked, and a leaked value is
        // never touched again (its Drop cannot run once its borrow of this Comm has ended).
        // shardpoint_save_wait is meant to be called while the background thread runs.
        let _ = unsafe { sys::shardpoint_save_wait(self.async_save) };
        self.async_save = ptr::null_mut();
        // Whatever a callback of that save left behind is not the next call's.
        self.set_callback_error(None);
    }

    fn set_callback_error(&mut self, value: Option<String>) -> Option<String> {
        if self.state.is_null() {
            return None;
        }
        // SAFETY: the state lives until the communicator is freed; `&mut self` excludes every
        // other user, and this runs outside of any callback (before or after the C call).
        unsafe { std::mem::replace(&mut (*self.state).last_error, value) }
    }
}

impl Drop for Comm {
    fn drop(&mut self) {
        // A leaked PendingSave's commit may still call back into the state freed below.
        self.settle();
        // SAFETY: owned handle; no Save or Load borrows it any more, and no asynchronous commit
        // runs on it (settled). Calls destroy_trampoline.
        unsafe { sys::shardpoint_comm_free(self.raw) };
    }
}

impl std::fmt::Debug for Comm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Comm").field("rank", &self.rank).field("size", &self.size).finish()
    }
}

/// Runs a callback body, turning errors and panics (which must not unwind into C) into a nonzero
/// return code and a remembered message.
unsafe fn guarded(user: *mut c_void, body: impl FnOnce(&mut CallbackState) -> CollectiveResult) -> c_int {
    let state = &mut *user.cast::<CallbackState>();
    let outcome = catch_unwind(AssertUnwindSafe(|| body(&mut *state)));
    let message = match outcome {
        Ok(Ok(())) => return 0,
        Ok(Err(e)) => e.to_string(),
        Err(panic) => match panic.downcast_ref::<&str>() {
            Some(s) => format!("panicked: {s}"),
            None => match panic.downcast_ref::<String>() {
                Some(s) => format!("panicked: {s}"),
                None => "panicked".to_string(),
            },
        },
    };
    state.last_error = Some(message);
    1
}

/// A slice over C memory; empty when `len` is 0 (the pointer may then be NULL).
unsafe fn bytes<'x>(p: *const c_void, len: usize) -> &'x [u8] {
    if len == 0 || p.is_null() {
        &[]
    } else {
        std::slice::from_raw_parts(p.cast::<u8>(), len)
    }
}

unsafe fn bytes_mut<'x>(p: *mut c_void, len: usize) -> &'x mut [u8] {
    if len == 0 || p.is_null() {
        &mut []
    } else {
        std::slice::from_raw_parts_mut(p.cast::<u8>(), len)
    }
}

fn too_long() -> Box<dyn std::error::Error + Send + Sync> {
    Box::new(Error::new(ErrorCode::Range, "collective buffer does not fit in memory"))
}

unsafe extern "C" fn gather_trampoline(user: *mut c_void, send: *const c_void, len: u64, recv: *mut c_void) -> c_int {
    guarded(user, |state| {
        let len = usize::try_from(len).map_err(|_| too_long())?;
        let total = len.checked_mul(state.size).ok_or_else(too_long)?;
        let send = bytes(send, len);
        let recv = if recv.is_null() { None } else { Some(bytes_mut(recv, total)) };
        state.inner.gather(send, recv)
    })
}

unsafe extern "C" fn broadcast_trampoline(user: *mut c_void, buf: *mut c_void, len: u64) -> c_int {
    guarded(user, |state| {
        let len = usize::try_from(len).map_err(|_| too_long())?;
        state.inner.broadcast(bytes_mut(buf, len))
    })
}

unsafe extern "C" fn destroy_trampoline(user: *mut c_void) {
    // A panicking Drop of the host's collectives must not unwind into C.
    let _ = catch_unwind(AssertUnwindSafe(|| drop(Box::from_raw(user.cast::<CallbackState>()))));
}
