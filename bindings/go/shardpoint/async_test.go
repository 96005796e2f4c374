package shardpoint

import (
	"context"
	"errors"
	"os"
	"slices"
	"testing"
	"time"
)

func asyncModel(value float32) []float32 {
	return fill(1<<20, func(i int) float32 { return value + float32(i%13) })
}

func TestCommitAsyncKeepsWhatItCopied(t *testing.T) {
	dir := ckpt(t)
	st, err := NewStaging(8 << 20)
	must(t, err)
	defer st.Close()
	if c, err := st.Capacity(); err != nil || c != 8<<20 {
		t.Fatalf("capacity %d, %v", c, err)
	}
	s := newSave(t, dir, nil, nil)
	w := asyncModel(1)
	must(t, SaveTensor(s, "w", []uint64{1 << 20}, Box{}, w))
	n, err := s.StagingSize()
	must(t, err)
	if n < 4<<20 || n > 4<<20+64 {
		t.Fatalf("staging size %d", n)
	}
	must(t, s.CommitAsync(context.Background(), st))
	for i := range w {
		w[i] = -1 // training goes on
	}
	must(t, s.Wait())
	must(t, s.Wait())
	if done, err := s.Done(); err != nil || !done {
		t.Fatalf("done %v, %v", done, err)
	}
	r := openReader(t, dir, nil)
	equal(t, "w", readAll[float32](t, r, "w"), asyncModel(1))
}

func TestCommitAsyncErrorsAndTooSmallStaging(t *testing.T) {
	dir := ckpt(t)
	small, err := NewStaging(1024)
	must(t, err)
	defer small.Close()
	s := newSave(t, dir, nil, nil)
	must(t, SaveTensor(s, "w", []uint64{1 << 20}, Box{}, asyncModel(2)))
	wantCode(t, s.CommitAsync(context.Background(), small), ErrRange)
	wantCode(t, s.Wait(), ErrState)
	must(t, s.Commit()) // still committable
	again := newSave(t, dir, nil, nil)
	must(t, SaveTensor(again, "w", []uint64{1 << 20}, Box{}, asyncModel(3)))
	must(t, again.CommitAsync(nil, nil)) // an area of its own
	wantCode(t, again.Wait(), ErrExists)
	r := openReader(t, dir, nil)
	equal(t, "w", readAll[float32](t, r, "w"), asyncModel(2))
}

func TestCommitAsyncCanceledByContext(t *testing.T) {
	dir := ckpt(t)
	first := newSave(t, dir, nil, nil)
	must(t, SaveTensor(first, "w", []uint64{1 << 20}, Box{}, asyncModel(4)))
	must(t, first.Commit())
	before, _ := os.ReadDir(dir)
	ctx, cancel := context.WithCancel(context.Background())
	s := newSave(t, dir, nil, &SaveOptions{Overwrite: true})
	must(t, SaveTensor(s, "w", []uint64{1 << 20}, Box{}, asyncModel(5)))
	s.SetProgress(func(Progress) { time.Sleep(30 * time.Millisecond) })
	must(t, s.CommitAsync(ctx, nil))
	cancel()
	err := s.Wait()
	if !errors.Is(err, ErrCanceled) || !errors.Is(err, context.Canceled) {
		t.Fatalf("%v: want ErrCanceled and context.Canceled", err)
	}
	after, _ := os.ReadDir(dir)
	names := func(es []os.DirEntry) (out []string) {
		for _, e := range es {
			out = append(out, e.Name())
		}
		return
	}
	if !slices.Equal(names(before), names(after)) {
		t.Fatalf("files %v, were %v", names(after), names(before))
	}
	r := openReader(t, dir, nil)
	equal(t, "w", readAll[float32](t, r, "w"), asyncModel(4))

	// Cancel asks the same without a context.
	s2 := newSave(t, dir, nil, &SaveOptions{Overwrite: true})
	must(t, SaveTensor(s2, "w", []uint64{1 << 20}, Box{}, asyncModel(6)))
	s2.SetProgress(func(Progress) { time.Sleep(30 * time.Millisecond) })
	must(t, s2.CommitAsync(context.Background(), nil))
	must(t, s2.Cancel())
	wantCode(t, s2.Wait(), ErrCanceled)
}

func TestCommitAsyncOverRanks(t *testing.T) {
	dir := ckpt(t)
	shape := []uint64{6, 4}
	errs := runGroup(t, 3, func(comm *Comm) error {
		s, err := NewSave(dir, comm, nil)
		if err != nil {
			return err
		}
		defer s.Close()
		rows := fill(8, func(int) float32 { return float32(comm.Rank()) })
		lo := uint64(2 * comm.Rank())
		if err := SaveTensor(s, "w", shape, Rows(shape, lo, lo+2), rows); err != nil {
			return err
		}
		if err := s.CommitAsync(context.Background(), nil); err != nil {
			return err
		}
		clear(rows)
		return s.Wait()
	})
	for r, err := range errs {
		must(t, err)
		_ = r
	}
	r := openReader(t, dir, nil)
	got := readAll[float32](t, r, "w")
	for i, v := range got {
		if v != float32(i/8) {
			t.Fatalf("element %d is %v", i, v)
		}
	}
}
