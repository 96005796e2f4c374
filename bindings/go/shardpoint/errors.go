package shardpoint

/*
#include "shardpoint.h"
*/
import "C"

import (
	"fmt"
	"io/fs"
	"runtime"
	"syscall"
)

// Code is a stable shardpoint error code (a negative shardpoint_error value). Codes are errors
// themselves, so they serve as sentinels: errors.Is(err, shardpoint.ErrChecksum).
type Code int32

const (
	ErrInvalid   Code = C.SHARDPOINT_EINVAL
	ErrNoMem     Code = C.SHARDPOINT_ENOMEM
	ErrIO        Code = C.SHARDPOINT_EIO
	ErrNotFound  Code = C.SHARDPOINT_ENOTFOUND
	ErrExists    Code = C.SHARDPOINT_EEXISTS
	ErrFormat    Code = C.SHARDPOINT_EFORMAT
	ErrChecksum  Code = C.SHARDPOINT_ECHECKSUM
	ErrTruncated Code = C.SHARDPOINT_ETRUNCATED
	ErrVersion   Code = C.SHARDPOINT_EVERSION
	ErrDType     Code = C.SHARDPOINT_EDTYPE
	ErrShape     Code = C.SHARDPOINT_ESHAPE
	ErrPath      Code = C.SHARDPOINT_EPATH
	ErrConflict  Code = C.SHARDPOINT_ECONFLICT
	ErrRank      Code = C.SHARDPOINT_ERANK
	ErrComm      Code = C.SHARDPOINT_ECOMM
	ErrUncovered Code = C.SHARDPOINT_EUNCOVERED
	ErrState     Code = C.SHARDPOINT_ESTATE
	ErrKind      Code = C.SHARDPOINT_EKIND
	ErrRange     Code = C.SHARDPOINT_ERANGE
	// ErrNoSpace: no space left on the device, or a disk quota is exhausted. errors.Is also
	// matches it against syscall.ENOSPC.
	ErrNoSpace Code = C.SHARDPOINT_ENOSPC
	// ErrNotDurable: the save WAS committed (the new checkpoint is in place and loads), but a
	// step after the commit point (the directory fsync) failed, so it may not survive a power
	// loss. The previous checkpoint's files were kept (the next save or a gc removes them).
	ErrNotDurable Code = C.SHARDPOINT_ENOTDURABLE
	// ErrCanceled: the context (or a progress callback) stopped the operation; nothing was
	// committed. errors.Is also matches the context's error (context.Canceled or
	// context.DeadlineExceeded), which the Error carries as its Cause.
	ErrCanceled Code = C.SHARDPOINT_ECANCELED
	ErrInternal Code = C.SHARDPOINT_EINTERNAL
)

// Name returns the library's stable name for the code ("SHARDPOINT_ECHECKSUM").
func (c Code) Name() string { return C.GoString(C.shardpoint_error_name(C.int(c))) }

func (c Code) Error() string { return c.Name() }

// Is lets the standard library's sentinels find the codes they stand for:
// errors.Is(err, fs.ErrNotExist) finds ErrNotFound, fs.ErrExist finds ErrExists and
// syscall.ENOSPC finds ErrNoSpace.
func (c Code) Is(target error) bool {
	switch c {
	case ErrNotFound:
		return target == fs.ErrNotExist
	case ErrExists:
		return target == fs.ErrExist
	case ErrNoSpace:
		return target == syscall.ENOSPC
	}
	return false
}

// Error is a failure reported by the library (or by the binding's own argument checks, which use
// the same codes). Match it with errors.Is(err, shardpoint.ErrDType) or errors.As.
type Error struct {
	Code    Code   // the C code
	Name    string // shardpoint_error_name(Code)
	Message string // shardpoint_last_error() right after the failing call
	// Cause is the Go error behind the failure when there is one, e.g. what a Collectives
	// method returned when the library reports ErrComm.
	Cause error
}

func (e *Error) Error() string {
	msg := "shardpoint: " + e.Name
	if e.Message != "" {
		msg += ": " + e.Message
	}
	if e.Cause != nil {
		msg += " (cause: " + e.Cause.Error() + ")"
	}
	return msg
}

// Is reports whether target is this error's Code (or an *Error with the same Code), or the
// standard sentinel of its Code (fs.ErrNotExist, fs.ErrExist, syscall.ENOSPC; see Code.Is).
func (e *Error) Is(target error) bool {
	switch t := target.(type) {
	case Code:
		return e.Code == t
	case *Error:
		return e.Code == t.Code
	}
	return e.Code.Is(target)
}

func (e *Error) Unwrap() error { return e.Cause }

// call runs one fallible C function and turns its result into an error. The message is
// thread-local in C, so the goroutine stays on its OS thread until the message is read.
func call(f func() C.int) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	rc := f()
	if rc == C.SHARDPOINT_OK {
		return nil
	}
	return &Error{
		Code:    Code(rc),
		Name:    C.GoString(C.shardpoint_error_name(rc)),
		Message: C.GoString(C.shardpoint_last_error()),
	}
}

// newError makes an error for a failure the binding detects before calling the library.
func newError(code Code, format string, args ...any) error {
	return &Error{Code: code, Name: code.Name(), Message: fmt.Sprintf(format, args...)}
}

func errClosed(what string) error { return newError(ErrState, "%s is closed", what) }
