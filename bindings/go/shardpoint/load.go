package shardpoint

/*
#include <stdlib.h>
#include "shardpoint.h"
*/
import "C"

import (
	"context"
	"runtime"
	"sync"
	"unsafe"
)

// Load is a set of read requests executed together by Execute (collective when the load has a
// communicator). Not safe for concurrent use by several goroutines.
//
// Destinations given to a Load are pinned (runtime.Pinner), not copied: the library writes them
// during Execute. They are unpinned when Execute returns or the Load is closed; do not use them
// in between.
type Load struct {
	mu       sync.Mutex
	ptr      *C.shardpoint_load
	reader   *Reader
	comm     *Comm
	pinner   runtime.Pinner
	progress ProgressFunc
}

// NewLoad starts a load from r. comm may be nil (a single process); else Execute is collective
// over it. The reader and comm must stay open until the Load is closed.
func (r *Reader) NewLoad(comm *Comm) (*Load, error) {
	cptr, err := comm.acquire()
	if err != nil {
		return nil, err
	}
	var ptr *C.shardpoint_load
	err = r.use(func(rp *C.shardpoint_reader) error {
		if err := call(func() C.int { return C.shardpoint_load_new(&ptr, rp, cptr) }); err != nil {
			return err
		}
		r.loads.Add(1) // under the read lock, so Close cannot free the reader in between
		return nil
	})
	if err != nil {
		comm.release()
		return nil, err
	}
	l := &Load{ptr: ptr, reader: r, comm: comm}
	runtime.SetFinalizer(l, (*Load).Close)
	return l, nil
}

// LoadTensor requests box `box` of tensor fqn into dst in C order. dst must hold exactly the
// box's elements, and a box from Whole or Rows must have been made for the tensor's shape
// (ErrShape otherwise). The dtype follows from T and must be the stored one; the box's rank must
// be the tensor's (Box{} for a scalar; see Whole).
func LoadTensor[T Element](l *Load, fqn string, box Box, dst []T) error {
	return LoadTensorView(l, fqn, box, dst, View{})
}

// LoadTensorView is LoadTensor with the box's elements placed in dst by v (start and element
// strides, e.g. a sub-box of a larger array or a transposed layout).
func LoadTensorView[T Element](l *Load, fqn string, box Box, dst []T, v View) error {
	buf, esize := bytesOf(dst)
	return l.addTensor(fqn, DTypeOf[T](), box, buf, esize, v)
}

// AddTensorRaw requests box `box` of tensor fqn, of the given dtype, into raw bytes placed by v
// (counted in elements of dtype).
func (l *Load) AddTensorRaw(fqn string, dtype DType, box Box, dst []byte, v View) error {
	return l.addTensor(fqn, dtype, box, dst, dtype.Size(), v)
}

func (l *Load) addTensor(fqn string, dtype DType, box Box, dst []byte, esize int, v View) error {
	l.mu.Lock()
	reader := l.reader
	l.mu.Unlock()
	if reader == nil {
		return errClosed("load")
	}
	if err := reader.checkShape(fqn, box); err != nil {
		return err
	}
	offsets, sizes, p, err := destination(fqn, box, dst, esize, v)
	if err != nil {
		return err
	}
	cfqn := C.CString(fqn)
	defer C.free(unsafe.Pointer(cfqn))
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ptr == nil {
		return errClosed("load")
	}
	if p != nil {
		l.pinner.Pin(p) // written during Execute
	}
	return call(func() C.int {
		return C.shardpoint_load_add_tensor(l.ptr, cfqn, C.int32_t(dtype), C.uint32_t(len(sizes)),
			u64ptr(offsets), u64ptr(sizes), p, i64ptr(v.Strides))
	})
}

// AddBytes requests blob fqn into dst, which must hold at least the blob's length
// (EntryInfo.NBytes; else ErrRange).
func (l *Load) AddBytes(fqn string, dst []byte) error {
	var p unsafe.Pointer
	if len(dst) > 0 {
		p = unsafe.Pointer(&dst[0])
	}
	cfqn := C.CString(fqn)
	defer C.free(unsafe.Pointer(cfqn))
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ptr == nil {
		return errClosed("load")
	}
	if p != nil {
		l.pinner.Pin(p)
	}
	return call(func() C.int { return C.shardpoint_load_add_bytes(l.ptr, cfqn, p, C.uint64_t(len(dst))) })
}

// Skipped returns how many requests were skipped because AllowPartial was set and their entry
// is missing.
func (l *Load) Skipped() (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ptr == nil {
		return 0, errClosed("load")
	}
	var n C.uint64_t
	err := call(func() C.int { return C.shardpoint_load_skipped_count(l.ptr, &n) })
	return int(n), err
}

// Execute reads every requested byte into the destinations, verifying checksums unless the
// reader was opened with NoVerify. Collective when the load has a communicator. Can be called
// once; on failure the destinations may hold partial data.
func (l *Load) Execute() error { return l.ExecuteContext(context.Background()) }

// Close frees the load and unpins its destinations. Closing twice is a no-op. It always
// returns nil; the error is there for io.Closer.
func (l *Load) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ptr == nil {
		return nil
	}
	C.shardpoint_load_free(l.ptr)
	l.ptr = nil
	l.pinner.Unpin()
	l.reader.loads.Add(-1)
	l.reader = nil
	l.comm.release()
	l.comm = nil
	runtime.SetFinalizer(l, nil)
	return nil
}
