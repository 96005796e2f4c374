package shardpoint

/*
#include <stdlib.h>
#include <string.h>
#include "shardpoint.h"

// What the library's retention and gc callbacks report, collected in C memory (no Go callback
// is needed): steps, or names with sizes.
typedef struct sp_go_found {
	uint64_t *steps;
	char **names;
	uint64_t *sizes;
	uint64_t count, cap;
} sp_go_found;

static int sp_go_grow(sp_go_found *f) {
	if (f->count < f->cap) return 0;
	uint64_t cap = f->cap ? 2 * f->cap : 16;
	uint64_t *steps = realloc(f->steps, cap * sizeof *steps);
	if (steps) f->steps = steps;
	char **names = realloc(f->names, cap * sizeof *names);
	if (names) f->names = names;
	uint64_t *sizes = realloc(f->sizes, cap * sizeof *sizes);
	if (sizes) f->sizes = sizes;
	if (!steps || !names || !sizes) return 1;
	f->cap = cap;
	return 0;
}

static int sp_go_note_step(void *user, uint64_t step, uint64_t bytes) {
	sp_go_found *f = user;
	if (sp_go_grow(f)) return 1;
	f->steps[f->count] = step;
	f->names[f->count] = NULL;
	f->sizes[f->count] = bytes;
	f->count++;
	return 0;
}

static int sp_go_note_name(void *user, const char *name, uint64_t size) {
	sp_go_found *f = user;
	if (sp_go_grow(f)) return 1;
	f->names[f->count] = strdup(name);
	if (!f->names[f->count]) return 1;
	f->steps[f->count] = 0;
	f->sizes[f->count] = size;
	f->count++;
	return 0;
}

static void sp_go_found_free(sp_go_found *f) {
	for (uint64_t i = 0; i < f->count; ++i) free(f->names[i]);
	free(f->steps);
	free(f->names);
	free(f->sizes);
}

static int sp_go_apply_retention(shardpoint_manager *m, uint32_t flags, sp_go_found *f) {
	return shardpoint_manager_apply_retention(m, flags, sp_go_note_step, f, NULL);
}

static int sp_go_manager_gc(shardpoint_manager *m, uint32_t flags, sp_go_found *f) {
	return shardpoint_manager_gc(m, flags, sp_go_note_name, f, NULL, NULL);
}
*/
import "C"

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"
	"unsafe"
)

// MetricMode says which values of ManagerOptions.BestMetric are better.
type MetricMode int32

const (
	MetricMin MetricMode = C.SHARDPOINT_METRIC_MIN // smaller is better (a loss)
	MetricMax MetricMode = C.SHARDPOINT_METRIC_MAX // larger is better (an accuracy)
)

// ManagerOptions are a manager's retention rules. The zero value (or nil) keeps every step.
// Retention keeps a committed step when any rule keeps it, and always the newest committed step.
type ManagerOptions struct {
	Create     bool   // create the root (and its parents) when it is missing
	KeepLast   uint64 // the newest KeepLast committed steps; 0: rule off
	KeepEvery  uint64 // steps whose number is a multiple of KeepEvery; 0: off
	KeepBest   uint64 // the KeepBest best steps by BestMetric; 0: off
	BestMetric string // user metadata key holding a decimal number; needed with KeepBest
	BestMode   MetricMode
}

// StepState is the state of a step directory.
type StepState int32

const (
	StepCommitted StepState = C.SHARDPOINT_STEP_COMMITTED // saved and whole
	StepPartial   StepState = C.SHARDPOINT_STEP_PARTIAL   // no metadata: being written, or a killed save's debris
	StepDamaged   StepState = C.SHARDPOINT_STEP_DAMAGED   // metadata fails validation, or a data file is missing
)

func (s StepState) String() string {
	switch s {
	case StepCommitted:
		return "committed"
	case StepPartial:
		return "partial"
	case StepDamaged:
		return "damaged"
	}
	return fmt.Sprintf("StepState(%d)", int32(s))
}

// StepInfo describes one step directory of a root.
type StepInfo struct {
	Step      uint64
	State     StepState
	Busy      bool   // a save held its lock when it was listed (being written)
	Path      string // ROOT/step-N
	Bytes     uint64 // total size of its files
	DiskBytes uint64 // the space they take on disk
	Files     uint64
	Time      time.Time // committed: when its metadata was committed; else the directory's mtime
	Metric    string    // the BestMetric value of a committed step (HasMetric: it has one)
	HasMetric bool
	Message   string // partial and damaged: what is wrong
}

// Garbage is what GC removed (or would remove): a name relative to the root and its size.
type Garbage struct {
	Name string
	Size uint64
}

// Manager is a root directory of step checkpoints (ROOT/step-N) with retention; see the
// "Checkpoint manager" section of shardpoint.h. Deletions are crash-safe, never touch a step a
// save is writing nor the newest committed step (retention), and an open Reader of a deleted step
// keeps reading it. Safe for use by several goroutines (calls are serialized).
type Manager struct {
	mu     sync.Mutex
	ptr    *C.shardpoint_manager
	comm   *Comm
	metric *C.char // BestMetric, kept while the manager lives (the library copies it anyway)
	root   string
}

// OpenManager opens a manager on directory root. comm may be nil (one process); it must stay
// open until the Manager is closed. It gives NewSave its communicator and ApplyRetention its
// rank 0: in a job of several ranks every rank opens its manager and only rank 0 deletes.
func OpenManager(root string, comm *Comm, opts *ManagerOptions) (*Manager, error) {
	var copts C.shardpoint_manager_options
	if err := call(func() C.int {
		return C.shardpoint_manager_options_init(&copts, C.SHARDPOINT_MANAGER_OPTIONS_VERSION)
	}); err != nil {
		return nil, err
	}
	var metric *C.char
	if opts != nil {
		if opts.Create {
			copts.flags = C.SHARDPOINT_MANAGER_CREATE
		}
		copts.keep_last = C.uint64_t(opts.KeepLast)
		copts.keep_every = C.uint64_t(opts.KeepEvery)
		copts.keep_best = C.uint64_t(opts.KeepBest)
		copts.best_mode = C.int32_t(opts.BestMode)
		if opts.BestMetric != "" {
			metric = C.CString(opts.BestMetric)
			copts.best_metric = metric
		}
	}
	cptr, err := comm.acquire()
	if err != nil {
		C.free(unsafe.Pointer(metric))
		return nil, err
	}
	croot := C.CString(root)
	defer C.free(unsafe.Pointer(croot))
	var ptr *C.shardpoint_manager
	if err := call(func() C.int { return C.shardpoint_manager_open(&ptr, croot, cptr, &copts) }); err != nil {
		comm.release()
		C.free(unsafe.Pointer(metric))
		return nil, err
	}
	runtime.KeepAlive(comm)
	m := &Manager{ptr: ptr, comm: comm, metric: metric, root: root}
	runtime.SetFinalizer(m, (*Manager).Close)
	return m, nil
}

// Close frees the manager. Saves made from it stay valid. Closing twice is a no-op; the error is
// always nil (io.Closer).
func (m *Manager) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ptr == nil {
		return nil
	}
	C.shardpoint_manager_free(m.ptr)
	m.ptr = nil
	C.free(unsafe.Pointer(m.metric))
	m.metric = nil
	m.comm.release()
	m.comm = nil
	runtime.SetFinalizer(m, nil)
	return nil
}

// Root returns the directory the manager was opened on.
func (m *Manager) Root() string { return m.root }

// with runs f on the open handle, serialized.
func (m *Manager) with(f func(*C.shardpoint_manager) error) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ptr == nil {
		return errClosed("manager")
	}
	return f(m.ptr)
}

// StepPath returns the directory of step `step` (ROOT/step-N), whether it exists or not.
func (m *Manager) StepPath(step uint64) (string, error) {
	var path string
	err := m.with(func(p *C.shardpoint_manager) error {
		var out *C.char
		if err := call(func() C.int { return C.shardpoint_manager_step_path(p, C.uint64_t(step), &out) }); err != nil {
			return err
		}
		path = C.GoString(out)
		return nil
	})
	return path, err
}

// NewSave starts the save of step `step` into StepPath(step) over the manager's communicator:
// an ordinary Save (Commit, CommitAsync, Close). After its commit, call ApplyRetention.
func (m *Manager) NewSave(step uint64, opts *SaveOptions) (*Save, error) {
	path, err := m.StepPath(step)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	comm := m.comm
	m.mu.Unlock()
	return NewSave(path, comm, opts)
}

// LatestStep returns the highest committed step; ok is false when there is none.
func (m *Manager) LatestStep() (step uint64, ok bool, err error) {
	err = m.with(func(p *C.shardpoint_manager) error {
		var out C.uint64_t
		e := call(func() C.int { return C.shardpoint_manager_latest_step(p, &out) })
		if e == nil {
			step, ok = uint64(out), true
		} else if errors.Is(e, ErrNotFound) {
			e = nil
		}
		return e
	})
	return step, ok, err
}

// Steps lists every step directory now, by step number (committed, partial and damaged ones).
func (m *Manager) Steps() ([]StepInfo, error) {
	var steps []StepInfo
	err := m.with(func(p *C.shardpoint_manager) error {
		var n C.uint64_t
		if err := call(func() C.int { return C.shardpoint_manager_list(p, &n) }); err != nil {
			return err
		}
		for i := C.uint64_t(0); i < n; i++ {
			var s C.shardpoint_step_info
			if err := call(func() C.int { return C.shardpoint_manager_step_info(p, i, &s) }); err != nil {
				return err
			}
			info := StepInfo{
				Step: uint64(s.step), State: StepState(s.state), Busy: s.busy != 0, Path: C.GoString(s.path),
				Bytes: uint64(s.bytes), DiskBytes: uint64(s.disk_bytes), Files: uint64(s.file_count),
				Time: time.Unix(0, int64(s.time_unix_ns)), Message: C.GoString(s.message),
			}
			if s.metric != nil {
				info.Metric, info.HasMetric = C.GoString(s.metric), true
			}
			steps = append(steps, info)
		}
		return nil
	})
	return steps, err
}

// DeleteStep deletes step `step` (in any state) crash-safely: ErrNotFound when there is no such
// step, ErrState when a save is writing it (nothing is touched).
func (m *Manager) DeleteStep(step uint64) error {
	return m.with(func(p *C.shardpoint_manager) error {
		return call(func() C.int { return C.shardpoint_manager_delete_step(p, C.uint64_t(step)) })
	})
}

// ApplyRetention deletes, on rank 0 of the manager's communicator (other ranks: nothing), the
// committed steps the options do not keep, the debris of killed saves below the newest committed
// step and the leftovers of killed deletions, skipping steps a save is writing. It returns the
// steps deleted. Not collective; call it after a successful commit.
func (m *Manager) ApplyRetention() ([]uint64, error) { return m.retention(0) }

// PlanRetention returns the steps ApplyRetention would delete now, deleting nothing.
func (m *Manager) PlanRetention() ([]uint64, error) {
	return m.retention(C.SHARDPOINT_RETENTION_DRY_RUN)
}

func (m *Manager) retention(flags C.uint32_t) ([]uint64, error) {
	var steps []uint64
	err := m.with(func(p *C.shardpoint_manager) error {
		found := (*C.sp_go_found)(C.calloc(1, C.sizeof_sp_go_found))
		defer C.free(unsafe.Pointer(found))
		defer C.sp_go_found_free(found)
		err := call(func() C.int { return C.sp_go_apply_retention(p, flags, found) })
		for _, s := range unsafe.Slice(found.steps, found.count) {
			steps = append(steps, uint64(s))
		}
		return err
	})
	return steps, err
}

// GC removes the leftovers of killed deletions, the debris of killed saves in every step no
// save is writing, and empty partial steps below the newest committed one; with dryRun it only
// reports them.
func (m *Manager) GC(dryRun bool) ([]Garbage, error) {
	var flags C.uint32_t
	if dryRun {
		flags = C.SHARDPOINT_GC_DRY_RUN
	}
	var out []Garbage
	err := m.with(func(p *C.shardpoint_manager) error {
		found := (*C.sp_go_found)(C.calloc(1, C.sizeof_sp_go_found))
		defer C.free(unsafe.Pointer(found))
		defer C.sp_go_found_free(found)
		err := call(func() C.int { return C.sp_go_manager_gc(p, flags, found) })
		names := unsafe.Slice(found.names, found.count)
		sizes := unsafe.Slice(found.sizes, found.count)
		for i := range names {
			out = append(out, Garbage{Name: C.GoString(names[i]), Size: uint64(sizes[i])})
		}
		return err
	})
	return out, err
}

// OpenStep opens a Reader of step `step`.
func (m *Manager) OpenStep(step uint64, opts *LoadOptions) (*Reader, error) {
	path, err := m.StepPath(step)
	if err != nil {
		return nil, err
	}
	return OpenReader(path, opts)
}

// DeleteCheckpoint deletes checkpoint directory dir as crash-safely as a step
// (shardpoint_checkpoint_delete): ErrNotFound when it holds no checkpoint, ErrState when a save
// is writing it.
func DeleteCheckpoint(dir string) error {
	cdir := C.CString(dir)
	defer C.free(unsafe.Pointer(cdir))
	return call(func() C.int { return C.shardpoint_checkpoint_delete(cdir) })
}
