//! Asynchronous saves: `Staging`, `Save::commit_async`, `PendingSave`.

mod common;

use std::ops::ControlFlow;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::ThreadId;

use common::*;
use shardpoint::{Comm, ErrorCode, LocalGroup, Phase, Reader, Save, SaveOptions, Staging};

/// Elements of the big tensor: 16 MiB of f32, so that its write takes a while.
const ELEMS: usize = 1 << 22;

fn big(value: f32) -> Vec<f32> {
    (0..ELEMS).map(|i| value + (i % 1021) as f32).collect()
}

fn read_f32(dir: &Path, name: &str) -> Vec<f32> {
    Reader::open(dir).unwrap().read_tensor_vec::<f32>(name).unwrap().0
}

#[test]
fn data_changed_after_commit_async_is_not_in_the_checkpoint() {
    let t = tmp();
    let dir = ckpt(&t, "a");
    let mut w = big(1.0);
    let mut steps: Vec<i64> = values(10);
    let mut blob = b"before".to_vec();
    let mut save = Save::new(&dir, None, &SaveOptions::default()).unwrap();
    save.add_tensor("w", &[ELEMS as u64], &[0], &[ELEMS as u64], &w).unwrap();
    save.add_tensor("steps", &[10], &[0], &[10], &steps).unwrap();
    save.add_bytes("blob", &blob).unwrap();
    save.set_metadata("step", "7").unwrap();
    // Each item 64-byte aligned: w (16 MiB), then steps (80 bytes), then the blob.
    assert_eq!(save.staging_size(), (ELEMS * 4 + 128 + 6) as u64);
    let staging = Staging::new(save.staging_size()).unwrap();
    assert_eq!(staging.capacity(), save.staging_size());

    let pending = save.commit_async(&staging).unwrap();
    // The data's borrow ended with commit_async: change all of it while the commit runs.
    w.iter_mut().for_each(|x| *x = -1.0);
    steps.iter_mut().for_each(|x| *x = 0);
    blob.copy_from_slice(b"after!");
    drop(blob);
    pending.wait().unwrap();

    assert!(read_f32(&dir, "w") == big(1.0));
    let reader = Reader::open(&dir).unwrap();
    assert_eq!(reader.read_tensor_vec::<i64>("steps").unwrap().0, values::<i64>(10));
    assert_eq!(reader.read_bytes_vec("blob").unwrap(), b"before");
    assert_eq!(reader.metadata_get("step").unwrap(), "7");
    assert_eq!(w[0], -1.0);
}

#[test]
fn wait_gives_exists_for_a_second_save_without_overwrite() {
    let t = tmp();
    let dir = ckpt(&t, "exists");
    let first = vec![1u32; 8];
    let mut save = Save::new(&dir, None, &SaveOptions::default()).unwrap();
    save.add_tensor("x", &[8], &[0], &[8], &first).unwrap();
    save.commit().unwrap();

    let second = vec![2u32; 8];
    let staging = Staging::new(1 << 10).unwrap();
    let mut save = Save::new(&dir, None, &SaveOptions::default()).unwrap();
    save.add_tensor("x", &[8], &[0], &[8], &second).unwrap();
    let pending = save.commit_async(&staging).unwrap();
    let e = expect_err(pending.wait(), ErrorCode::Exists);
    assert!(!e.message().is_empty());
    assert_eq!(Reader::open(&dir).unwrap().read_tensor_vec::<u32>("x").unwrap().0, first);

    // With overwrite, on the same area.
    let mut save = Save::new(&dir, None, &SaveOptions::new().overwrite(true)).unwrap();
    save.add_tensor("x", &[8], &[0], &[8], &second).unwrap();
    save.commit_async(&staging).unwrap().wait().unwrap();
    assert_eq!(Reader::open(&dir).unwrap().read_tensor_vec::<u32>("x").unwrap().0, second);
}

#[test]
fn a_too_small_area_gives_range_and_the_save_back() {
    let t = tmp();
    let dir = ckpt(&t, "range");
    let w: Vec<f64> = values(100);
    let mut save = Save::new(&dir, None, &SaveOptions::default()).unwrap();
    save.add_tensor("w", &[100], &[0], &[100], &w).unwrap();
    let need = save.staging_size();
    assert_eq!(need, 800);
    let small = Staging::new(need - 1).unwrap();
    let e = save.commit_async(&small).expect_err("the data does not fit");
    assert_eq!(e.kind(), ErrorCode::Range);
    assert_eq!(e.error().code(), ErrorCode::Range.raw());
    assert!(e.error().message().contains("staging"), "{e}");
    assert!(e.to_string().contains("SHARDPOINT_ERANGE"), "{e}");
    assert!(format!("{e:?}").contains("CommitAsyncError"));
    expect_err(Reader::open(&dir), ErrorCode::NotFound); // nothing was started

    // The save comes back intact: committed asynchronously on an area that fits...
    let (save, error) = e.into_parts();
    assert_eq!(error.kind(), ErrorCode::Range);
    let fits = Staging::new(need).unwrap();
    save.commit_async(&fits).unwrap().wait().unwrap();
    assert_eq!(Reader::open(&dir).unwrap().read_tensor_vec::<f64>("w").unwrap().0, w);

    // ...or synchronously.
    let dir = ckpt(&t, "range-sync");
    let mut save = Save::new(&dir, None, &SaveOptions::default()).unwrap();
    save.add_tensor("w", &[100], &[0], &[100], &w).unwrap();
    let e = save.commit_async(&small).unwrap_err();
    e.into_save().commit().unwrap();
    assert_eq!(Reader::open(&dir).unwrap().read_tensor_vec::<f64>("w").unwrap().0, w);

    // With `?`, the error converts into a plain Error.
    let try_it = || -> shardpoint::Result<()> {
        let mut save = Save::new(ckpt(&t, "range-q"), None, &SaveOptions::default())?;
        save.add_tensor("w", &[100], &[0], &[100], &w)?;
        save.commit_async(&small)?.wait()
    };
    expect_err(try_it(), ErrorCode::Range);
}

#[test]
fn cancel_gives_canceled_and_keeps_the_previous_checkpoint() {
    let t = tmp();
    let dir = ckpt(&t, "cancel");
    let old = big(1.0);
    let mut save = Save::new(&dir, None, &SaveOptions::default()).unwrap();
    save.add_tensor("w", &[ELEMS as u64], &[0], &[ELEMS as u64], &old).unwrap();
    save.commit().unwrap();
    let before = std::fs::read_dir(&dir).unwrap().count();

    // The closure holds the write at its first report until the cancel was asked for, so that
    // the cancel surely comes before the data is written.
    let (started_tx, started) = mpsc::channel::<()>();
    let (canceled, canceled_rx) = mpsc::channel::<()>();
    let new = big(2.0);
    let staging = Staging::new(ELEMS as u64 * 4).unwrap();
    let mut save = Save::new(&dir, None, &SaveOptions::new().overwrite(true)).unwrap();
    save.add_tensor("w", &[ELEMS as u64], &[0], &[ELEMS as u64], &new).unwrap();
    save.set_async_progress(move |p| {
        if p.done == 0 {
            let _ = started_tx.send(());
            let _ = canceled_rx.recv();
        }
        ControlFlow::Continue(())
    })
    .unwrap();
    let pending = save.commit_async(&staging).unwrap();
    started.recv().unwrap();
    assert!(!pending.is_done(), "the commit waits in its progress closure");
    pending.cancel();
    canceled.send(()).unwrap();
    let e = expect_err(pending.wait(), ErrorCode::Canceled);
    assert!(e.message().contains("cancel"), "{e}");

    assert!(read_f32(&dir, "w") == old, "the previous checkpoint stays");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), before, "the canceled save's files are removed");
}

#[test]
fn one_staging_area_serves_three_saves() {
    let t = tmp();
    let staging = Staging::new(ELEMS as u64 * 4).unwrap();
    let mut w = big(0.0);
    // Started one after the other without waiting: each commit_async waits until the save
    // before it released the area.
    let mut pending = Vec::new();
    for k in 0..3 {
        let mut save = Save::new(ckpt(&t, &format!("s{k}")), None, &SaveOptions::default()).unwrap();
        save.add_tensor("w", &[ELEMS as u64], &[0], &[ELEMS as u64], &w).unwrap();
        pending.push(save.commit_async(&staging).unwrap());
        w.iter_mut().for_each(|x| *x += 10.0); // the next step
    }
    for p in pending {
        p.wait().unwrap();
    }
    for k in 0..3 {
        assert!(read_f32(&ckpt(&t, &format!("s{k}")), "w") == big(10.0 * k as f32), "save {k}");
    }
    // And in turn, each waited for before the next.
    for k in 3..6 {
        let dir = ckpt(&t, &format!("s{k}"));
        let mut save = Save::new(&dir, None, &SaveOptions::default()).unwrap();
        save.add_tensor("w", &[ELEMS as u64], &[0], &[ELEMS as u64], &w).unwrap();
        let pending = save.commit_async(&staging).unwrap();
        w.iter_mut().for_each(|x| *x += 10.0);
        pending.wait().unwrap();
        assert!(read_f32(&dir, "w") == big(10.0 * k as f32), "save {k}");
    }
}

#[test]
fn ranks_commit_asynchronously() {
    let t = tmp();
    let dir = ckpt(&t, "ranks");
    let rows = 64usize;
    let cols = 4096usize;
    let full: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
    let main_thread = std::thread::current().id();
    let reports: Mutex<Vec<(i32, ThreadId, ThreadId)>> = Mutex::new(Vec::new());
    LocalGroup::try_run(4, |comm| {
        let r = comm.rank() as usize;
        let mine = rows / 4;
        let mut part = full[r * mine * cols..(r + 1) * mine * cols].to_vec();
        let mut save = Save::new(&dir, Some(comm), &SaveOptions::default())?;
        save.add_tensor("w", &[rows as u64, cols as u64], &[(r * mine) as u64, 0], &[mine as u64, cols as u64], &part)?;
        save.set_metadata("ranks", "4")?;
        let seen: Arc<Mutex<Option<ThreadId>>> = Arc::new(Mutex::new(None));
        let in_closure = Arc::clone(&seen);
        save.set_async_progress(move |p| {
            assert_eq!(p.phase, Phase::Write);
            *in_closure.lock().unwrap() = Some(std::thread::current().id());
            ControlFlow::Continue(())
        })?;
        let staging = Staging::new(save.staging_size())?; // one area per rank
        let pending = save.commit_async(&staging)?;
        part.iter_mut().for_each(|x| *x = f32::NAN);
        pending.wait()?;
        // The communicator is back: use it again.
        assert_eq!(comm.size(), 4);
        let reader = Reader::open_shared(&dir, &Default::default(), comm)?;
        assert_eq!(reader.storage_info()?.world_size, 4);
        let closure_thread = seen.lock().unwrap().expect("the closure ran");
        reports.lock().unwrap().push((r as i32, std::thread::current().id(), closure_thread));
        Ok(())
    })
    .unwrap();
    assert!(read_f32(&dir, "w") == full);
    let reports = reports.into_inner().unwrap();
    assert_eq!(reports.len(), 4);
    for (r, rank_thread, closure_thread) in reports {
        assert_ne!(rank_thread, closure_thread, "rank {r}: the closure runs on the library's thread");
        assert_ne!(main_thread, closure_thread);
    }
}

#[test]
fn a_rank_failing_fails_every_rank_asynchronously() {
    // Rank 1 offers a chunk overlapping rank 0's differently: every rank's wait fails.
    let t = tmp();
    let dir = ckpt(&t, "conflict");
    let results = LocalGroup::run(2, |comm| {
        let r = comm.rank() as u64;
        let data = vec![r as i32; 4];
        let mut save = Save::new(&dir, Some(comm), &SaveOptions::default()).unwrap();
        save.add_tensor("x", &[6], &[r * 2], &[4], &data).unwrap();
        let staging = Staging::new(save.staging_size()).unwrap();
        save.commit_async(&staging).unwrap().wait()
    });
    for res in results {
        let e = res.expect_err("the save conflicts");
        assert!(matches!(e.kind(), ErrorCode::Conflict | ErrorCode::Rank), "{e}");
    }
    expect_err(Reader::open(&dir), ErrorCode::NotFound);
}

#[test]
fn dropping_a_pending_save_waits_for_it() {
    let t = tmp();
    let dir = ckpt(&t, "drop");
    let staging = Staging::new(ELEMS as u64 * 4).unwrap();
    let mut w = big(3.0);
    let mut save = Save::new(&dir, None, &SaveOptions::default()).unwrap();
    save.add_tensor("w", &[ELEMS as u64], &[0], &[ELEMS as u64], &w).unwrap();
    let pending = save.commit_async(&staging).unwrap();
    w[0] = 0.0;
    drop(pending); // waits; the outcome is lost
    assert!(read_f32(&dir, "w") == big(3.0));
}

#[test]
fn a_pending_save_is_polled_and_waited_for_on_another_thread() {
    let t = tmp();
    let dir = ckpt(&t, "thread");
    let staging = Staging::new(ELEMS as u64 * 4).unwrap();
    let w = big(4.0);
    let mut save = Save::new(&dir, None, &SaveOptions::default()).unwrap();
    save.add_tensor("w", &[ELEMS as u64], &[0], &[ELEMS as u64], &w).unwrap();
    let pending = save.commit_async(&staging).unwrap();
    drop(w);
    std::thread::scope(|s| {
        s.spawn(move || {
            while !pending.is_done() {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            pending.wait()
        })
        .join()
        .unwrap()
    })
    .unwrap();
    assert!(read_f32(&dir, "w") == big(4.0));
}

#[test]
fn progress_runs_in_the_background_and_a_break_cancels() {
    let t = tmp();
    let dir = ckpt(&t, "progress");
    let staging = Staging::new(ELEMS as u64 * 4).unwrap();
    let w = big(5.0);

    let last = Arc::new(AtomicU64::new(0));
    let reported = Arc::clone(&last);
    let mut save = Save::new(&dir, None, &SaveOptions::default()).unwrap();
    save.add_tensor("w", &[ELEMS as u64], &[0], &[ELEMS as u64], &w).unwrap();
    save.set_async_progress(move |p| {
        assert!(p.done <= p.total);
        reported.store(p.done, Ordering::Relaxed);
        ControlFlow::Continue(())
    })
    .unwrap();
    save.commit_async(&staging).unwrap().wait().unwrap();
    assert_eq!(last.load(Ordering::Relaxed), ELEMS as u64 * 4, "the last report is the total");

    // Break(()) from the closure cancels the asynchronous commit.
    let stop = Arc::new(AtomicBool::new(true));
    let dir = ckpt(&t, "progress-break");
    let mut save = Save::new(&dir, None, &SaveOptions::default()).unwrap();
    save.add_tensor("w", &[ELEMS as u64], &[0], &[ELEMS as u64], &w).unwrap();
    let flag = Arc::clone(&stop);
    save.set_async_progress(move |_| {
        if flag.load(Ordering::Relaxed) {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .unwrap();
    expect_err(save.commit_async(&staging).unwrap().wait(), ErrorCode::Canceled);
    expect_err(Reader::open(&dir), ErrorCode::NotFound);

    // A 'static closure serves a synchronous commit too.
    let dir = ckpt(&t, "progress-sync");
    let calls = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&calls);
    let mut save = Save::new(&dir, None, &SaveOptions::default()).unwrap();
    save.add_tensor("w", &[ELEMS as u64], &[0], &[ELEMS as u64], &w).unwrap();
    save.set_async_progress(move |_| {
        counter.fetch_add(1, Ordering::Relaxed);
        ControlFlow::Continue(())
    })
    .unwrap();
    save.commit().unwrap();
    assert!(calls.load(Ordering::Relaxed) >= 2);
}

#[test]
fn a_panic_in_the_background_closure_resumes_in_wait() {
    let t = tmp();
    let dir = ckpt(&t, "panic");
    let staging = Staging::new(1 << 12).unwrap();
    let w = vec![1.0f32; 256];
    let mut save = Save::new(&dir, None, &SaveOptions::default()).unwrap();
    save.add_tensor("w", &[256], &[0], &[256], &w).unwrap();
    save.set_async_progress(|_| panic!("progress closure failed")).unwrap();
    let pending = save.commit_async(&staging).unwrap();
    let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| pending.wait())).unwrap_err();
    assert_eq!(panic.downcast_ref::<&str>(), Some(&"progress closure failed"));
    expect_err(Reader::open(&dir), ErrorCode::NotFound); // canceled: nothing committed
}

#[test]
fn a_borrowing_progress_closure_is_refused_by_commit_async() {
    let t = tmp();
    let dir = ckpt(&t, "borrowing");
    let staging = Staging::new(1 << 12).unwrap();
    let w = vec![1i16; 16];
    let mut calls = 0u32;
    let mut save = Save::new(&dir, None, &SaveOptions::default()).unwrap();
    save.add_tensor("w", &[16], &[0], &[16], &w).unwrap();
    save.set_progress(|_| {
        calls += 1;
        ControlFlow::Continue(())
    })
    .unwrap();
    let e = save.commit_async(&staging).unwrap_err();
    assert_eq!(e.kind(), ErrorCode::State);
    assert!(e.error().message().contains("set_async_progress"), "{e}");
    e.into_save().commit().unwrap(); // the closure still runs in a synchronous commit
    assert!(calls >= 2);
    assert_eq!(Reader::open(&dir).unwrap().read_tensor_vec::<i16>("w").unwrap().0, w);
}

#[test]
fn a_leaked_pending_save_is_waited_for_by_its_communicator_and_area() {
    // Leaking a pending save ends its borrows without waiting: the communicator waits for the
    // commit before its next use, the area before it is reused or freed.
    let t = tmp();
    let staging = Staging::new(ELEMS as u64 * 4).unwrap();
    let w = big(6.0);
    let mut comm = Comm::single().unwrap();
    let mut save = Save::new(ckpt(&t, "leaked"), Some(&mut comm), &SaveOptions::default()).unwrap();
    save.add_tensor("w", &[ELEMS as u64], &[0], &[ELEMS as u64], &w).unwrap();
    std::mem::forget(save.commit_async(&staging).unwrap());

    // The next collective on the communicator, with the same area.
    let mut save = Save::new(ckpt(&t, "next"), Some(&mut comm), &SaveOptions::default()).unwrap();
    save.add_tensor("w", &[ELEMS as u64], &[0], &[ELEMS as u64], &w).unwrap();
    save.commit_async(&staging).unwrap().wait().unwrap();
    assert!(read_f32(&ckpt(&t, "leaked"), "w") == big(6.0));
    assert!(read_f32(&ckpt(&t, "next"), "w") == big(6.0));

    // Leaked again: dropping the communicator, then the area, waits.
    let mut save = Save::new(ckpt(&t, "dropped"), Some(&mut comm), &SaveOptions::default()).unwrap();
    save.add_tensor("w", &[ELEMS as u64], &[0], &[ELEMS as u64], &w).unwrap();
    std::mem::forget(save.commit_async(&staging).unwrap());
    drop(comm);
    drop(staging);
    assert!(read_f32(&ckpt(&t, "dropped"), "w") == big(6.0));
}
