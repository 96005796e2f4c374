//! Asynchronous saves: the staging area their data is copied into ([`Staging`]), the commit that
//! runs in the background ([`PendingSave`]), and the error that gives the save back when it could
//! not start ([`CommitAsyncError`]).

use std::fmt;
use std::panic::resume_unwind;
use std::ptr;

use shardpoint_sys as sys;

use crate::comm::Comm;
use crate::error::{check, Error, ErrorCode, Result};
use crate::progress::ProgressSlot;
use crate::save::Save;

/// Host memory that [`Save::commit_async`] copies a rank's data into before writing it in the
/// background (`shardpoint_staging`).
///
/// Allocate one per rank, once, and reuse it save after save: its pages are faulted in at
/// creation (on huge pages where the kernel gives them, locked in memory where allowed), so that a
/// save's copy runs at memory speed. Its capacity must be at least [`Save::staging_size`] of each
/// save that uses it.
///
/// An area serves one save at a time: `commit_async` on an area that an earlier asynchronous save
/// still uses first waits for that save to end, so saves never queue up without bound. Dropping
/// the area likewise waits for a save still using it (which only a leaked [`PendingSave`] can be:
/// a live one borrows the area).
///
/// `Staging` is `Send` and `Sync`: it may be shared (`&Staging`, `Arc<Staging>`) by threads that
/// save in turn, and a `PendingSave` borrowing it may move to another thread. Each rank still
/// needs an area of its own: two ranks of one job on one area would wait for each other forever
/// (the second rank's `commit_async` waits for the first rank's save, whose collectives wait for
/// the second rank).
pub struct Staging {
    raw: *mut sys::shardpoint_staging,
    capacity: u64,
}

// SAFETY: Send: the area is a block of memory and its bookkeeping, owned by the C handle; it may
// be freed on any thread (shardpoint_staging_free waits, under the area's own mutex, for the save
// using it to release it).
// Sync: through `&Staging` the binding only reads `capacity` (cached here) and passes the handle
// to shardpoint_save_commit_async, whose contract is made for several users of one area: a save
// acquires the area before copying into it and its background thread releases it when the commit
// ends, and a second commit_async meanwhile waits for that release. Acquire and release take the
// area's mutex (cpp/src/staging.cpp), so concurrent commit_async calls on one area from several
// threads serialize; the bytes are written only by the save holding the area. Nothing else
// reaches the handle: freeing needs the owned value, which no borrow outlives.
unsafe impl Send for Staging {}
// SAFETY: see above.
unsafe impl Sync for Staging {}

impl Staging {
    /// An area of `capacity` bytes (`ErrorCode::NoMem` when it cannot be had).
    pub fn new(capacity: u64) -> Result<Staging> {
        let mut raw = ptr::null_mut();
        // SAFETY: valid out-pointer.
        check(unsafe { sys::shardpoint_staging_new(&mut raw, capacity) })?;
        let mut capacity = 0;
        // SAFETY: the handle just made, used by this thread only.
        let rc = unsafe { sys::shardpoint_staging_capacity(raw, &mut capacity) };
        if rc != sys::SHARDPOINT_OK {
            let err = Error::from_last(rc);
            // SAFETY: owned handle, not used by any save.
            unsafe { sys::shardpoint_staging_free(raw) };
            return Err(err);
        }
        Ok(Staging { raw, capacity })
    }

    /// The area's size in bytes.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    pub(crate) fn as_ptr(&self) -> *mut sys::shardpoint_staging {
        self.raw
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        // SAFETY: owned handle, freed once; no PendingSave borrows it any more. Waits for a leaked
        // one's commit to release it.
        unsafe { sys::shardpoint_staging_free(self.raw) };
    }
}

impl fmt::Debug for Staging {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Staging").field("capacity", &self.capacity).finish()
    }
}

/// A save committing in the background, made by [`Save::commit_async`].
///
/// Its data was copied into the staging area before `commit_async` returned, so it borrows no
/// data. It still borrows what the library's background thread uses until the commit ends:
/// the communicator (`'c`, whose collectives run on that thread) and the staging area (`'s`).
/// [`PendingSave::wait`] gives the outcome; dropping a pending save also waits for it (as
/// `shardpoint_save_free` does) but loses the outcome; [`PendingSave::cancel`] asks it to stop.
///
/// A pending save is `Send` (another thread may wait for it) but not `Sync`.
///
/// Leaking one (`std::mem::forget`) is safe but leaks its handle: the communicator then waits for
/// the commit before its next collective and before it is freed, and the staging area before it
/// is reused or freed.
pub struct PendingSave<'c, 's> {
    raw: *mut sys::shardpoint_save,
    comm: Option<&'c mut Comm>,
    _staging: &'s Staging,
    // The closure the background thread reports to ('static: see Save::set_async_progress);
    // dropped after the handle (fields drop after `drop`).
    progress: Option<ProgressSlot<'static>>,
}

// SAFETY: moving a PendingSave to another thread moves what it holds:
// - the save handle: the thread rules let it be used from any thread, one at a time; PendingSave
//   is not Sync, so its `&self` methods (poll, cancel) run on the thread that owns it, and the
//   library's background thread is the library's own business (wait, poll and cancel are made to
//   be called while it runs);
// - the communicator: borrowed exclusively (`&'c mut Comm`, and Comm is Send); only the
//   background thread uses it until `wait` or `drop` has waited;
// - the staging area: `&'s Staging`, and Staging is Sync;
// - the progress closure: `ProgressSlot` is Send, and only the background thread calls it.
unsafe impl Send for PendingSave<'_, '_> {}

impl<'c, 's> PendingSave<'c, 's> {
    /// Takes over the handle of a save whose asynchronous commit was just started, with what its
    /// background thread uses.
    pub(crate) fn started(
        raw: *mut sys::shardpoint_save,
        comm: Option<&'c mut Comm>,
        staging: &'s Staging,
        progress: Option<ProgressSlot<'static>>,
    ) -> PendingSave<'c, 's> {
        PendingSave { raw, comm, _staging: staging, progress }
    }

    /// Blocks until the commit ends and returns its outcome, the one [`Save::commit`] would have
    /// returned (collective: every rank gets the same); ends the borrows of the communicator and
    /// the staging area.
    ///
    /// # Panics
    /// When the closure of [`Save::set_async_progress`] panicked on the background thread: the
    /// commit was canceled, and the panic resumes here.
    pub fn wait(mut self) -> Result<()> {
        // SAFETY: valid handle, with an asynchronous commit started; this thread is its only user.
        let rc = unsafe { sys::shardpoint_save_wait(self.raw) };
        // Read the outcome at once: the library's last error is per thread.
        let result = match self.comm.as_deref_mut() {
            Some(comm) => comm.end_async(rc),
            None => check(rc),
        };
        // The background thread has ended (wait joined it): nothing calls the closure any more.
        if let Some(panic) = self.progress.as_mut().and_then(ProgressSlot::take_panic) {
            resume_unwind(panic); // `self` drops while unwinding: shardpoint_save_free
        }
        result
        // `self` drops here: shardpoint_save_free, which returns at once.
    }

    /// Whether the commit has ended: [`PendingSave::wait`] then returns at once.
    pub fn is_done(&self) -> bool {
        let mut finished = 0;
        // SAFETY: valid handle with a started commit; PendingSave is not Sync, so no other thread
        // uses the handle meanwhile (but the library's own background thread).
        let rc = unsafe { sys::shardpoint_save_poll(self.raw, &mut finished) };
        debug_assert_eq!(rc, sys::SHARDPOINT_OK);
        finished != 0
    }

    /// Asks the commit to stop and returns at once. Unless this rank's data was already written,
    /// the save then fails with `ErrorCode::Canceled` (the other ranks with `Rank`), nothing is
    /// committed and the checkpoint that was in the directory stays; once the data is written it
    /// commits. [`PendingSave::wait`] says which.
    pub fn cancel(&self) {
        // SAFETY: as in `is_done`. Cannot fail for a handle with a started commit.
        let rc = unsafe { sys::shardpoint_save_cancel(self.raw) };
        debug_assert_eq!(rc, sys::SHARDPOINT_OK);
    }
}

impl Drop for PendingSave<'_, '_> {
    fn drop(&mut self) {
        // SAFETY: owned handle, freed once; waits for the background thread, which then uses
        // neither the communicator, the staging area nor the closure any more.
        unsafe { sys::shardpoint_save_free(self.raw) };
        if let Some(comm) = self.comm.as_deref_mut() {
            // Nothing asks for the outcome (wait did, if it ran): OK records only the end.
            let _ = comm.end_async(sys::SHARDPOINT_OK);
        }
        // A panic of the closure is dropped with it: a destructor does not resume panics.
    }
}

impl fmt::Debug for PendingSave<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingSave").field("done", &self.is_done()).finish_non_exhaustive()
    }
}

/// [`Save::commit_async`] did not start: the error, and the save, which can still be committed
/// ([`Save::commit`], or `commit_async` with a larger area).
///
/// ```no_run
/// use shardpoint::{ErrorCode, Save, SaveOptions, Staging};
/// # fn main() -> shardpoint::Result<()> {
/// let w = vec![0f32; 1024];
/// let staging = Staging::new(64)?; // too small
/// let mut save = Save::new("/tmp/ckpt", None, &SaveOptions::default())?;
/// save.add_tensor("w", &[1024], &[0], &[1024], &w)?;
/// let outcome = match save.commit_async(&staging) {
///     Ok(pending) => pending.wait(),
///     Err(e) if e.kind() == ErrorCode::Range => e.into_save().commit(),
///     Err(e) => Err(e.into()),
/// };
/// outcome
/// # }
/// ```
pub struct CommitAsyncError<'c, 'd> {
    pub(crate) save: Save<'c, 'd>,
    pub(crate) error: Error,
}

impl<'c, 'd> CommitAsyncError<'c, 'd> {
    /// Why the commit did not start.
    pub fn error(&self) -> &Error {
        &self.error
    }

    /// The error's code.
    pub fn kind(&self) -> ErrorCode {
        self.error.kind()
    }

    /// The save, unchanged (its data still borrowed), to commit another way.
    pub fn into_save(self) -> Save<'c, 'd> {
        self.save
    }

    /// The save and the error.
    pub fn into_parts(self) -> (Save<'c, 'd>, Error) {
        (self.save, self.error)
    }
}

/// The error alone (the save is dropped, writing nothing): lets `?` turn it into a plain
/// [`Error`] in functions that return [`crate::Result`].
impl From<CommitAsyncError<'_, '_>> for Error {
    fn from(e: CommitAsyncError<'_, '_>) -> Error {
        e.error
    }
}

impl fmt::Debug for CommitAsyncError<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CommitAsyncError").field("error", &self.error).finish_non_exhaustive()
    }
}

impl fmt::Display for CommitAsyncError<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the asynchronous commit did not start: {}", self.error)
    }
}

/// The message says the error's (so it is not repeated as a `source`).
impl std::error::Error for CommitAsyncError<'_, '_> {}
