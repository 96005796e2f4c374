package shardpoint

import (
	"errors"
	"fmt"
	"sync"
)

// LocalGroup runs the collectives of `size` ranks that are goroutines of one process: the ranks
// share memory, so gather and broadcast are copies between two barriers.
//
// A rank that fails outside a collective would leave the others waiting forever, so Abort (and
// Run, whenever a rank's function returns) breaks the group: every collective waiting for that
// rank, and every later one, fails with the abort error (the library then reports ErrComm).
type LocalGroup struct {
	size int

	mu      sync.Mutex
	cond    *sync.Cond
	arrived int    // ranks waiting at the current barrier
	gen     uint64 // barrier generation, advanced when the last rank arrives
	err     error  // set by Abort
	slots   [][]byte
}

// NewLocalGroup returns a group of size ranks.
func NewLocalGroup(size int) *LocalGroup {
	if size < 1 {
		panic(fmt.Sprintf("shardpoint: NewLocalGroup(%d): size must be >= 1", size))
	}
	g := &LocalGroup{size: size, slots: make([][]byte, size)}
	g.cond = sync.NewCond(&g.mu)
	return g
}

// Size returns the number of ranks.
func (g *LocalGroup) Size() int { return g.size }

// Member returns the Collectives of rank `rank`, to pass to NewCallbackComm.
func (g *LocalGroup) Member(rank int) Collectives {
	if rank < 0 || rank >= g.size {
		panic(fmt.Sprintf("shardpoint: LocalGroup.Member(%d) of %d ranks", rank, g.size))
	}
	return &localMember{g: g, rank: rank}
}

// Abort makes every waiting and every later collective of the group fail with err. A barrier
// round that completed before the abort still succeeds for every rank, including ranks that it
// released but that have not woken up yet: Abort is meant for a rank that takes no further part,
// so only the rounds that rank has not joined (which can never complete) fail. That keeps an
// error the library reports on every rank (after its final broadcast) the error of every rank.
func (g *LocalGroup) Abort(err error) {
	g.mu.Lock()
	if g.err == nil {
		g.err = err
	}
	g.mu.Unlock()
	g.cond.Broadcast()
}

// Run calls fn once per rank, each in its own goroutine, with a communicator for that rank (closed
// when fn returns), and returns the ranks' errors joined (errors.Join; each as "rank R: err", so
// errors.Is and errors.As see through it), or nil when every rank succeeded. When a rank returns,
// the group is aborted so that no other rank can wait for it forever; a group therefore serves
// one Run. A panic in fn is returned as that rank's error. RunEach gives the errors per rank.
func (g *LocalGroup) Run(fn func(comm *Comm) error) error {
	var joined []error
	for r, err := range g.RunEach(fn) {
		if err != nil {
			joined = append(joined, fmt.Errorf("rank %d: %w", r, err))
		}
	}
	return errors.Join(joined...)
}

// RunEach is Run returning each rank's error (nil entries for ranks that succeeded).
func (g *LocalGroup) RunEach(fn func(comm *Comm) error) []error {
	errs := make([]error, g.size)
	var wg sync.WaitGroup
	for r := 0; r < g.size; r++ {
		wg.Add(1)
		go func(r int) {
			defer wg.Done()
			errs[r] = g.runRank(r, fn)
		}(r)
	}
	wg.Wait()
	return errs
}

func (g *LocalGroup) runRank(r int, fn func(comm *Comm) error) (err error) {
	comm, err := NewCallbackComm(r, g.size, g.Member(r))
	if err != nil {
		g.Abort(fmt.Errorf("rank %d could not create its communicator: %w", r, err))
		return err
	}
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("rank %d panicked: %v", r, p)
		}
		if cerr := comm.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			g.Abort(fmt.Errorf("rank %d failed: %w", r, err))
		} else {
			g.Abort(fmt.Errorf("rank %d has finished", r))
		}
	}()
	return fn(comm)
}

// barrier waits until every rank has arrived. Called with g.mu held.
func (g *LocalGroup) barrier() error {
	if g.err != nil {
		return g.err
	}
	gen := g.gen
	g.arrived++
	if g.arrived == g.size {
		g.arrived = 0
		g.gen++
		g.cond.Broadcast()
		return nil
	}
	for gen == g.gen && g.err == nil {
		g.cond.Wait()
	}
	if gen != g.gen { // released before (or despite) an abort: the barrier completed
		return nil
	}
	return g.err
}

type localMember struct {
	g    *LocalGroup
	rank int
}

func (m *localMember) Gather(send, recv []byte) error {
	g := m.g
	g.mu.Lock()
	defer g.mu.Unlock()
	g.slots[m.rank] = send
	if err := g.barrier(); err != nil {
		return err
	}
	var err error
	if m.rank == 0 {
		n := len(send)
		if len(recv) != n*g.size {
			err = fmt.Errorf("gather: receive buffer of %d bytes for %d ranks of %d bytes", len(recv), g.size, n)
		}
		for r := 0; r < g.size && err == nil; r++ {
			if len(g.slots[r]) != n {
				err = fmt.Errorf("gather: rank %d sent %d bytes, rank 0 sent %d", r, len(g.slots[r]), n)
				break
			}
			copy(recv[r*n:], g.slots[r])
		}
	}
	// Every rank's send buffer must stay valid until rank 0 has copied it.
	berr := g.barrier()
	g.slots[m.rank] = nil
	return errors.Join(err, berr)
}

func (m *localMember) Broadcast(buf []byte) error {
	g := m.g
	g.mu.Lock()
	defer g.mu.Unlock()
	if m.rank == 0 {
		g.slots[0] = buf
	}
	if err := g.barrier(); err != nil {
		return err
	}
	var err error
	if m.rank != 0 {
		if len(g.slots[0]) != len(buf) {
			err = fmt.Errorf("broadcast: rank %d has %d bytes, rank 0 sent %d", m.rank, len(buf), len(g.slots[0]))
		} else {
			copy(buf, g.slots[0])
		}
	}
	berr := g.barrier()
	if m.rank == 0 {
		g.slots[0] = nil
	}
	return errors.Join(err, berr)
}
