//! An in-process communicator: W ranks are W threads sharing memory and a barrier.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::comm::{CollectiveResult, Collectives, Comm};
use crate::error::Result;

/// A group of ranks living in one process, one thread per rank.
///
/// ```no_run
/// use shardpoint::{LocalGroup, Save, SaveOptions};
/// let results = LocalGroup::run(3, |comm| {
///     let rank = comm.rank() as u64; // before the save borrows the communicator
///     let data = vec![rank as f32; 4];
///     let mut save = Save::new("/tmp/ckpt", Some(comm), &SaveOptions::default())?;
///     save.add_tensor("x", &[12], &[4 * rank], &[4], &data)?;
///     save.commit()
/// });
/// ```
pub struct LocalGroup;

impl LocalGroup {
    /// Creates the `size` connected ranks of a new group, in rank order. Give each to its own
    /// thread (usually through [`Comm::from_collectives`]).
    pub fn ranks(size: usize) -> Vec<LocalRank> {
        assert!(size >= 1 && size <= i32::MAX as usize, "a group needs at least one rank");
        let shared = Arc::new(Shared {
            size,
            state: Mutex::new(State { arrived: 0, generation: 0, broken: false, slots: vec![Vec::new(); size] }),
            turn: Condvar::new(),
        });
        (0..size).map(|rank| LocalRank { rank, shared: Arc::clone(&shared) }).collect()
    }

    /// Runs `f` on `size` scoped threads, each with a communicator of its own rank, and returns the
    /// results in rank order. A panic on any thread is propagated once all have finished.
    pub fn run<R, F>(size: usize, f: F) -> Vec<R>
    where
        R: Send,
        F: Fn(&mut Comm) -> R + Sync,
    {
        let ranks = LocalGroup::ranks(size);
        std::thread::scope(|scope| {
            let handles: Vec<_> = ranks
                .into_iter()
                .map(|rank| {
                    let f = &f;
                    scope.spawn(move || {
                        let mut comm = Comm::from_collectives(rank).expect("create a callback communicator");
                        f(&mut comm)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))).collect()
        })
    }

    /// Like [`LocalGroup::run`] for closures that return a `Result`: the first error in rank order
    /// wins.
    pub fn try_run<T, F>(size: usize, f: F) -> Result<Vec<T>>
    where
        T: Send,
        F: Fn(&mut Comm) -> Result<T> + Sync,
    {
        LocalGroup::run(size, f).into_iter().collect()
    }
}

struct State {
    arrived: usize,
    generation: u64,
    // Set when a rank leaves the group: waiting forever for it would hang the others.
    broken: bool,
    slots: Vec<Vec<u8>>,
}

struct Shared {
    size: usize,
    state: Mutex<State>,
    turn: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic on another rank while holding the lock only ever leaves consistent data here.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Blocks until every rank has arrived. Fails if a rank left the group instead.
    fn barrier<'g>(&'g self, mut st: MutexGuard<'g, State>) -> std::result::Result<MutexGuard<'g, State>, String> {
        if st.broken {
            return Err("a rank of the local group has left it".into());
        }
        let generation = st.generation;
        st.arrived += 1;
        if st.arrived == self.size {
            st.arrived = 0;
            st.generation += 1;
            self.turn.notify_all();
            return Ok(st);
        }
        loop {
            st = self.turn.wait(st).unwrap_or_else(|e| e.into_inner());
            if st.generation != generation {
                return Ok(st);
            }
            if st.broken {
                return Err("a rank of the local group has left it".into());
            }
        }
    }
}

/// One rank of a [`LocalGroup`]; implements [`Collectives`] with shared memory.
pub struct LocalRank {
    rank: usize,
    shared: Arc<Shared>,
}

impl LocalRank {
    pub fn rank(&self) -> usize {
        self.rank
    }
}

impl Collectives for LocalRank {
    fn rank(&self) -> i32 {
        self.rank as i32
    }

    fn size(&self) -> i32 {
        self.shared.size as i32
    }

    fn gather(&mut self, send: &[u8], recv: Option<&mut [u8]>) -> CollectiveResult {
        let shared = &*self.shared;
        let mut st = shared.lock();
        st.slots[self.rank] = send.to_vec();
        st = shared.barrier(st)?;
        let mut result = Ok(());
        if let Some(recv) = recv {
            let len = send.len();
            if recv.len() != len * shared.size {
                result =
                    Err(format!("gather: receive buffer of {} bytes for {} ranks of {len}", recv.len(), shared.size));
            } else {
                for (r, slot) in st.slots.iter().enumerate() {
                    if slot.len() != len {
                        result = Err(format!("gather: rank {r} sent {} bytes, rank 0 {len}", slot.len()));
                        break;
                    }
                    recv[r * len..(r + 1) * len].copy_from_slice(slot);
                }
            }
        }
        // Nobody may reuse its slot before rank 0 has copied it.
        drop(shared.barrier(st)?);
        result.map_err(Into::into)
    }

    fn broadcast(&mut self, buf: &mut [u8]) -> CollectiveResult {
        let shared = &*self.shared;
        let mut st = shared.lock();
        if self.rank == 0 {
            st.slots[0] = buf.to_vec();
        }
        st = shared.barrier(st)?;
        let result = if self.rank == 0 {
            Ok(())
        } else if st.slots[0].len() != buf.len() {
            Err(format!("broadcast: rank 0 sent {} bytes, rank {} expects {}", st.slots[0].len(), self.rank, buf.len()))
        } else {
            buf.copy_from_slice(&st.slots[0]);
            Ok(())
        };
        drop(shared.barrier(st)?);
        result.map_err(Into::into)
    }
}

impl Drop for LocalRank {
    fn drop(&mut self) {
        // Ranks still waiting for this one fail instead of hanging. Ranks that already passed
        // their last barrier are unaffected (they check the generation first).
        let mut st = self.shared.lock();
        st.broken = true;
        self.shared.turn.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gather_and_broadcast_between_threads() {
        let ranks = LocalGroup::ranks(3);
        let outs: Vec<(Vec<u8>, Vec<u8>)> = std::thread::scope(|s| {
            let hs: Vec<_> = ranks
                .into_iter()
                .map(|mut r| {
                    s.spawn(move || {
                        let me = r.rank() as u8;
                        let mut recv = vec![0u8; 6];
                        let send = [me, me + 10];
                        r.gather(&send, if me == 0 { Some(&mut recv) } else { None }).unwrap();
                        let mut b = if me == 0 { vec![7, 8, 9] } else { vec![0, 0, 0] };
                        r.broadcast(&mut b).unwrap();
                        (recv, b)
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(outs[0].0, vec![0, 10, 1, 11, 2, 12]);
        for (r, (recv, b)) in outs.iter().enumerate() {
            assert_eq!(b, &vec![7, 8, 9], "rank {r}");
            if r != 0 {
                assert_eq!(recv, &vec![0; 6]);
            }
        }
    }

    #[test]
    fn a_rank_leaving_fails_the_others_instead_of_hanging() {
        let mut ranks = LocalGroup::ranks(2);
        let mut r0 = ranks.remove(0);
        let r1 = ranks.remove(0);
        let h = std::thread::spawn(move || {
            let mut b = [0u8; 1];
            r0.broadcast(&mut b)
        });
        drop(r1);
        assert!(h.join().unwrap().is_err());
    }

    #[test]
    fn a_rank_leaving_after_a_completed_round_spares_the_others() {
        // Rank 0 finishes a broadcast and leaves at once; rank 1, released by that same round but
        // maybe not awake yet, must still get the data.
        for i in 0..200 {
            let mut ranks = LocalGroup::ranks(2);
            let mut r0 = ranks.remove(0);
            let mut r1 = ranks.remove(0);
            let h = std::thread::spawn(move || {
                let mut b = [0u8; 2];
                r1.broadcast(&mut b).map(|()| b)
            });
            r0.broadcast(&mut [4, 2]).unwrap();
            drop(r0);
            assert_eq!(h.join().unwrap().unwrap(), [4, 2], "iteration {i}");
        }
    }

    #[test]
    fn mismatched_gather_lengths_are_an_error() {
        let ranks = LocalGroup::ranks(2);
        let res: Vec<CollectiveResult> = std::thread::scope(|s| {
            let hs: Vec<_> = ranks
                .into_iter()
                .map(|mut r| {
                    s.spawn(move || {
                        let send = vec![1u8; 1 + r.rank()];
                        let mut recv = vec![0u8; 2];
                        let is_root = r.rank() == 0;
                        r.gather(&send, if is_root { Some(&mut recv) } else { None })
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(res[0].is_err());
        assert!(res[1].is_ok());
    }
}
