package shardpoint

/*
#include <stdint.h>
#include "shardpoint.h"

// Defined in comm_shim.c.
int sp_go_save_set_progress(shardpoint_save *save, uintptr_t handle);
*/
import "C"

import (
	"context"
	"errors"
	"runtime"
	"runtime/cgo"
	"sync"
)

// Staging is host memory that asynchronous saves copy their data into (Save.CommitAsync),
// allocated once and reused: its pages are faulted in when it is made (on huge pages where the
// kernel gives them, locked in memory where allowed), so that each save's copy runs at memory
// speed. One save uses it at a time.
type Staging struct {
	mu  sync.Mutex
	ptr *C.shardpoint_staging
}

// NewStaging allocates a staging area of capacity bytes.
func NewStaging(capacity uint64) (*Staging, error) {
	var ptr *C.shardpoint_staging
	if err := call(func() C.int { return C.shardpoint_staging_new(&ptr, C.uint64_t(capacity)) }); err != nil {
		return nil, err
	}
	st := &Staging{ptr: ptr}
	runtime.SetFinalizer(st, (*Staging).Close)
	return st, nil
}

// Capacity is the area's size in bytes.
func (st *Staging) Capacity() (uint64, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.ptr == nil {
		return 0, errClosed("staging")
	}
	var n C.uint64_t
	err := call(func() C.int { return C.shardpoint_staging_capacity(st.ptr, &n) })
	return uint64(n), err
}

// Close frees the area, after waiting for a save still using it. Closing twice is a no-op.
func (st *Staging) Close() error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.ptr != nil {
		C.shardpoint_staging_free(st.ptr)
		st.ptr = nil
		runtime.SetFinalizer(st, nil)
	}
	return nil
}

// asyncState is what a Save keeps while it commits in the background.
type asyncState struct {
	staging  *Staging    // kept open until the save ends
	own      bool        // made by CommitAsync for this save: closed with it
	progress *cgo.Handle // the reporting state the library's thread calls into, if any
	state    *progressState
}

// StagingSize is the bytes of staging this rank's data takes (what was added so far).
func (s *Save) StagingSize() (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ptr == nil {
		return 0, errClosed("save")
	}
	var n C.uint64_t
	err := call(func() C.int { return C.shardpoint_save_staging_size(s.ptr, &n) })
	return uint64(n), err
}

// CommitAsync copies this rank's data into staging, then commits in the background and returns:
// the data's slices may change from then on. Wait gives the outcome, as Commit would have; Done
// polls. staging nil: an area sized to this save. While an earlier save still uses staging, this
// first waits for it. When ctx is done before this rank's data is written, the save is canceled
// (Wait returns ErrCanceled wrapping ctx.Err()). Until Wait returns the communicator is used from
// the library's thread (its Collectives are called there) and so is the progress function.
// ErrRange (nothing started) when the data does not fit.
func (s *Save) CommitAsync(ctx context.Context, staging *Staging) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ptr == nil {
		return errClosed("save")
	}
	own := staging == nil
	if own {
		var n C.uint64_t
		if err := call(func() C.int { return C.shardpoint_save_staging_size(s.ptr, &n) }); err != nil {
			return err
		}
		made, err := NewStaging(uint64(n))
		if err != nil {
			return err
		}
		staging = made
	}
	err := s.startAsync(ctx, staging, own)
	if err != nil && own {
		staging.Close() // nothing started: nothing uses it
	}
	return err
}

func (s *Save) startAsync(ctx context.Context, staging *Staging, own bool) error {
	staging.mu.Lock()
	defer staging.mu.Unlock()
	if staging.ptr == nil {
		return errClosed("staging")
	}
	as := &asyncState{staging: staging, own: own}
	if ctx == nil {
		ctx = context.Background()
	}
	if ctx.Done() != nil || s.progress != nil {
		as.state = &progressState{ctx: ctx, fn: s.progress}
		h := cgo.NewHandle(as.state)
		as.progress = &h
		if err := call(func() C.int { return C.sp_go_save_set_progress(s.ptr, C.uintptr_t(h)) }); err != nil {
			h.Delete()
			return err
		}
	}
	s.comm.resetCause()
	if err := call(func() C.int { return C.shardpoint_save_commit_async(s.ptr, staging.ptr) }); err != nil {
		if as.progress != nil {
			_ = call(func() C.int { return C.sp_go_save_set_progress(s.ptr, 0) })
			as.progress.Delete()
		}
		return err
	}
	s.pinner.Unpin() // copied: the library does not read the data again
	s.async = as
	return nil
}

// Wait blocks until the asynchronous commit ends and returns its outcome; later calls return
// the same. ErrState when CommitAsync was not called.
func (s *Save) Wait() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ptr == nil {
		return errClosed("save")
	}
	err := call(func() C.int { return C.shardpoint_save_wait(s.ptr) })
	if as := s.async; as != nil && as.state != nil {
		if as.state.panicked != nil {
			p := as.state.panicked
			as.state.panicked = nil
			panic(p)
		}
		var e *Error
		if as.state.canceled != nil && errors.As(err, &e) && e.Code == ErrCanceled {
			e.Cause = as.state.canceled
		}
	}
	return s.comm.withCause(err)
}

// Done reports whether the asynchronous commit ended (Wait then returns at once).
func (s *Save) Done() (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ptr == nil {
		return false, errClosed("save")
	}
	var done C.int32_t
	err := call(func() C.int { return C.shardpoint_save_poll(s.ptr, &done) })
	return done != 0, err
}

// Cancel asks the asynchronous commit to stop and returns at once: Wait then returns
// ErrCanceled, unless this rank's data was already written (then it commits).
func (s *Save) Cancel() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ptr == nil {
		return errClosed("save")
	}
	return call(func() C.int { return C.shardpoint_save_cancel(s.ptr) })
}
