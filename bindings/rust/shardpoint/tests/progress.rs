//! Progress reports and cancellation: `Save::set_progress`, `Load::set_progress`,
//! `Reader::verify_with_progress`.

mod common;

use std::collections::BTreeSet;
use std::ops::ControlFlow;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::Duration;

use common::*;
use shardpoint::{ErrorCode, Load, LoadOptions, LocalGroup, Phase, Progress, Reader, Save, SaveOptions};

const NAMES: [&str; 4] = ["a", "b", "c", "d"];
/// Elements of each tensor: 4 tensors of 4 MiB of f32, several pieces of work each.
const ELEMS: usize = 1 << 20;
/// What a save of the model writes: the raw bytes of its tensors.
const MODEL_BYTES: u64 = (NAMES.len() * ELEMS * 4) as u64;

fn tensor(name: usize, value: f32) -> Vec<f32> {
    (0..ELEMS).map(|i| value + name as f32 * 1000.0 + (i % 97) as f32).collect()
}

/// Saves the model with every element derived from `value`, reporting to `progress` when given.
fn save_model(
    dir: &Path,
    value: f32,
    options: &SaveOptions,
    progress: Option<&mut (dyn FnMut(Progress) -> ControlFlow<()> + Send)>,
) -> shardpoint::Result<()> {
    let data: Vec<Vec<f32>> = (0..NAMES.len()).map(|k| tensor(k, value)).collect();
    let mut save = Save::new(dir, None, options)?;
    for (name, data) in NAMES.iter().zip(&data) {
        save.add_tensor(name, &[ELEMS as u64], &[0], &[ELEMS as u64], data)?;
    }
    if let Some(f) = progress {
        save.set_progress(f)?;
    }
    save.commit()
}

fn check_model(dir: &Path, value: f32) {
    let reader = Reader::open(dir).unwrap();
    for (k, name) in NAMES.iter().enumerate() {
        assert!(reader.read_tensor_vec::<f32>(name).unwrap().0 == tensor(k, value), "tensor {name}");
    }
}

/// The names in `dir` (none when it does not exist).
fn files(dir: &Path) -> BTreeSet<String> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeSet::new(),
        Err(e) => panic!("list {}: {e}", dir.display()),
    }
}

/// Reports of one operation: the first at 0, the last at `total`, never backwards, one phase and
/// one total.
#[track_caller]
fn check_reports(reports: &[Progress], phase: Phase, total: u64) {
    assert!(reports.len() >= 2, "want at least the first and the last report: {reports:?}");
    assert_eq!(reports[0].done, 0, "{reports:?}");
    let last = reports[reports.len() - 1];
    assert_eq!((last.done, last.total), (total, total), "{reports:?}");
    for (i, p) in reports.iter().enumerate() {
        assert_eq!((p.phase, p.total), (phase, total), "report {i} of {reports:?}");
        assert!(i == 0 || p.done >= reports[i - 1].done, "report {i} goes backwards: {reports:?}");
    }
}

fn overwrite_one_thread() -> SaveOptions {
    SaveOptions::new().overwrite(true).io_threads(1)
}

#[test]
fn save_load_and_verify_report_their_bytes() {
    let t = tmp();
    let dir = ckpt(&t, "reports");
    let mut saved = Vec::new();
    save_model(
        &dir,
        1.0,
        &SaveOptions::default(),
        Some(&mut |p| {
            saved.push(p);
            ControlFlow::Continue(())
        }),
    )
    .unwrap();
    check_reports(&saved, Phase::Write, MODEL_BYTES);

    let reader = Reader::open(&dir).unwrap();
    let mut loaded = Vec::new();
    let mut c = vec![0f32; ELEMS];
    let mut load = Load::new(&reader, None).unwrap();
    load.add_whole("c", &[ELEMS as u64], &mut c).unwrap();
    load.set_progress(|p| {
        loaded.push(p);
        ControlFlow::Continue(())
    })
    .unwrap();
    load.execute().unwrap();
    check_reports(&loaded, Phase::Read, (ELEMS * 4) as u64);
    assert!(c == tensor(2, 1.0));

    let mut verified = Vec::new();
    reader
        .verify_with_progress(|p| {
            verified.push(p);
            ControlFlow::Continue(())
        })
        .unwrap();
    check_reports(&verified, Phase::Verify, reader.storage_info().unwrap().total_stored_bytes);
    assert_eq!(reader.storage_info().unwrap().total_stored_bytes, MODEL_BYTES);
}

#[test]
fn phases_have_the_c_values() {
    assert_eq!(Phase::from_raw(1), Phase::Write);
    assert_eq!(Phase::from_raw(2), Phase::Read);
    assert_eq!(Phase::from_raw(3), Phase::Verify);
    assert_eq!(Phase::from_raw(9), Phase::Other(9));
    for p in [Phase::Write, Phase::Read, Phase::Verify, Phase::Other(9)] {
        assert_eq!(Phase::from_raw(p.raw()), p);
    }
}

#[test]
fn a_save_canceled_at_the_start_keeps_the_previous_checkpoint() {
    let t = tmp();
    let dir = ckpt(&t, "start");
    save_model(&dir, 1.0, &SaveOptions::default(), None).unwrap();
    let before = files(&dir);

    let mut reports = Vec::new();
    let res = save_model(
        &dir,
        2.0,
        &overwrite_one_thread(),
        Some(&mut |p| {
            reports.push(p);
            ControlFlow::Break(())
        }),
    );
    let e = expect_err(res, ErrorCode::Canceled);
    assert_eq!(e.name(), "SHARDPOINT_ECANCELED");
    assert!(e.to_string().starts_with("SHARDPOINT_ECANCELED (-22): "), "{e}");
    assert!(e.message().contains("cancel"), "{e}");
    assert_eq!(reports, [Progress { phase: Phase::Write, done: 0, total: MODEL_BYTES }]);
    assert_eq!(files(&dir), before, "the canceled save left files behind");
    check_model(&dir, 1.0);
}

#[test]
fn a_save_canceled_midway_keeps_the_previous_checkpoint() {
    let t = tmp();
    let dir = ckpt(&t, "midway");
    save_model(&dir, 1.0, &SaveOptions::default(), None).unwrap();
    let before = files(&dir);

    // One I/O thread: the work runs on the committing thread between reports. Sleeping longer
    // than the report interval makes the next report due after the next piece of work.
    let mut reports = Vec::new();
    let res = save_model(
        &dir,
        2.0,
        &overwrite_one_thread(),
        Some(&mut |p| {
            reports.push(p);
            if p.done > 0 {
                return ControlFlow::Break(());
            }
            std::thread::sleep(Duration::from_millis(60));
            ControlFlow::Continue(())
        }),
    );
    expect_err(res, ErrorCode::Canceled);
    let last = reports[reports.len() - 1];
    assert!(last.done > 0 && last.done < last.total, "canceled at {last:?}: want midway ({reports:?})");
    assert_eq!(files(&dir), before, "the canceled save left files behind");
    check_model(&dir, 1.0);

    // The directory takes the next save as usual.
    save_model(&dir, 3.0, &SaveOptions::new().overwrite(true), None).unwrap();
    check_model(&dir, 3.0);
}

#[test]
fn a_canceled_load_fails_and_the_reader_goes_on() {
    let t = tmp();
    let dir = ckpt(&t, "load");
    save_model(&dir, 1.0, &SaveOptions::default(), None).unwrap();
    let reader = Reader::open_with(&dir, &LoadOptions::new().io_threads(1)).unwrap();

    let mut a = vec![0f32; ELEMS];
    let mut load = Load::new(&reader, None).unwrap();
    load.add_whole("a", &[ELEMS as u64], &mut a).unwrap();
    load.set_progress(|_| ControlFlow::Break(())).unwrap();
    let e = expect_err(load.execute(), ErrorCode::Canceled);
    assert!(e.message().contains("cancel"), "{e}");

    // Canceled midway.
    let mut reports = Vec::new();
    let mut all: Vec<Vec<f32>> = vec![vec![0f32; ELEMS]; NAMES.len()];
    let mut load = Load::new(&reader, None).unwrap();
    for (name, dst) in NAMES.iter().zip(&mut all) {
        load.add_whole(name, &[ELEMS as u64], dst).unwrap();
    }
    load.set_progress(|p| {
        reports.push(p);
        if p.done > 0 {
            return ControlFlow::Break(());
        }
        std::thread::sleep(Duration::from_millis(60));
        ControlFlow::Continue(())
    })
    .unwrap();
    expect_err(load.execute(), ErrorCode::Canceled);
    assert!(reports.iter().all(|p| p.phase == Phase::Read && p.total == MODEL_BYTES), "{reports:?}");
    let last = reports[reports.len() - 1];
    assert!(last.done > 0 && last.done < last.total, "canceled at {last:?}: want midway ({reports:?})");

    // A load without progress from the same reader reads everything.
    let mut load = Load::new(&reader, None).unwrap();
    load.add_whole("a", &[ELEMS as u64], &mut a).unwrap();
    load.execute().unwrap();
    assert!(a == tensor(0, 1.0));
}

#[test]
fn a_canceled_verify_fails_and_the_next_one_runs_without_the_closure() {
    let t = tmp();
    let dir = ckpt(&t, "verify");
    save_model(&dir, 1.0, &SaveOptions::default(), None).unwrap();
    let reader = Reader::open(&dir).unwrap();
    let mut calls = 0;
    let res = reader.verify_with_progress(|p| {
        calls += 1;
        assert_eq!(p.phase, Phase::Verify);
        ControlFlow::Break(())
    });
    expect_err(res, ErrorCode::Canceled);
    assert_eq!(calls, 1);
    // The closure was taken back: a plain verify runs to its end and calls nothing.
    reader.verify().unwrap();
    assert_eq!(calls, 1);
}

#[test]
fn concurrent_verifies_each_get_their_own_reports() {
    // The C reader has one callback slot; the binding runs verifies with progress one at a time
    // and keeps plain verifies away from an installed closure. The closures need not be Send:
    // each runs on its own caller's thread.
    let t = tmp();
    let dir = ckpt(&t, "concurrent");
    save_model(&dir, 1.0, &SaveOptions::default(), None).unwrap();
    let reader = Reader::open(&dir).unwrap();
    std::thread::scope(|s| {
        for k in 0..4 {
            let reader = &reader;
            s.spawn(move || {
                if k % 2 == 0 {
                    reader.verify().unwrap();
                    return;
                }
                let me = std::thread::current().id();
                let reports = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
                let sink = std::rc::Rc::clone(&reports);
                reader
                    .verify_with_progress(move |p| {
                        assert_eq!(std::thread::current().id(), me);
                        sink.borrow_mut().push(p);
                        ControlFlow::Continue(())
                    })
                    .unwrap();
                check_reports(&reports.borrow(), Phase::Verify, MODEL_BYTES);
            });
        }
    });
}

#[test]
fn progress_runs_on_the_committing_thread() {
    let t = tmp();
    let dir = ckpt(&t, "thread");
    let data: Vec<f32> = values(1000);
    let mut threads = Vec::new();
    let mut save = Save::new(&dir, None, &SaveOptions::default()).unwrap();
    save.add_tensor("w", &[1000], &[0], &[1000], &data).unwrap();
    save.set_progress(|_| {
        threads.push(std::thread::current().id());
        ControlFlow::Continue(())
    })
    .unwrap();
    let committer = std::thread::scope(|s| {
        let h = s.spawn(move || (save.commit(), std::thread::current().id()));
        let (res, id) = h.join().unwrap();
        res.unwrap();
        id
    });
    assert!(threads.len() >= 2 && threads.iter().all(|&id| id == committer), "{threads:?}");
}

#[test]
fn the_last_closure_set_is_the_one_called() {
    let t = tmp();
    let dir = ckpt(&t, "replace");
    let data: Vec<i32> = values(100);
    let (mut first, mut second) = (0, 0);
    let mut save = Save::new(&dir, None, &SaveOptions::default()).unwrap();
    save.add_tensor("w", &[100], &[0], &[100], &data).unwrap();
    save.set_progress(|_| {
        first += 1;
        ControlFlow::Break(())
    })
    .unwrap();
    save.set_progress(|_| {
        second += 1;
        ControlFlow::Continue(())
    })
    .unwrap();
    save.commit().unwrap();
    assert_eq!(first, 0);
    assert!(second >= 2);
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> &str {
    payload.downcast_ref::<&str>().copied().unwrap_or("(not a &str)")
}

#[test]
fn a_panicking_closure_propagates_and_commits_nothing() {
    let t = tmp();
    let dir = ckpt(&t, "panic");
    let payload = catch_unwind(AssertUnwindSafe(|| {
        save_model(&dir, 1.0, &SaveOptions::default(), Some(&mut |_| panic!("boom in save")))
    }))
    .expect_err("the panic should reach the caller");
    assert_eq!(panic_text(&*payload), "boom in save");
    expect_err(Reader::open(&dir), ErrorCode::NotFound);
    assert!(files(&dir).is_empty(), "the panicked save left files: {:?}", files(&dir));

    // Over an existing checkpoint: it stays.
    save_model(&dir, 1.0, &SaveOptions::default(), None).unwrap();
    let before = files(&dir);
    let mut calls = 0;
    let payload = catch_unwind(AssertUnwindSafe(|| {
        save_model(
            &dir,
            2.0,
            &overwrite_one_thread(),
            Some(&mut |p| {
                calls += 1;
                if p.done > 0 {
                    panic!("boom midway");
                }
                std::thread::sleep(Duration::from_millis(60));
                ControlFlow::Continue(())
            }),
        )
    }))
    .expect_err("the panic should reach the caller");
    assert_eq!(panic_text(&*payload), "boom midway");
    assert_eq!(calls, 2, "a closure that panicked is not called again");
    assert_eq!(files(&dir), before);
    check_model(&dir, 1.0);

    // Loads and verifies too.
    let reader = Reader::open(&dir).unwrap();
    let mut a = vec![0f32; ELEMS];
    let mut load = Load::new(&reader, None).unwrap();
    load.add_whole("a", &[ELEMS as u64], &mut a).unwrap();
    load.set_progress(|_| panic!("boom in load")).unwrap();
    let payload = catch_unwind(AssertUnwindSafe(|| load.execute())).expect_err("the load should panic");
    assert_eq!(panic_text(&*payload), "boom in load");
    let payload = catch_unwind(AssertUnwindSafe(|| reader.verify_with_progress(|_| panic!("boom in verify"))))
        .expect_err("the verify should panic");
    assert_eq!(panic_text(&*payload), "boom in verify");
    // The reader is still usable, its callback removed and its lock not poisoned.
    reader.verify().unwrap();
    reader.verify_with_progress(|_| ControlFlow::Continue(())).unwrap();
}

#[test]
fn one_rank_canceling_fails_it_with_canceled_and_the_others_with_rank() {
    let t = tmp();
    let dir = ckpt(&t, "ranks");
    let full: Vec<f32> = values(3 * 1024);
    let results = LocalGroup::run(3, |comm| {
        let r = comm.rank() as usize;
        let mut save = Save::new(&dir, Some(comm), &SaveOptions::default())?;
        save.add_tensor("w", &[3, 1024], &[r as u64, 0], &[1, 1024], &full[r * 1024..(r + 1) * 1024])?;
        if r == 1 {
            save.set_progress(|_| ControlFlow::Break(()))?;
        }
        save.commit()
    });
    let e = expect_err(results[1].clone(), ErrorCode::Canceled);
    assert!(e.message().contains("cancel"), "{e}");
    for r in [0, 2] {
        let e = expect_err(results[r].clone(), ErrorCode::Rank);
        assert!(e.message().contains("rank 1"), "rank {r}: {e}");
    }
    expect_err(Reader::open(&dir), ErrorCode::NotFound);
}
