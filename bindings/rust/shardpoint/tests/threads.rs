//! Saves and loads built on one thread and committed or executed on another (`Save` and `Load`
//! are `Send`).

mod common;

use common::*;
use shardpoint::{ErrorCode, Load, LoadOptions, LocalGroup, Reader, Save, SaveOptions};

#[test]
fn a_save_commits_on_another_thread() {
    let t = tmp();
    let dir = ckpt(&t, "background");
    let w: Vec<f32> = values(24);
    let steps: Vec<i64> = values(5);
    let mask: Vec<bool> = values(7);
    let blob: Vec<u8> = (0..100).map(|i| i as u8).collect();

    let mut save = Save::new(&dir, None, &SaveOptions::default()).unwrap();
    save.add_tensor("w", &[4, 6], &[0, 0], &[4, 6], &w).unwrap();
    save.add_tensor("steps", &[5], &[0], &[5], &steps).unwrap();
    save.add_tensor("mask", &[7], &[0], &[7], &mask).unwrap();
    save.add_bytes("blob", &blob).unwrap();
    save.set_metadata("step", "3").unwrap();
    let committed = std::thread::scope(|s| {
        let commit = s.spawn(move || save.commit());
        // The data is borrowed shared: this thread may read it while the other one commits.
        let sum: f32 = w.iter().sum();
        assert_eq!(sum, values::<f32>(24).iter().sum::<f32>());
        commit.join().unwrap()
    });
    committed.unwrap();

    let reader = Reader::open(&dir).unwrap();
    assert_eq!(reader.read_tensor_vec::<f32>("w").unwrap(), (w, vec![4, 6]));
    assert_eq!(reader.read_tensor_vec::<i64>("steps").unwrap().0, steps);
    assert_eq!(reader.read_tensor_vec::<bool>("mask").unwrap().0, mask);
    assert_eq!(reader.read_bytes_vec("blob").unwrap(), blob);
    assert_eq!(reader.metadata_get("step").unwrap(), "3");
}

static BIAS: [f64; 3] = [0.25, -1.5, 8.0];

#[test]
fn a_save_of_static_data_commits_on_a_spawned_thread() {
    let t = tmp();
    let dir = ckpt(&t, "spawned");
    let mut save: Save<'static, 'static> = Save::new(&dir, None, &SaveOptions::default()).unwrap();
    save.add_tensor("bias", &[3], &[0], &[3], &BIAS).unwrap();
    std::thread::spawn(move || save.commit()).join().unwrap().unwrap();
    assert_eq!(Reader::open(&dir).unwrap().read_tensor_vec::<f64>("bias").unwrap().0, BIAS);
}

#[test]
fn a_commit_failing_on_another_thread_carries_its_message() {
    // The library's last error is per thread: the binding must read it on the committing thread.
    let t = tmp();
    let dir = ckpt(&t, "uncovered");
    let data = [1u32; 2];
    let mut save = Save::new(&dir, None, &SaveOptions::default()).unwrap();
    save.add_tensor("t", &[4], &[0], &[2], &data).unwrap();
    let res = std::thread::scope(|s| s.spawn(move || save.commit()).join().unwrap());
    let e = expect_err(res, ErrorCode::Uncovered);
    assert!(e.message().contains("'t'"), "{e}");
    expect_err(Reader::open(&dir), ErrorCode::NotFound);
}

#[test]
fn a_load_executes_on_another_thread() {
    let t = tmp();
    let dir = ckpt(&t, "load");
    let w: Vec<i32> = values(30);
    let mask: Vec<bool> = values(4);
    let mut save = Save::new(&dir, None, &SaveOptions::default()).unwrap();
    save.add_tensor("w", &[5, 6], &[0, 0], &[5, 6], &w).unwrap();
    save.add_tensor("mask", &[4], &[0], &[4], &mask).unwrap();
    save.add_bytes("blob", b"background").unwrap();
    save.commit().unwrap();

    let reader = Reader::open(&dir).unwrap();
    let mut rows = vec![0i32; 12];
    let mut got_mask = vec![false; 4];
    let mut blob = vec![0u8; 10];
    let mut load = Load::new(&reader, None).unwrap();
    load.add_tensor("w", &[2, 0], &[2, 6], &mut rows).unwrap();
    load.add_whole("mask", &[4], &mut got_mask).unwrap();
    load.add_bytes("blob", &mut blob).unwrap();
    std::thread::scope(|s| {
        let execute = s.spawn(move || load.execute());
        // The reader serves this thread too while the load runs.
        let mut first = vec![0i32; 6];
        reader.read_tensor("w", &[0, 0], &[1, 6], &mut first).unwrap();
        assert_eq!(first, w[..6]);
        execute.join().unwrap()
    })
    .unwrap();
    assert_eq!(rows, w[12..24]);
    assert_eq!(got_mask, mask);
    assert_eq!(blob, b"background");
}

#[test]
fn ranks_commit_and_load_on_spawned_threads() {
    // Each rank builds its save and load on its own thread and hands them, with its communicator,
    // to a helper thread; the communicator comes back usable once they are done.
    let t = tmp();
    let dir = ckpt(&t, "ranks");
    let full: Vec<f32> = values(36);
    let got = LocalGroup::try_run(3, |comm| {
        let r = comm.rank() as usize;
        let rows = &full[r * 12..(r + 1) * 12];
        let mut save = Save::new(&dir, Some(comm), &SaveOptions::default())?;
        save.add_tensor("x", &[9, 4], &[3 * r as u64, 0], &[3, 4], rows)?;
        std::thread::scope(|s| s.spawn(move || save.commit()).join().unwrap())?;

        let reader = Reader::open_shared(&dir, &LoadOptions::default(), comm)?;
        // Each rank reads the rows of the next one.
        let next = ((r + 1) % 3) as u64;
        let mut theirs = vec![0f32; 12];
        let mut load = Load::new(&reader, Some(comm))?;
        load.add_tensor("x", &[3 * next, 0], &[3, 4], &mut theirs)?;
        std::thread::scope(|s| s.spawn(move || load.execute()).join().unwrap())?;
        assert_eq!(comm.size(), 3);
        Ok(theirs)
    })
    .unwrap();
    for (r, theirs) in got.iter().enumerate() {
        let next = (r + 1) % 3;
        assert_eq!(theirs[..], full[next * 12..(next + 1) * 12], "rank {r}");
    }
    assert_eq!(Reader::open(&dir).unwrap().read_tensor_vec::<f32>("x").unwrap().0, full);
}
