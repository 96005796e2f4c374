//! Progress reports and cancellation (`shardpoint_*_set_progress`): a Rust closure behind the C
//! callback, with panics caught at the C boundary and resumed after the C call returns.

use std::any::Any;
use std::ffi::{c_int, c_void};
use std::ops::ControlFlow;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::NonNull;

use shardpoint_sys as sys;

/// What a long operation is doing when it reports [`Progress`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// A save writing this rank's data (raw bytes of its chunks): [`crate::Save::commit`].
    Write,
    /// A load reading this rank's requests (bytes read; raw bytes for compressed data):
    /// [`crate::Load::execute`].
    Read,
    /// A verify checking stored bytes: [`crate::Reader::verify_with_progress`].
    Verify,
    /// A phase newer than this binding.
    Other(i32),
}

impl Phase {
    pub fn from_raw(phase: i32) -> Phase {
        match phase {
            sys::SHARDPOINT_PROGRESS_WRITE => Phase::Write,
            sys::SHARDPOINT_PROGRESS_READ => Phase::Read,
            sys::SHARDPOINT_PROGRESS_VERIFY => Phase::Verify,
            other => Phase::Other(other),
        }
    }

    pub fn raw(self) -> i32 {
        match self {
            Phase::Write => sys::SHARDPOINT_PROGRESS_WRITE,
            Phase::Read => sys::SHARDPOINT_PROGRESS_READ,
            Phase::Verify => sys::SHARDPOINT_PROGRESS_VERIFY,
            Phase::Other(p) => p,
        }
    }
}

/// One progress report: `done` of `total` bytes of `phase` are through on this rank.
///
/// An operation reports once at its start (`done` 0), then at most every 50 ms, then once with
/// `done == total` when every byte is through (for a save: after the data file's fsync). `done`
/// never decreases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub phase: Phase,
    pub done: u64,
    pub total: u64,
}

/// What the C callback's `user` pointer points at: the closure, and the payload of a panic it
/// raised (resumed by the caller of the C operation once that returns).
pub(crate) struct ProgressState<F> {
    f: F,
    panic: Option<Box<dyn Any + Send>>,
}

impl<F: FnMut(Progress) -> ControlFlow<()>> ProgressState<F> {
    pub(crate) fn new(f: F) -> ProgressState<F> {
        ProgressState { f, panic: None }
    }

    /// The C callback that runs this state's closure, to pass along with a pointer to it.
    pub(crate) fn callback(&self) -> sys::shardpoint_progress_callback {
        trampoline::<F>
    }

    pub(crate) fn take_panic(&mut self) -> Option<Box<dyn Any + Send>> {
        self.panic.take()
    }
}

/// The C side of every progress callback: runs the closure and turns `Break` into a cancel. A
/// panic must not unwind into C: it is caught, remembered and cancels the operation; once a
/// closure has panicked it is not called again.
///
/// # Safety
/// `user` must point at a live `ProgressState<F>` that nothing else accesses during the call
/// (the library calls it on the thread of the operation, or for an asynchronous commit on its
/// background thread, one call at a time).
unsafe extern "C" fn trampoline<F: FnMut(Progress) -> ControlFlow<()>>(
    user: *mut c_void,
    phase: i32,
    done: u64,
    total: u64,
) -> c_int {
    // SAFETY: see the function's contract, which every installer of this callback upholds.
    let state = unsafe { &mut *user.cast::<ProgressState<F>>() };
    if state.panic.is_some() {
        return 1;
    }
    let report = Progress { phase: Phase::from_raw(phase), done, total };
    match catch_unwind(AssertUnwindSafe(|| (state.f)(report))) {
        Ok(ControlFlow::Continue(())) => 0,
        Ok(ControlFlow::Break(())) => 1,
        Err(payload) => {
            state.panic = Some(payload);
            1
        }
    }
}

/// The closure of a [`crate::Save`] or [`crate::Load`]: `Send`, because they are, and because an
/// asynchronous commit calls it on the library's background thread.
pub(crate) type SendClosure<'a> = Box<dyn FnMut(Progress) -> ControlFlow<()> + Send + 'a>;

/// A boxed `ProgressState` owned by a save or load, at a stable address (its `user` pointer)
/// until it is dropped, which the owner does only after freeing its C handle or after the C
/// handle was given another callback.
///
/// It holds the box as a raw pointer, not as a `Box`: the library reaches the state through that
/// pointer while the owner (and so this slot) is moved around, which a `Box` (a unique owner)
/// would not allow.
pub(crate) struct ProgressSlot<'a> {
    state: NonNull<ProgressState<SendClosure<'a>>>,
}

// SAFETY: the slot owns its state, whose fields are Send: the closure (`+ Send`) and the panic
// payload (`dyn Any + Send`). The library touches it only during the owner's operation, on the
// thread that runs it (for `Save::commit_async`, the library's background thread, until the
// PendingSave owning the slot has waited for it).
unsafe impl Send for ProgressSlot<'_> {}

impl<'a> ProgressSlot<'a> {
    pub(crate) fn new(f: impl FnMut(Progress) -> ControlFlow<()> + Send + 'a) -> ProgressSlot<'a> {
        let state: Box<ProgressState<SendClosure<'a>>> = Box::new(ProgressState::new(Box::new(f)));
        ProgressSlot { state: NonNull::from(Box::leak(state)) }
    }

    /// The callback and `user` pointer to give the library.
    pub(crate) fn raw(&self) -> (sys::shardpoint_progress_callback, *mut c_void) {
        (trampoline::<SendClosure<'a>>, self.state.as_ptr().cast())
    }

    /// The payload of a panic of the closure, once the C operation has returned.
    pub(crate) fn take_panic(&mut self) -> Option<Box<dyn Any + Send>> {
        // SAFETY: the state is alive (owned by self), and the library is not calling back now:
        // `&mut self` is only available outside the owner's C operation.
        unsafe { (*self.state.as_ptr()).take_panic() }
    }
}

impl Drop for ProgressSlot<'_> {
    fn drop(&mut self) {
        // SAFETY: leaked in `new` and freed once, here; the library no longer holds the pointer
        // (see the type's comment). A panicking Drop of the closure's captures unwinds through
        // Rust only.
        drop(unsafe { Box::from_raw(self.state.as_ptr()) });
    }
}
