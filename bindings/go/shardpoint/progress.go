package shardpoint

/*
#include <stdint.h>
#include "shardpoint.h"

// Defined in comm_shim.c.
int sp_go_save_set_progress(shardpoint_save *save, uintptr_t handle);
int sp_go_load_set_progress(shardpoint_load *load, uintptr_t handle);
int sp_go_reader_set_progress(shardpoint_reader *reader, uintptr_t handle);
*/
import "C"

import (
	"context"
	"errors"
	"fmt"
	"runtime/cgo"
)

// Phase is what a long operation is doing when it reports progress.
type Phase int32

const (
	PhaseWrite  Phase = C.SHARDPOINT_PROGRESS_WRITE  // a save writing this rank's data
	PhaseRead   Phase = C.SHARDPOINT_PROGRESS_READ   // a load reading this rank's requests
	PhaseVerify Phase = C.SHARDPOINT_PROGRESS_VERIFY // a verify checking stored bytes
)

func (p Phase) String() string {
	switch p {
	case PhaseWrite:
		return "write"
	case PhaseRead:
		return "read"
	case PhaseVerify:
		return "verify"
	case PhaseConvert:
		return "convert"
	}
	return fmt.Sprintf("Phase(%d)", int32(p))
}

// Progress is one report: Done of Total bytes of Phase are through on this rank.
type Progress struct {
	Phase       Phase
	Done, Total uint64
}

// ProgressFunc receives reports on the goroutine of the operation: once at the start (Done 0),
// then at most every 50 ms, then once with Done == Total.
type ProgressFunc func(Progress)

// progressState is what the library's progress callback reaches through a cgo.Handle: the
// context that cancels the operation, the host's function, and what stopped it.
type progressState struct {
	ctx      context.Context
	fn       ProgressFunc
	canceled error // ctx.Err() when the context stopped the operation
	panicked any
}

//export shardpointGoProgress
func shardpointGoProgress(h C.uintptr_t, phase C.int32_t, done, total C.uint64_t) (rc C.int) {
	st := cgo.Handle(h).Value().(*progressState)
	defer func() {
		// A panic must not unwind through the library's C++ frames: it cancels, and the
		// operation's caller re-panics.
		if p := recover(); p != nil {
			st.panicked = p
			rc = 1
		}
	}()
	if err := st.ctx.Err(); err != nil {
		st.canceled = err
		return 1
	}
	if st.fn != nil {
		st.fn(Progress{Phase: Phase(phase), Done: uint64(done), Total: uint64(total)})
	}
	return 0
}

// withProgress runs op with the library reporting to ctx and fn: install(handle) hands the
// callback to the library, uninstall (nil for handles used once) takes it back. Without a
// cancelable context and without fn, nothing is installed. A cancellation by ctx comes back as
// ErrCanceled wrapping ctx.Err(), so that errors.Is(err, context.Canceled) holds.
func withProgress(ctx context.Context, fn ProgressFunc, install func(handle C.uintptr_t) C.int, uninstall func() C.int,
	op func() error) error {
	if ctx == nil {
		ctx = context.Background()
	}
	if ctx.Done() == nil && fn == nil {
		return op()
	}
	st := &progressState{ctx: ctx, fn: fn}
	h := cgo.NewHandle(st)
	defer h.Delete()
	if err := call(func() C.int { return install(C.uintptr_t(h)) }); err != nil {
		return err
	}
	err := op()
	if uninstall != nil {
		if e := call(uninstall); e != nil && err == nil {
			err = e
		}
	}
	if st.panicked != nil {
		panic(st.panicked)
	}
	var e *Error
	if st.canceled != nil && errors.As(err, &e) && e.Code == ErrCanceled {
		e.Cause = st.canceled
	}
	return err
}

// SetProgress makes Commit report this rank's write to fn (nil: no reports).
func (s *Save) SetProgress(fn ProgressFunc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.progress = fn
}

// CommitContext is Commit, stopped when ctx is done: this rank stops writing before its next
// piece, the save fails with ErrCanceled (wrapping ctx.Err(); with a communicator the other
// ranks fail with ErrRank) and nothing is committed: a checkpoint already in the directory is
// untouched. The context is checked from the start of the write on; the planning before it is
// collective and runs to its end.
func (s *Save) CommitContext(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ptr == nil {
		return errClosed("save")
	}
	s.comm.resetCause()
	err := withProgress(ctx, s.progress,
		func(h C.uintptr_t) C.int { return C.sp_go_save_set_progress(s.ptr, h) }, nil,
		func() error { return call(func() C.int { return C.shardpoint_save_commit(s.ptr) }) })
	// The library reads the data only during this call.
	s.pinner.Unpin()
	return s.comm.withCause(err)
}

// SetProgress makes Execute report this rank's read to fn (nil: no reports).
func (l *Load) SetProgress(fn ProgressFunc) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.progress = fn
}

// ExecuteContext is Execute, stopped when ctx is done: this rank stops reading before its next
// piece and the load fails with ErrCanceled wrapping ctx.Err() (with a communicator the other
// ranks fail with ErrRank). The destinations may then hold partial data.
func (l *Load) ExecuteContext(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ptr == nil {
		return errClosed("load")
	}
	l.comm.resetCause()
	err := withProgress(ctx, l.progress,
		func(h C.uintptr_t) C.int { return C.sp_go_load_set_progress(l.ptr, h) }, nil,
		func() error { return call(func() C.int { return C.shardpoint_load_execute(l.ptr) }) })
	l.pinner.Unpin() // the library writes destinations only during this call
	return l.comm.withCause(err)
}

// VerifyContext is Verify, stopped when ctx is done (ErrCanceled wrapping ctx.Err()), reporting
// to fn (may be nil). Verifies with a context or a progress function take turns on one reader;
// other reads go on meanwhile.
func (r *Reader) VerifyContext(ctx context.Context, fn ProgressFunc) error {
	return r.use(func(p *C.shardpoint_reader) error {
		if ctx == nil || (ctx.Done() == nil && fn == nil) {
			return call(func() C.int { return C.shardpoint_reader_verify(p) })
		}
		r.verifyMu.Lock() // the reader has one progress callback at a time
		defer r.verifyMu.Unlock()
		return withProgress(ctx, fn,
			func(h C.uintptr_t) C.int { return C.sp_go_reader_set_progress(p, h) },
			func() C.int { return C.sp_go_reader_set_progress(p, 0) },
			func() error { return call(func() C.int { return C.shardpoint_reader_verify(p) }) })
	})
}
