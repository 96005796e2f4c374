//! Several ranks in one process through the LocalGroup callback communicator.

mod common;

use common::*;
use shardpoint::{
    CollectiveResult, Collectives, Comm, ErrorCode, Load, LoadOptions, LocalGroup, LocalRank, Reader, Save, SaveOptions,
    Strided,
};

fn part(n: u64, r: u64, w: u64) -> (u64, u64) {
    (r * n / w, (r + 1) * n / w)
}

/// rows: 9x4 i32, value = row * 100 + col. cols: 6x6 f32, value = row * 6 + col.
fn rows_full() -> Vec<i32> {
    (0..9).flat_map(|i| (0..4).map(move |j| i * 100 + j)).collect()
}
fn cols_full() -> Vec<f32> {
    (0..36).map(|k| k as f32).collect()
}

#[test]
fn save_with_three_ranks_load_with_two() {
    let t = tmp();
    let dir = ckpt(&t, "sharded");
    let rows = rows_full();
    let cols = cols_full();
    let norm: Vec<f64> = vec![0.5, 0.25, 0.125];
    let blob: Vec<u8> = (0..300).map(|i| i as u8).collect();

    LocalGroup::try_run(3, |comm| {
        assert_eq!(comm.size(), 3);
        let r = comm.rank() as u64;
        let mut save = Save::new(&dir, Some(comm), &SaveOptions::default())?;
        let (lo, hi) = part(9, r, 3);
        save.add_tensor("rows", &[9, 4], &[lo, 0], &[hi - lo, 4], &rows[lo as usize * 4..hi as usize * 4])?;
        let (clo, chi) = part(6, r, 3);
        let strides = c_strides(&[6, 6]);
        save.add_tensor_strided(
            "cols",
            &[6, 6],
            &[0, clo],
            &[6, chi - clo],
            &cols,
            Strided::new(&strides).first(clo as usize),
        )?;
        save.add_tensor("norm", &[3], &[0], &[3], &norm)?; // replicated
        if r == 0 {
            save.add_bytes("blob", &blob)?;
        }
        save.set_metadata("ranks", "3")?;
        save.commit()
    })
    .unwrap();

    let reader = Reader::open(&dir).unwrap();
    let info = reader.storage_info().unwrap();
    assert_eq!(info.world_size, 3);
    let e = reader.entry_by_name("rows").unwrap();
    assert_eq!((e.chunk_count, e.covered_numel), (3, 36));
    let mut writers: Vec<i32> = reader.chunks(e.index).unwrap().iter().map(|c| c.writer_rank).collect();
    writers.sort();
    assert_eq!(writers, vec![0, 1, 2], "each rank writes its own rows");
    // The replicated tensor is stored once.
    assert_eq!(reader.entry_by_name("norm").unwrap().chunk_count, 1);
    assert_eq!(reader.metadata_get("ranks").unwrap(), "3");
    reader.verify().unwrap();
    drop(reader);

    // Two ranks, each loading half of every tensor (a different sharding than the save's); rank 0
    // reads the metadata for both.
    let got = LocalGroup::try_run(2, |comm| {
        let r = comm.rank() as u64;
        let reader = Reader::open_shared(&dir, &LoadOptions::default(), comm)?;
        let (lo, hi) = part(9, r, 2);
        let (clo, chi) = part(6, r, 2);
        let mut my_rows = vec![0i32; (hi - lo) as usize * 4];
        let mut my_cols = vec![0f32; 6 * (chi - clo) as usize];
        let mut my_norm = vec![0f64; 3];
        let mut my_blob = vec![0u8; 300];
        let mut load = Load::new(&reader, Some(comm))?;
        load.add_tensor("rows", &[lo, 0], &[hi - lo, 4], &mut my_rows)?;
        load.add_tensor("cols", &[0, clo], &[6, chi - clo], &mut my_cols)?;
        load.add_tensor("norm", &[0], &[3], &mut my_norm)?;
        load.add_bytes("blob", &mut my_blob)?;
        load.execute()?;
        Ok((my_rows, my_cols, my_norm, my_blob))
    })
    .unwrap();

    for (r, (my_rows, my_cols, my_norm, my_blob)) in got.into_iter().enumerate() {
        let (lo, hi) = part(9, r as u64, 2);
        assert_eq!(my_rows, rows[lo as usize * 4..hi as usize * 4], "rank {r} rows");
        let (clo, chi) = part(6, r as u64, 2);
        let want: Vec<f32> = (0..6).flat_map(|i| (clo..chi).map(move |j| (i * 6 + j) as f32)).collect();
        assert_eq!(my_cols, want, "rank {r} cols");
        assert_eq!(my_norm, norm);
        assert_eq!(my_blob, blob);
    }

    // Rank 0 finds the metadata damaged: every rank fails with its code, the others saying so.
    let meta = dir.join("shardpoint.meta");
    let mut bytes = std::fs::read(&meta).unwrap();
    bytes[40] ^= 0xFF;
    std::fs::write(&meta, bytes).unwrap();
    let failures = LocalGroup::try_run(3, |comm| match Reader::open_shared(&dir, &LoadOptions::default(), comm) {
        Ok(_) => panic!("rank {}: damaged metadata opened", comm.rank()),
        Err(e) => Ok((e.kind(), e.message().to_string())),
    })
    .unwrap();
    for (r, (kind, message)) in failures.iter().enumerate() {
        assert_eq!(*kind, ErrorCode::Checksum, "rank {r}: {message}");
        assert_eq!(r > 0, message.contains("rank 0 reading the metadata"), "rank {r}: {message}");
    }
}

#[test]
fn conflicting_ranks_fail_together() {
    let t = tmp();
    let dir = ckpt(&t, "conflict");
    let data = [1.0f32; 24];
    // Ranks 0 and 1 offer overlapping, different chunks of the same tensor.
    let results = LocalGroup::run(2, |comm| {
        let r = comm.rank() as u64;
        let mut save = Save::new(&dir, Some(comm), &SaveOptions::default())?;
        let (lo, n) = if r == 0 { (0, 4) } else { (3, 3) };
        save.add_tensor("x", &[6, 4], &[lo, 0], &[n, 4], &data[..n as usize * 4])?;
        save.commit()
    });
    // The coordinator finds the conflict in the global plan and broadcasts it: the library fails
    // the commit on every rank with that same error.
    for (r, res) in results.iter().enumerate() {
        let e = res.as_ref().expect_err("conflict must fail every rank");
        assert_eq!(e.kind(), ErrorCode::Conflict, "rank {r}: {e}");
    }
    expect_err(Reader::open(&dir), ErrorCode::NotFound);
}

/// When the library fails a collective on every rank, every rank must see that error: a rank
/// that leaves the group right after the final broadcast (dropping its communicator breaks the
/// group) must not fail the ranks still leaving that completed broadcast. Several rounds make a
/// regression show up.
#[test]
fn dtype_conflict_is_the_error_of_every_rank() {
    const W: u64 = 4;
    let t = tmp();
    let full: Vec<f32> = (0..24).map(|k| k as f32 + 0.5).collect();
    let as_int: Vec<i32> = full.iter().map(|v| v.to_bits() as i32).collect(); // the same bytes
    for attempt in 0..5 {
        for bad in 0..W {
            let dir = ckpt(&t, &format!("bad{bad}-{attempt}"));
            let results = LocalGroup::run(W as usize, |comm| {
                let r = comm.rank() as u64;
                let (lo, hi) = part(8, r, W);
                let (from, to) = (lo as usize * 3, hi as usize * 3);
                let mut save = Save::new(&dir, Some(comm), &SaveOptions::default())?;
                if r == bad {
                    save.add_tensor("x", &[8, 3], &[lo, 0], &[hi - lo, 3], &as_int[from..to])?;
                } else {
                    save.add_tensor("x", &[8, 3], &[lo, 0], &[hi - lo, 3], &full[from..to])?;
                }
                save.commit()
            });
            for (r, res) in results.iter().enumerate() {
                let e = res.as_ref().expect_err("the conflict must fail every rank");
                assert_eq!(e.kind(), ErrorCode::Conflict, "rank {bad} offering i32, attempt {attempt}: rank {r}: {e}");
            }
            expect_err(Reader::open(&dir), ErrorCode::NotFound);
        }
    }
}

#[test]
fn a_rank_that_leaves_makes_the_others_fail_not_hang() {
    let t = tmp();
    let dir = ckpt(&t, "left");
    let data = vec![7u8; 16];
    let results = LocalGroup::run(3, |comm| -> Option<shardpoint::Result<()>> {
        let rank = comm.rank();
        if rank == 1 {
            return None; // drops its communicator without taking part
        }
        let mut save = Save::new(&dir, Some(comm), &SaveOptions::default()).ok()?;
        save.add_bytes(&format!("b{rank}"), &data).ok()?;
        Some(save.commit())
    });
    assert!(results[1].is_none());
    for r in [0, 2] {
        let res = results[r].clone().expect("rank took part");
        let e = res.expect_err("a missing rank must fail the save");
        assert!(matches!(e.kind(), ErrorCode::Comm | ErrorCode::Rank), "rank {r}: {e}");
    }
    expect_err(Reader::open(&dir), ErrorCode::NotFound);
}

/// Collectives that fail every call: the library reports ECOMM with the callback's text.
struct Broken(LocalRank);

impl Collectives for Broken {
    fn rank(&self) -> i32 {
        self.0.rank() as i32
    }
    fn size(&self) -> i32 {
        2
    }
    fn gather(&mut self, _: &[u8], _: Option<&mut [u8]>) -> CollectiveResult {
        Err("network unplugged".into())
    }
    fn broadcast(&mut self, _: &mut [u8]) -> CollectiveResult {
        Err("network unplugged".into())
    }
}

#[test]
fn failing_callbacks_are_ecomm() {
    let t = tmp();
    let dir = ckpt(&t, "ecomm");
    let data = [1u8, 2, 3];
    let results: Vec<shardpoint::Result<()>> = std::thread::scope(|s| {
        let hs: Vec<_> = LocalGroup::ranks(2)
            .into_iter()
            .map(|rank| {
                let (dir, data) = (&dir, &data);
                s.spawn(move || {
                    let mut comm = Comm::from_collectives(Broken(rank))?;
                    assert_eq!((comm.rank(), comm.size()), (comm.rank(), 2));
                    let mut save = Save::new(dir, Some(&mut comm), &SaveOptions::default())?;
                    save.add_bytes("x", data)?;
                    save.commit()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for res in results {
        let e = expect_err(res, ErrorCode::Comm);
        assert!(e.message().contains("network unplugged"), "{e}");
    }
}

/// Collectives that panic: the panic is caught at the C boundary and becomes ECOMM.
struct Panicky;

impl Collectives for Panicky {
    fn rank(&self) -> i32 {
        0
    }
    fn size(&self) -> i32 {
        1
    }
    fn gather(&mut self, _: &[u8], _: Option<&mut [u8]>) -> CollectiveResult {
        panic!("boom in gather")
    }
    fn broadcast(&mut self, _: &mut [u8]) -> CollectiveResult {
        panic!("boom in broadcast")
    }
}

#[test]
fn panicking_callbacks_do_not_unwind_into_c() {
    let t = tmp();
    let mut comm = Comm::from_collectives(Panicky).unwrap();
    assert_eq!((comm.rank(), comm.size()), (0, 1));
    let mut save = Save::new(ckpt(&t, "panic"), Some(&mut comm), &SaveOptions::default()).unwrap();
    save.add_bytes("x", b"x").unwrap();
    match save.commit() {
        // A library may skip collectives for a single rank; then the save simply succeeds.
        Ok(()) => assert!(Reader::open(ckpt(&t, "panic")).is_ok()),
        Err(e) => {
            assert_eq!(e.kind(), ErrorCode::Comm, "{e}");
            assert!(e.message().contains("boom"), "{e}");
        }
    }
}

#[test]
fn invalid_communicators_are_einval() {
    struct Bad(i32, i32);
    impl Collectives for Bad {
        fn rank(&self) -> i32 {
            self.0
        }
        fn size(&self) -> i32 {
            self.1
        }
        fn gather(&mut self, _: &[u8], _: Option<&mut [u8]>) -> CollectiveResult {
            Ok(())
        }
        fn broadcast(&mut self, _: &mut [u8]) -> CollectiveResult {
            Ok(())
        }
    }
    expect_err(Comm::from_collectives(Bad(2, 2)), ErrorCode::Inval);
    expect_err(Comm::from_collectives(Bad(0, 0)), ErrorCode::Inval);
    expect_err(Comm::from_collectives(Bad(-1, 3)), ErrorCode::Inval);
    let single = Comm::single().unwrap();
    assert_eq!((single.rank(), single.size()), (0, 1));
}
