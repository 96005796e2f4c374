package shardpoint

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// part is the golden model's split: [floor(r*n/w), floor((r+1)*n/w)).
func part(n uint64, r, w int) (uint64, uint64) {
	return uint64(r) * n / uint64(w), uint64(r+1) * n / uint64(w)
}

// runGroup runs fn on w ranks and fails the test if it does not finish within a minute (a
// deadlock in the collectives must fail the test, not hang it).
func runGroup(t *testing.T, w int, fn func(comm *Comm) error) []error {
	t.Helper()
	done := make(chan []error, 1)
	go func() { done <- NewLocalGroup(w).RunEach(fn) }()
	select {
	case errs := <-done:
		return errs
	case <-time.After(time.Minute):
		t.Fatal("ranks did not finish within a minute")
		return nil
	}
}

func TestLocalGroupCollectives(t *testing.T) {
	const w = 4
	g := NewLocalGroup(w)
	var wg sync.WaitGroup
	results := make([][]byte, w)
	errs := make([]error, w)
	for r := 0; r < w; r++ {
		wg.Add(1)
		go func(r int) {
			defer wg.Done()
			m := g.Member(r)
			send := []byte{byte(r), byte(10 * r)}
			var recv []byte
			if r == 0 {
				recv = make([]byte, 2*w)
			}
			if err := m.Gather(send, recv); err != nil {
				errs[r] = err
				return
			}
			buf := make([]byte, 2*w)
			if r == 0 {
				copy(buf, recv)
			}
			errs[r] = m.Broadcast(buf)
			results[r] = buf
		}(r)
	}
	wg.Wait()
	want := []byte{0, 0, 1, 10, 2, 20, 3, 30}
	for r := 0; r < w; r++ {
		if errs[r] != nil || string(results[r]) != string(want) {
			t.Fatalf("rank %d: %v %v", r, errs[r], results[r])
		}
	}
	// An aborted group fails every later collective instead of blocking.
	g.Abort(errors.New("stop"))
	if err := g.Member(1).Broadcast(make([]byte, 1)); err == nil || err.Error() != "stop" {
		t.Fatalf("after Abort: %v", err)
	}
}

func TestMultiRankSaveThenReshardedLoad(t *testing.T) {
	dir := ckpt(t)
	wShape := []uint64{9, 4}
	cShape := []uint64{4, 7}
	wFull := fill(36, func(i int) float32 { return float32(i) + 0.25 })
	cFull := fill(28, func(i int) int32 { return int32(i * -3) })
	bias := []float64{1, 2, 3, 4, 5}
	blob := []byte("optimizer state of rank 0")

	errs := runGroup(t, 3, func(comm *Comm) error {
		r, w := comm.Rank(), comm.Size()
		s, err := NewSave(dir, comm, nil)
		if err != nil {
			return err
		}
		defer s.Close()
		lo, hi := part(wShape[0], r, w)
		if err := SaveTensor(s, "w", wShape, Rows(wShape, lo, hi), wFull[lo*4:hi*4]); err != nil {
			return err
		}
		// Columns: a strided view into the whole array every rank holds.
		clo, chi := part(cShape[1], r, w)
		box := Box{Offsets: []uint64{0, clo}, Sizes: []uint64{4, chi - clo}}
		if err := SaveTensorView(s, "c", cShape, box, cFull, Strided(int(clo), 7, 1)); err != nil {
			return err
		}
		if err := SaveTensor(s, "bias", []uint64{5}, Box{}, bias); err != nil {
			return err
		}
		if r == 0 {
			if err := s.AddBytes("blob", blob); err != nil {
				return err
			}
		}
		if err := s.SetMetadata("writer", strconv.Itoa(r)); err != nil {
			return err
		}
		return s.Commit()
	})
	for r, err := range errs {
		must(t, fmtRank(r, err))
	}

	rd := openReader(t, dir, nil)
	info, err := rd.StorageInfo()
	must(t, err)
	if info.WorldSize != 3 {
		t.Fatalf("world size %d", info.WorldSize)
	}
	if v, err := rd.MetadataValue("writer"); err != nil || v != "0" {
		t.Fatalf("writer metadata %q %v (the coordinator's pairs are kept)", v, err)
	}
	b, err := rd.Find("bias")
	must(t, err)
	if b.ChunkCount != 1 {
		t.Fatalf("replicated bias saved as %d chunks", b.ChunkCount)
	}
	we, err := rd.Find("w")
	must(t, err)
	chunks, err := rd.Chunks(we.Index)
	must(t, err)
	if len(chunks) != 3 {
		t.Fatalf("w has %d chunks", len(chunks))
	}
	for _, c := range chunks {
		for r := 0; r < 3; r++ {
			if lo, hi := part(9, r, 3); c.Offsets[0] == lo && c.Sizes[0] != hi-lo || c.Offsets[0] == lo && c.WriterRank != r {
				t.Fatalf("chunk %+v (rank %d offered rows %d..%d)", c, r, lo, hi)
			}
		}
	}
	must(t, rd.Close())

	// Load back with 2 ranks: other row and column splits than the writers'; rank 0 reads the
	// metadata for both.
	errs = runGroup(t, 2, func(comm *Comm) error {
		r, w := comm.Rank(), comm.Size()
		rd, err := OpenReaderShared(dir, nil, comm)
		if err != nil {
			return err
		}
		defer rd.Close()
		l, err := rd.NewLoad(comm)
		if err != nil {
			return err
		}
		defer l.Close()
		lo, hi := part(wShape[0], r, w)
		wDst := make([]float32, (hi-lo)*4)
		if err := LoadTensor(l, "w", Rows(wShape, lo, hi), wDst); err != nil {
			return err
		}
		clo, chi := part(cShape[1], r, w)
		cDst := make([]int32, 4*(chi-clo))
		if err := LoadTensor(l, "c", Box{Offsets: []uint64{0, clo}, Sizes: []uint64{4, chi - clo}}, cDst); err != nil {
			return err
		}
		bDst := make([]float64, 5)
		if err := LoadTensor(l, "bias", Whole([]uint64{5}), bDst); err != nil {
			return err
		}
		blobDst := make([]byte, len(blob))
		if err := l.AddBytes("blob", blobDst); err != nil {
			return err
		}
		if err := l.Execute(); err != nil {
			return err
		}
		for i, v := range wDst {
			if v != wFull[lo*4+uint64(i)] {
				return fmt.Errorf("w element %d of rows %d..%d is %v", i, lo, hi, v)
			}
		}
		for i := uint64(0); i < 4; i++ {
			for j := clo; j < chi; j++ {
				if got := cDst[i*(chi-clo)+j-clo]; got != cFull[i*7+j] {
					return fmt.Errorf("c[%d][%d] = %d, want %d", i, j, got, cFull[i*7+j])
				}
			}
		}
		for i := range bias {
			if bDst[i] != bias[i] {
				return fmt.Errorf("bias %v", bDst)
			}
		}
		if string(blobDst) != string(blob) {
			return fmt.Errorf("blob %q", blobDst)
		}
		return nil
	})
	for r, err := range errs {
		must(t, fmtRank(r, err))
	}
}

func TestSharedOpenFailsEveryRankWithRankZerosError(t *testing.T) {
	dir := ckpt(t)
	s, err := NewSave(dir, nil, nil)
	must(t, err)
	must(t, SaveTensor(s, "x", []uint64{3}, Whole([]uint64{3}), []float32{1, 2, 3}))
	must(t, s.Commit())
	must(t, s.Close())
	meta := filepath.Join(dir, "shardpoint.meta")
	b, err := os.ReadFile(meta)
	must(t, err)
	b[40] ^= 0xFF
	must(t, os.WriteFile(meta, b, 0o644))
	errs := runGroup(t, 3, func(comm *Comm) error {
		rd, err := OpenReaderShared(dir, nil, comm)
		if err == nil {
			rd.Close()
		}
		return err
	})
	for r, err := range errs {
		var e *Error
		if !errors.As(err, &e) || e.Code != ErrChecksum {
			t.Fatalf("rank %d: %v, want ErrChecksum", r, err)
		}
		if shared := strings.Contains(e.Message, "rank 0 reading the metadata"); shared != (r > 0) {
			t.Fatalf("rank %d: %q", r, e.Message)
		}
	}
}

func fmtRank(r int, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("rank %d: %w", r, err)
}

func TestMultiRankConflictFailsEveryRank(t *testing.T) {
	dir := ckpt(t)
	shape := []uint64{6, 2}
	data := make([]int16, 12)
	errs := runGroup(t, 3, func(comm *Comm) error {
		s, err := NewSave(dir, comm, nil)
		if err != nil {
			return err
		}
		defer s.Close()
		// Ranks 0 and 1 offer overlapping rows that are not the same chunk.
		lo := uint64(comm.Rank() * 2)
		if comm.Rank() < 2 {
			if err := SaveTensor(s, "x", shape, Rows(shape, lo, lo+3), data[lo*2:(lo+3)*2]); err != nil {
				return err
			}
		}
		return s.Commit()
	})
	for r, err := range errs {
		if !errors.Is(err, ErrConflict) {
			t.Fatalf("rank %d: %v, want %s", r, err, ErrConflict.Name())
		}
	}
	_, err := OpenReader(dir, nil)
	wantCode(t, err, ErrNotFound) // nothing was committed
}

// When the library fails a collective on every rank (here the coordinator's global plan finds
// a dtype conflict and broadcasts it), every rank must return that error, although Run aborts
// the group as soon as the first rank returns: the abort must not fail ranks that are still
// leaving the final broadcast (a completed round). Several rounds make a regression show up.
func TestMultiRankDtypeConflictIsEveryRanksError(t *testing.T) {
	const w = 4
	shape := []uint64{8, 3}
	full := fill(24, func(i int) float32 { return float32(i) + 0.5 })
	asInt := fill(24, func(i int) int32 { return int32(math.Float32bits(full[i])) }) // same bytes
	for attempt := 0; attempt < 5; attempt++ {
		for bad := 0; bad < w; bad++ {
			dir := ckpt(t)
			errs := runGroup(t, w, func(comm *Comm) error {
				r := comm.Rank()
				s, err := NewSave(dir, comm, nil)
				if err != nil {
					return err
				}
				defer s.Close()
				lo, hi := part(shape[0], r, w)
				if r == bad {
					err = SaveTensor(s, "x", shape, Rows(shape, lo, hi), asInt[lo*3:hi*3])
				} else {
					err = SaveTensor(s, "x", shape, Rows(shape, lo, hi), full[lo*3:hi*3])
				}
				if err != nil {
					return err
				}
				return s.Commit()
			})
			for r, err := range errs {
				if !errors.Is(err, ErrConflict) {
					t.Fatalf("rank %d offering i32, attempt %d: rank %d got %v, want %s", bad, attempt, r, err, ErrConflict.Name())
				}
			}
			_, err := OpenReader(dir, nil)
			wantCode(t, err, ErrNotFound)
		}
	}
}

// An abort right after a round completed (a rank finished its collective and left) must not
// fail the ranks that round released but that have not woken up yet.
func TestLocalGroupAbortSparesACompletedRound(t *testing.T) {
	for i := 0; i < 200; i++ {
		g := NewLocalGroup(2)
		buf := make([]byte, 2)
		done := make(chan error, 1)
		go func() { done <- g.Member(1).Broadcast(buf) }()
		must(t, g.Member(0).Broadcast([]byte("hi")))
		g.Abort(errors.New("rank 0 left"))
		if err := <-done; err != nil || string(buf) != "hi" {
			t.Fatalf("iteration %d: rank 1 got %q, %v after a completed broadcast", i, buf, err)
		}
	}
	// The round that rank 0 never joins fails instead of hanging.
	g := NewLocalGroup(2)
	done := make(chan error, 1)
	go func() { done <- g.Member(1).Broadcast(make([]byte, 1)) }()
	g.Abort(errors.New("rank 0 left"))
	select {
	case err := <-done:
		if err == nil || err.Error() != "rank 0 left" {
			t.Fatalf("rank 1 waiting for a rank that left: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("rank 1 still waits for a rank that left")
	}
}

func TestMultiRankFailureDoesNotHang(t *testing.T) {
	dir := ckpt(t)
	boom := errors.New("rank 1 gave up before committing")
	errs := runGroup(t, 3, func(comm *Comm) error {
		s, err := NewSave(dir, comm, nil)
		if err != nil {
			return err
		}
		defer s.Close()
		if err := SaveTensor(s, "x", []uint64{1}, Box{}, []float32{1}); err != nil {
			return err
		}
		if comm.Rank() == 1 {
			return boom
		}
		return s.Commit()
	})
	if errs[1] != boom {
		t.Fatalf("rank 1: %v", errs[1])
	}
	for _, r := range []int{0, 2} {
		wantCode(t, errs[r], ErrComm)
		// The collectives' own error is the cause: the group was aborted by rank 1.
		if !errors.Is(errs[r], boom) {
			t.Fatalf("rank %d: %v does not wrap rank 1's error", r, errs[r])
		}
	}
	_, err := OpenReader(dir, nil)
	wantCode(t, err, ErrNotFound)
}

// countingColl is a single-rank transport that counts the calls the library makes.
type countingColl struct {
	gathers, broadcasts int
	fail                error
	panicNow            bool
}

func (c *countingColl) Gather(send, recv []byte) error {
	c.gathers++
	if c.panicNow {
		panic("transport exploded")
	}
	if c.fail != nil {
		return c.fail
	}
	copy(recv, send)
	return nil
}

func (c *countingColl) Broadcast(buf []byte) error {
	c.broadcasts++
	if c.panicNow {
		panic("transport exploded")
	}
	return c.fail
}

func TestCallbackCommunicator(t *testing.T) {
	coll := &countingColl{}
	comm, err := NewCallbackComm(0, 1, coll)
	must(t, err)
	defer comm.Close()
	if comm.Rank() != 0 || comm.Size() != 1 {
		t.Fatalf("rank %d size %d", comm.Rank(), comm.Size())
	}
	dir := ckpt(t)
	s := newSave(t, dir, comm, nil)
	must(t, SaveTensor(s, "x", []uint64{3}, Box{}, []uint32{1, 2, 3}))
	must(t, s.Commit())
	must(t, s.Close())
	if coll.gathers == 0 && coll.broadcasts == 0 {
		t.Fatal("the save did not use the communicator's callbacks")
	}
	equal(t, "x", readAll[uint32](t, openReader(t, dir, nil), "x"), []uint32{1, 2, 3})

	_, err = NewCallbackComm(2, 2, coll)
	wantCode(t, err, ErrInvalid)
	_, err = NewCallbackComm(0, 1, nil)
	wantCode(t, err, ErrInvalid)
}

func TestCallbackErrorsBecomeErrComm(t *testing.T) {
	linkDown := errors.New("link down")
	for _, coll := range []*countingColl{{fail: linkDown}, {panicNow: true}} {
		comm, err := NewCallbackComm(0, 1, coll)
		must(t, err)
		dir := ckpt(t)
		s := newSave(t, dir, comm, nil)
		must(t, SaveTensor(s, "x", []uint64{1}, Box{}, []int8{1}))
		err = s.Commit()
		wantCode(t, err, ErrComm)
		if coll.fail != nil && !errors.Is(err, linkDown) {
			t.Fatalf("%v does not wrap the transport's error", err)
		}
		if coll.panicNow && !strings.Contains(err.Error(), "transport exploded") {
			t.Fatalf("%v does not report the panic", err)
		}
		must(t, s.Close())
		must(t, comm.Close())
		_, err = OpenReader(dir, nil)
		wantCode(t, err, ErrNotFound)
	}
}

// Run joins the ranks' errors: nil when all succeed, otherwise every failed rank's error named by
// its rank, and errors.Is sees the codes through the join.
func TestRunJoinsTheRanksErrors(t *testing.T) {
	if err := NewLocalGroup(3).Run(func(comm *Comm) error { return nil }); err != nil {
		t.Fatalf("no rank failed, Run returned %v", err)
	}
	err := NewLocalGroup(3).Run(func(comm *Comm) error {
		if comm.Rank() == 1 {
			return &Error{Code: ErrShape, Name: ErrShape.Name(), Message: "rank 1's mistake"}
		}
		return nil
	})
	if err == nil || !errors.Is(err, ErrShape) || !strings.Contains(err.Error(), "rank 1: ") {
		t.Fatalf("Run returned %v", err)
	}
	if strings.Contains(err.Error(), "rank 0: ") || strings.Contains(err.Error(), "rank 2: ") {
		t.Fatalf("ranks that succeeded are in the error: %v", err)
	}
}
