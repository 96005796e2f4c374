package shardpoint_test

import (
	"fmt"
	"os"
	"path/filepath"

	sp "shardpoint.dev/shardpoint/bindings/go/shardpoint"
)

// Two goroutine ranks save the rows of one tensor; one process loads a box across both chunks.
func Example() {
	tmp, _ := os.MkdirTemp("", "shardpoint-example")
	defer os.RemoveAll(tmp)
	dir := filepath.Join(tmp, "ckpt")
	shape := []uint64{4, 3}
	full := []float32{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}

	err := sp.NewLocalGroup(2).Run(func(comm *sp.Comm) error {
		s, err := sp.NewSave(dir, comm, nil)
		if err != nil {
			return err
		}
		defer s.Close()
		lo := uint64(2 * comm.Rank())
		if err := sp.SaveTensor(s, "w", shape, sp.Rows(shape, lo, lo+2), full[lo*3:(lo+2)*3]); err != nil {
			return err
		}
		return s.Commit()
	})
	if err != nil { // every failed rank's error, joined
		fmt.Println(err)
		return
	}

	r, err := sp.OpenReader(dir, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer r.Close()
	box := sp.Box{Offsets: []uint64{1, 1}, Sizes: []uint64{2, 2}}
	dst := make([]float32, 4)
	if err := sp.ReadTensor(r, "w", box, dst); err != nil {
		fmt.Println(err)
		return
	}
	e, _ := r.Find("w")
	fmt.Println(dst, e.ChunkCount)
	// Output: [4 5 7 8] 2
}
