package shardpoint

/*
#include <stdint.h>
#include "shardpoint.h"

// Defined in comm_shim.c.
int sp_go_comm_new(shardpoint_comm **out, int32_t rank, int32_t size, uintptr_t handle);
*/
import "C"

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"runtime/cgo"
	"sync"
	"unsafe"
)

// Collectives are the two collective operations a communicator needs, implemented by the host
// (a Go service's transport, or LocalGroup for goroutines in one process). Rank 0 is the root.
// The library calls them only from inside collective functions (Save.Commit, Load.Execute), on
// the goroutine that called those, in the same order on every rank. The slices point at memory
// the library owns: use them only until the method returns.
type Collectives interface {
	// Gather: every rank sends len(send) bytes (the same length on every rank). Rank 0
	// receives size*len(send) bytes into recv, rank r's bytes at offset r*len(send); on the
	// other ranks recv is nil.
	Gather(send, recv []byte) error
	// Broadcast: the bytes of buf on rank 0 are copied into buf on every other rank.
	Broadcast(buf []byte) error
}

// Comm is a communicator: how the ranks of one job talk during collective calls. A Comm must
// outlive the saves and loads that use it; Close fails with ErrState while any is still open.
type Comm struct {
	mu    sync.Mutex
	ptr   *C.shardpoint_comm
	rank  int
	size  int
	users int        // open saves and loads using this communicator
	state *commState // nil for the single-process communicator
}

// commState is what the C callbacks reach through a cgo.Handle.
type commState struct {
	coll Collectives
	size int

	mu        sync.Mutex
	lastErr   error // the last error a callback returned, reported as the Cause of ErrComm
	destroyed bool
}

func (st *commState) fail(err error) C.int {
	st.mu.Lock()
	st.lastErr = err
	st.mu.Unlock()
	return 1
}

func (st *commState) takeErr() error {
	st.mu.Lock()
	defer st.mu.Unlock()
	err := st.lastErr
	st.lastErr = nil
	return err
}

// NewSingleComm returns the communicator of a job of one process (rank 0 of 1). Passing a nil
// *Comm to NewSave or NewLoad means the same.
func NewSingleComm() (*Comm, error) {
	var ptr *C.shardpoint_comm
	if err := call(func() C.int { return C.shardpoint_comm_new_single(&ptr) }); err != nil {
		return nil, err
	}
	return newComm(ptr, nil)
}

// NewCallbackComm returns a communicator for rank `rank` of `size` whose collectives are the
// methods of coll. coll is kept until Close.
func NewCallbackComm(rank, size int, coll Collectives) (*Comm, error) {
	if coll == nil {
		return nil, newError(ErrInvalid, "nil Collectives")
	}
	if rank < 0 || size < 1 || rank >= size || size > math.MaxInt32 {
		return nil, newError(ErrInvalid, "rank %d of %d is not valid", rank, size)
	}
	st := &commState{coll: coll, size: size}
	h := cgo.NewHandle(st)
	var ptr *C.shardpoint_comm
	err := call(func() C.int { return C.sp_go_comm_new(&ptr, C.int32_t(rank), C.int32_t(size), C.uintptr_t(h)) })
	if err != nil {
		if !st.destroyed { // the library did not take the handle
			h.Delete()
		}
		return nil, err
	}
	return newComm(ptr, st)
}

func newComm(ptr *C.shardpoint_comm, st *commState) (*Comm, error) {
	var rank, size C.int32_t
	err := call(func() C.int {
		if rc := C.shardpoint_comm_rank(ptr, &rank); rc != 0 {
			return rc
		}
		return C.shardpoint_comm_size(ptr, &size)
	})
	if err != nil {
		C.shardpoint_comm_free(ptr)
		return nil, err
	}
	c := &Comm{ptr: ptr, rank: int(rank), size: int(size), state: st}
	runtime.SetFinalizer(c, (*Comm).Close)
	return c, nil
}

// Rank returns this process's rank.
func (c *Comm) Rank() int { return c.rank }

// Size returns the number of ranks.
func (c *Comm) Size() int { return c.size }

// Close frees the communicator. It fails with ErrState while a Save or Load still uses it.
// Closing twice is a no-op.
func (c *Comm) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ptr == nil {
		return nil
	}
	if c.users > 0 {
		return newError(ErrState, "the communicator is still used by %d open saves or loads", c.users)
	}
	C.shardpoint_comm_free(c.ptr) // calls the destroy callback, which releases the handle
	c.ptr = nil
	runtime.SetFinalizer(c, nil)
	return nil
}

// acquire marks the communicator as used by a save or load and returns its C pointer. A nil
// *Comm is the single-process default (NULL in C).
func (c *Comm) acquire() (*C.shardpoint_comm, error) {
	if c == nil {
		return nil, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ptr == nil {
		return nil, errClosed("communicator")
	}
	c.users++
	return c.ptr, nil
}

func (c *Comm) release() {
	if c == nil {
		return
	}
	c.mu.Lock()
	c.users--
	c.mu.Unlock()
}

// resetCause forgets a callback error left from an earlier collective.
func (c *Comm) resetCause() {
	if c != nil && c.state != nil {
		c.state.takeErr()
	}
}

// withCause attaches the Go error a callback returned to an ErrComm failure.
func (c *Comm) withCause(err error) error {
	var e *Error
	if c != nil && c.state != nil && errors.As(err, &e) && e.Code == ErrComm {
		e.Cause = c.state.takeErr()
	}
	return err
}

// cBytes views n bytes of C memory as a slice (empty, not nil, for n == 0).
func cBytes(p unsafe.Pointer, n uint64) []byte {
	if n == 0 || p == nil {
		return []byte{}
	}
	return unsafe.Slice((*byte)(p), n)
}

//export shardpointGoGather
func shardpointGoGather(h C.uintptr_t, send unsafe.Pointer, n C.uint64_t, recv unsafe.Pointer) (rc C.int) {
	st := cgo.Handle(h).Value().(*commState)
	defer func() {
		// A panic must not unwind through the library's C++ frames.
		if p := recover(); p != nil {
			rc = st.fail(fmt.Errorf("Gather panicked: %v", p))
		}
	}()
	var recvBuf []byte
	if recv != nil {
		recvBuf = cBytes(recv, uint64(n)*uint64(st.size))
	}
	if err := st.coll.Gather(cBytes(send, uint64(n)), recvBuf); err != nil {
		return st.fail(err)
	}
	return 0
}

//export shardpointGoBroadcast
func shardpointGoBroadcast(h C.uintptr_t, buf unsafe.Pointer, n C.uint64_t) (rc C.int) {
	st := cgo.Handle(h).Value().(*commState)
	defer func() {
		if p := recover(); p != nil {
			rc = st.fail(fmt.Errorf("Broadcast panicked: %v", p))
		}
	}()
	if err := st.coll.Broadcast(cBytes(buf, uint64(n))); err != nil {
		return st.fail(err)
	}
	return 0
}

//export shardpointGoDestroy
func shardpointGoDestroy(h C.uintptr_t) {
	handle := cgo.Handle(h)
	handle.Value().(*commState).destroyed = true
	handle.Delete()
}
