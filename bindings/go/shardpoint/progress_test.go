package shardpoint

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// progressLog records reports and checks their order: the first at 0, never backwards, one
// total.
type progressLog struct {
	mu      sync.Mutex
	reports []Progress
}

func (l *progressLog) add(p Progress) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reports = append(l.reports, p)
}

func (l *progressLog) check(t *testing.T, phase Phase, total uint64) {
	t.Helper()
	if len(l.reports) < 2 {
		t.Fatalf("%d reports, want at least the first and the last", len(l.reports))
	}
	first, last := l.reports[0], l.reports[len(l.reports)-1]
	if first.Done != 0 || last.Done != last.Total || (total != 0 && last.Total != total) {
		t.Fatalf("reports %v: want 0 first and %d of %d last", l.reports, total, total)
	}
	for i, p := range l.reports {
		if p.Phase != phase || p.Total != last.Total || (i > 0 && p.Done < l.reports[i-1].Done) {
			t.Fatalf("report %d of %v is out of order (phase %s)", i, l.reports, phase)
		}
	}
}

const progressElems = 4 << 20 // 16 MiB of float32: several pieces of work

func saveProgressModel(t *testing.T, dir string, value float32, opts *SaveOptions, ctx context.Context,
	fn ProgressFunc) error {
	t.Helper()
	s := newSave(t, dir, nil, opts)
	for _, name := range []string{"a", "b", "c", "d"} {
		data := fill(progressElems/4, func(i int) float32 { return value + float32(i%97) })
		must(t, SaveTensor(s, name, []uint64{progressElems / 4}, Whole([]uint64{progressElems / 4}), data))
	}
	s.SetProgress(fn)
	return s.CommitContext(ctx)
}

func checkProgressModel(t *testing.T, dir string, value float32) {
	t.Helper()
	r := openReader(t, dir, nil)
	for _, name := range []string{"a", "b", "c", "d"} {
		equal(t, name, readAll[float32](t, r, name), fill(progressElems/4, func(i int) float32 { return value + float32(i%97) }))
	}
}

func TestProgressReportsSaveLoadAndVerify(t *testing.T) {
	dir := ckpt(t)
	var saved progressLog
	must(t, saveProgressModel(t, dir, 1, nil, context.Background(), saved.add))
	saved.check(t, PhaseWrite, progressElems*4)

	r := openReader(t, dir, nil)
	l, err := r.NewLoad(nil)
	must(t, err)
	defer l.Close()
	got := make([]float32, progressElems/4)
	must(t, LoadTensor(l, "c", Whole([]uint64{progressElems / 4}), got))
	var loaded progressLog
	l.SetProgress(loaded.add)
	must(t, l.ExecuteContext(context.Background()))
	loaded.check(t, PhaseRead, progressElems)
	equal(t, "c", got, fill(progressElems/4, func(i int) float32 { return 1 + float32(i%97) }))

	var verified progressLog
	must(t, r.VerifyContext(context.Background(), verified.add))
	verified.check(t, PhaseVerify, progressElems*4)
	if PhaseVerify.String() != "verify" || Phase(9).String() != "Phase(9)" {
		t.Fatalf("phase names: %s, %s", PhaseVerify, Phase(9))
	}
}

// A canceled or expired context fails the save with ErrCanceled wrapping the context's error,
// and the checkpoint that was there is untouched.
func TestCanceledSaveKeepsThePreviousCheckpoint(t *testing.T) {
	dir := ckpt(t)
	must(t, saveProgressModel(t, dir, 1, nil, context.Background(), nil))
	overwrite := &SaveOptions{Overwrite: true, IOThreads: 1}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := saveProgressModel(t, dir, 2, overwrite, ctx, nil)
	wantCode(t, err, ErrCanceled)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("%v does not match context.Canceled", err)
	}
	checkProgressModel(t, dir, 1)

	expired, stop := context.WithTimeout(context.Background(), -time.Second)
	defer stop()
	err = saveProgressModel(t, dir, 2, overwrite, expired, nil)
	if !errors.Is(err, ErrCanceled) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("%v: want ErrCanceled and context.DeadlineExceeded", err)
	}

	// Canceled midway: after the first piece was written.
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	var log progressLog
	err = saveProgressModel(t, dir, 2, overwrite, ctx, func(p Progress) {
		log.add(p)
		if p.Done > 0 {
			cancel()
		}
		time.Sleep(60 * time.Millisecond) // the next poll is due at once
	})
	wantCode(t, err, ErrCanceled)
	last := log.reports[len(log.reports)-1]
	if last.Done == 0 || last.Done >= last.Total {
		t.Fatalf("canceled at %v: want midway", last)
	}
	checkProgressModel(t, dir, 1)
}

func TestCanceledLoadAndVerify(t *testing.T) {
	dir := ckpt(t)
	must(t, saveProgressModel(t, dir, 1, nil, context.Background(), nil))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r := openReader(t, dir, nil)
	l, err := r.NewLoad(nil)
	must(t, err)
	defer l.Close()
	got := make([]float32, progressElems/4)
	must(t, LoadTensor(l, "a", Whole([]uint64{progressElems / 4}), got))
	err = l.ExecuteContext(ctx)
	if !errors.Is(err, ErrCanceled) || !errors.Is(err, context.Canceled) {
		t.Fatalf("load: %v, want ErrCanceled and context.Canceled", err)
	}
	err = r.VerifyContext(ctx, nil)
	if !errors.Is(err, ErrCanceled) || !errors.Is(err, context.Canceled) {
		t.Fatalf("verify: %v, want ErrCanceled and context.Canceled", err)
	}
	must(t, r.Verify()) // the reader's callback was taken back: a plain verify runs to its end
}

// A panic in a progress function stops the operation and comes back to its caller.
func TestProgressPanicReachesTheCaller(t *testing.T) {
	dir := ckpt(t)
	defer func() {
		if p := recover(); p != "boom" {
			t.Fatalf("recovered %v, want boom", p)
		}
		if _, err := OpenReader(dir, nil); !errors.Is(err, ErrNotFound) {
			t.Fatalf("after the panic: %v, want nothing committed", err)
		}
	}()
	_ = saveProgressModel(t, dir, 1, nil, context.Background(), func(Progress) { panic("boom") })
	t.Fatal("no panic")
}

// One rank's canceled context fails that rank with ErrCanceled and the others with ErrRank;
// nothing is committed.
func TestRankWithCanceledContext(t *testing.T) {
	dir := ckpt(t)
	shape := []uint64{8, 1024}
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	errs := runGroup(t, 3, func(comm *Comm) error {
		s, err := NewSave(dir, comm, nil)
		if err != nil {
			return err
		}
		defer s.Close()
		rows := shape[0] / 3
		lo := uint64(comm.Rank()) * rows
		hi := lo + rows
		if comm.Rank() == 2 {
			hi = shape[0]
		}
		data := make([]float32, (hi-lo)*shape[1])
		if err := SaveTensor(s, "w", shape, Rows(shape, lo, hi), data); err != nil {
			return err
		}
		ctx := context.Background()
		if comm.Rank() == 1 {
			ctx = canceled
		}
		return s.CommitContext(ctx)
	})
	if !errors.Is(errs[1], ErrCanceled) {
		t.Fatalf("rank 1: %v, want ErrCanceled", errs[1])
	}
	for _, r := range []int{0, 2} {
		if !errors.Is(errs[r], ErrRank) {
			t.Fatalf("rank %d: %v, want ErrRank", r, errs[r])
		}
	}
	_, err := OpenReader(dir, nil)
	wantCode(t, err, ErrNotFound)
}
