//! Safe Rust API for shardpoint, a library that saves the shards many processes ("ranks") hold of
//! the same tensors as one checkpoint directory and loads any box of any tensor back.
//!
//! This crate only translates the C ABI (`shardpoint.h`, through `shardpoint-sys`) into Rust:
//! handles with `Drop`, `Result<_, Error>` carrying the C code, and lifetimes that keep the memory
//! the library reads at commit (or writes at execute) borrowed until then. An asynchronous save
//! ([`Save::commit_async`]) copies the data into a [`Staging`] area and returns a [`PendingSave`]
//! that borrows the communicator but no longer the data.
//!
//! ```no_run
//! use shardpoint::{Reader, Save, SaveOptions};
//! # fn main() -> shardpoint::Result<()> {
//! let weights: Vec<f32> = (0..12).map(|i| i as f32).collect();
//! let mut save = Save::new("/tmp/ckpt", None, &SaveOptions::default())?;
//! save.add_tensor("w", &[3, 4], &[0, 0], &[3, 4], &weights)?;
//! save.set_metadata("step", "10")?;
//! save.commit()?; // `weights` is borrowed until here
//!
//! let reader = Reader::open("/tmp/ckpt")?;
//! let mut row = [0f32; 4];
//! reader.read_tensor("w", &[1, 0], &[1, 4], &mut row)?;
//! assert_eq!(row, [4.0, 5.0, 6.0, 7.0]);
//! # Ok(()) }
//! ```

mod comm;
mod dtype;
mod error;
mod layout;
mod load;
mod local;
mod progress;
mod reader;
mod save;
mod staging;
#[cfg(feature = "ndarray")]
mod array;

pub use comm::{CollectiveResult, Collectives, Comm};
pub use dtype::{as_bytes, as_bytes_mut, Dtype, Element, Pod};
pub use error::{Error, ErrorCode, Result};
pub use layout::Strided;
pub use load::Load;
pub use local::{LocalGroup, LocalRank};
pub use progress::{Phase, Progress};
pub use reader::{ChunkInfo, EntryInfo, EntryKind, LoadOptions, Reader, StorageInfo, Transform};
pub use save::{Codec, Save, SaveOptions, TensorChunk};
pub use staging::{CommitAsyncError, PendingSave, Staging};

/// The raw C declarations, for what this crate does not wrap.
pub use shardpoint_sys as sys;

// What may cross threads, checked at compile time: a save or load may be committed or executed on
// another thread than the one that built it, a pending save waited for on another thread, a
// reader serves several threads at once, and so may a staging area (saves take it in turn), a
// communicator moves but is not shared (its doc comment says why, and a compile_fail example
// checks that it is not Sync).
const _: fn() = || {
    fn assert_send<T: Send>() {}
    fn assert_sync<T: Sync>() {}
    assert_send::<Save<'static, 'static>>();
    assert_send::<PendingSave<'static, 'static>>();
    assert_send::<Staging>();
    assert_sync::<Staging>();
    assert_send::<Load<'static>>();
    assert_send::<Reader>();
    assert_sync::<Reader>();
    assert_send::<Comm>();
    assert_send::<LocalRank>();
    assert_send::<Error>();
    assert_sync::<Error>();
};

// bindings/rust/README.md's examples compile as doctests. Only in the repository: the packaged
// crate lacks that file, and cfg(doctest) is set only when rustdoc collects doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeExamples;

/// Version of the loaded library ("0.1.0").
pub fn version() -> &'static str {
    // SAFETY: static storage, never NULL.
    unsafe { std::ffi::CStr::from_ptr(sys::shardpoint_version_string()) }.to_str().unwrap_or("")
}

/// Version of the loaded library as `major * 10000 + minor * 100 + patch`.
pub fn version_number() -> u32 {
    // SAFETY: plain call.
    unsafe { sys::shardpoint_version_number() }
}
