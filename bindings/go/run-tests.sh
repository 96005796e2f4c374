#!/usr/bin/env bash
# Builds and tests the Go binding against an installed shardpoint.
# Usage: bindings/go/run-tests.sh PREFIX   (PREFIX holds lib/libshardpoint.so and lib/pkgconfig/shardpoint.pc)
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 PREFIX" >&2
    exit 2
fi
prefix=$(cd "$1" && pwd)
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)

export PKG_CONFIG_PATH="$prefix/lib/pkgconfig:$prefix/lib64/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
export LD_LIBRARY_PATH="$prefix/lib:$prefix/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export CGO_ENABLED=1
export SHARDPOINT_GOLDEN_MODEL="${SHARDPOINT_GOLDEN_MODEL:-$repo/tests/golden/model.txt}"

if ! pkg-config --exists shardpoint; then
    echo "run-tests.sh: no shardpoint.pc under $prefix" >&2
    exit 1
fi

# Go's build cache does not key cgo packages on pkg-config output nor on the library's files
# (golang/go#24544), so a package built against another prefix or an older library could be
# reused. A define derived from the flags, the header and the library makes the key follow them.
incdir=$(pkg-config --variable=includedir shardpoint)
libdir=$(pkg-config --variable=libdir shardpoint)
key=$({ pkg-config --cflags --libs shardpoint; cat "$incdir/shardpoint.h" "$libdir"/libshardpoint.so* 2>/dev/null || true; } \
    | sha256sum | cut -c1-16)
export CGO_CPPFLAGS="${CGO_CPPFLAGS:-} -DSHARDPOINT_GO_BUILD_KEY=$key"

cd "$here"
go version
go mod download # the module has no dependencies beyond the standard library; kept for when it does
go vet ./...
# -count=1: the results depend on the shared library, which the test cache does not track.
go test -count=1 ./...

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/golden" ./cmd/golden
"$tmp/golden" write "$tmp/golden-ckpt" 3
"$tmp/golden" read "$tmp/golden-ckpt"

# Checkpoints committed once by the project (tests/golden/v1-*, v2-*) must load forever.
for dir in "$repo"/tests/golden/v[0-9]-*/; do
    [ -d "$dir" ] || continue
    echo "golden read $dir"
    "$tmp/golden" read "$dir"
done
# A new module outside the repository that uses the binding through a replace directive, as
# README says (until the module is published): go mod tidy, go vet, go run of a round trip.
app=$tmp/app
mkdir -p "$app"
# README's require and replace lines, exactly, with the replace pointed at this checkout.
readme_lines=$(python3 - "$repo/README.md" <<'PY'
import re, sys
text = open(sys.argv[1], encoding="utf-8").read()
print(re.search(r"^```\n(require .*?)^```", text[text.index("### Go"):], re.S | re.M).group(1).strip())
PY
)
expected='require shardpoint.dev/shardpoint/bindings/go v0.0.0
replace shardpoint.dev/shardpoint/bindings/go => ./shardpoint/bindings/go'
[ "$readme_lines" = "$expected" ] || { echo "README's Go lines changed: $readme_lines"; exit 1; }
{ printf 'module example.com/app\n\ngo 1.22\n\n'; echo "${readme_lines/=> .\/shardpoint\/bindings\/go/=> $here}"; } >"$app/go.mod"
grep -q "=> $here\$" "$app/go.mod" || { echo "could not point README's replace at the checkout"; cat "$app/go.mod"; exit 1; }
cat >"$app/main.go" <<'EOF'
package main

import (
	"fmt"
	"os"
	"path/filepath"

	sp "shardpoint.dev/shardpoint/bindings/go/shardpoint"
)

func main() {
	dir := filepath.Join(os.Args[1], "ckpt")
	s, err := sp.NewSave(dir, nil, nil)
	if err != nil {
		panic(err)
	}
	defer s.Close()
	w := []float32{1, 2, 3, 4, 5, 6}
	if err := sp.SaveTensor(s, "w", []uint64{2, 3}, sp.Box{}, w); err != nil {
		panic(err)
	}
	if err := s.Commit(); err != nil {
		panic(err)
	}
	r, err := sp.OpenReader(dir, nil)
	if err != nil {
		panic(err)
	}
	defer r.Close()
	row := make([]float32, 3)
	if err := sp.ReadTensor(r, "w", sp.Rows([]uint64{2, 3}, 1, 2), row); err != nil {
		panic(err)
	}
	if row[0] != 4 || row[2] != 6 {
		panic(fmt.Sprint("wrong values: ", row))
	}
	fmt.Println("new module: round trip ok with libshardpoint", sp.VersionString())
}
EOF
(cd "$app" && go mod tidy && go vet ./... && go run . "$tmp")

# README's complete programs (its go blocks that are a package main), each built and run in the
# same module.
python3 - "$here/README.md" "$app" <<'PY'
import os, re, sys
text = open(sys.argv[1], encoding="utf-8").read()
programs = [b for b in re.findall(r"^```go\n(.*?)^```", text, re.S | re.M) if b.startswith("package main")]
if not programs:
    sys.exit("README.md has no complete Go program")
for i, program in enumerate(programs):
    d = os.path.join(sys.argv[2], "readme%d" % i)
    os.makedirs(d)
    open(os.path.join(d, "main.go"), "w").write(program)
PY
for d in "$app"/readme*/; do
    (cd "$app" && gofmt -l "$d" | grep . && { echo "README's program is not gofmt-formatted"; exit 1; }
     go vet "./$(basename "$d")" && go run "./$(basename "$d")") || exit 1
done
echo "go binding: all checks passed"
