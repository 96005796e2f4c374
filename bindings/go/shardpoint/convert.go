package shardpoint

/*
#include <stdint.h>
#include <stdlib.h>
#include "shardpoint.h"

// Defined in comm_shim.c.
void sp_go_convert_set_progress(shardpoint_convert_options *options, uintptr_t handle);
*/
import "C"

import (
	"context"
	"unsafe"
)

// PhaseConvert is the progress phase of a conversion (tensor bytes copied).
const PhaseConvert Phase = C.SHARDPOINT_PROGRESS_CONVERT

// ConvertOptions are the options of ConvertToSafetensors and ConvertFromSafetensors; nil means
// the defaults.
type ConvertOptions struct {
	Overwrite bool // replace what is at the output (a safetensors model, or a checkpoint)
	SkipBytes bool // to safetensors: leave blobs out (else a checkpoint holding one is ErrKind)
	NoFsync   bool // skip every fsync (see SaveOptions.NoFsync)
	// To safetensors: 0 writes one file; else a sharded Hugging Face model directory whose files
	// hold at most this many tensor bytes each.
	MaxShardSize uint64
	BufferSize   uint64       // bytes per copy buffer (two are used); 0: 64 MiB
	Save         *SaveOptions // from safetensors: how the checkpoint is saved (nil: defaults)
	IOThreads    int          // 0: one per core
	Progress     ProgressFunc // reports on the calling goroutine (PhaseConvert)
}

// ConvertToSafetensors writes every tensor of the checkpoint in ckptDir, whole, and its user
// metadata to out: one safetensors file, or with MaxShardSize a sharded model directory
// (model-0000k-of-0000n.safetensors and model.safetensors.index.json). Nothing is left at out
// on failure; a done ctx cancels it (ErrCanceled wrapping ctx.Err()).
func ConvertToSafetensors(ctx context.Context, ckptDir, out string, opts *ConvertOptions) error {
	return convert(ctx, ckptDir, out, opts, true)
}

// ConvertFromSafetensors saves the safetensors file, index or model directory in as a checkpoint
// in ckptDir (an ordinary, atomic save).
func ConvertFromSafetensors(ctx context.Context, in, ckptDir string, opts *ConvertOptions) error {
	return convert(ctx, in, ckptDir, opts, false)
}

func convert(ctx context.Context, from, to string, opts *ConvertOptions, toSafetensors bool) error {
	var copts C.shardpoint_convert_options
	if err := call(func() C.int {
		return C.shardpoint_convert_options_init(&copts, C.SHARDPOINT_CONVERT_OPTIONS_VERSION)
	}); err != nil {
		return err
	}
	var fn ProgressFunc
	if opts != nil {
		if opts.Overwrite {
			copts.flags |= C.SHARDPOINT_CONVERT_OVERWRITE
		}
		if opts.SkipBytes {
			copts.flags |= C.SHARDPOINT_CONVERT_SKIP_BYTES
		}
		if opts.NoFsync {
			copts.flags |= C.SHARDPOINT_CONVERT_NO_FSYNC
		}
		if opts.IOThreads < 0 || uint64(opts.IOThreads) > 1<<32-1 {
			return newError(ErrInvalid, "I/O thread count out of range")
		}
		copts.max_shard_size = C.uint64_t(opts.MaxShardSize)
		copts.buffer_size = C.uint64_t(opts.BufferSize)
		copts.io_threads = C.uint32_t(opts.IOThreads)
		fn = opts.Progress
	}
	var save *C.shardpoint_save_options
	if opts != nil && opts.Save != nil {
		s, cid, err := cSaveOptions(opts.Save)
		if err != nil {
			return err
		}
		defer C.free(unsafe.Pointer(cid))
		save = (*C.shardpoint_save_options)(C.malloc(C.size_t(unsafe.Sizeof(s))))
		defer C.free(unsafe.Pointer(save))
		*save = s
	}
	copts.save_options = save
	cfrom, cto := C.CString(from), C.CString(to)
	defer C.free(unsafe.Pointer(cfrom))
	defer C.free(unsafe.Pointer(cto))
	return withProgress(ctx, fn,
		func(h C.uintptr_t) C.int { C.sp_go_convert_set_progress(&copts, h); return C.SHARDPOINT_OK }, nil,
		func() error {
			return call(func() C.int {
				if toSafetensors {
					return C.shardpoint_convert_to_safetensors(cfrom, cto, &copts)
				}
				return C.shardpoint_convert_from_safetensors(cfrom, cto, &copts)
			})
		})
}
