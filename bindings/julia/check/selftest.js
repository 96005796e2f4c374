#!/usr/bin/env node
// Proves that check.js catches what it claims to catch: each case feeds it a small Julia snippet
// with one deliberate mistake and asserts that the right check fails with the right message (and,
// for the correct snippet, that nothing fails). Uses the real header.
//
// Usage: node selftest.js [--header path/to/shardpoint.h]
// The last line is "selftest: N passed, N failed".

'use strict';

const fs = require('fs');
const path = require('path');
const { runChecks, parseHeader } = require('./check.js');

let headerPath = path.resolve(__dirname, '../../../capi/include/shardpoint.h');
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === '--header') headerPath = argv[++i];
  else throw new Error(`unknown argument ${argv[i]}`);
}
const headerText = fs.readFileSync(headerPath, 'utf8');
const header = parseHeader(headerText);
// A library that exports exactly the header's functions, unless a case removes one.
const allExports = () => new Set(header.functions.keys());

// Runs the checks on one snippet and returns the failures that concern the snippet itself
// (coverage and struct checks fail for any snippet that does not bind the whole API).
function failuresOf(snippet, exported = allExports()) {
  const results = runChecks({ sources: [{ file: 'case.jl', text: snippet }], headerText, exported });
  return results.filter((r) => !r.ok && r.what.startsWith('case.jl'));
}

function failuresNamed(snippet, prefix, exported = allExports()) {
  const results = runChecks({ sources: [{ file: 'case.jl', text: snippet }], headerText, exported });
  return results.filter((r) => !r.ok && r.what.startsWith(prefix));
}

// The positions checks of one snippet: its per-file results and the global ones.
function positionFailures(snippet) {
  const results = runChecks({ sources: [{ file: 'case.jl', text: snippet }], headerText, exported: allExports() });
  return results.filter((r) => !r.ok && (r.what.startsWith('case.jl') || r.what.startsWith('positions:')));
}

// The old API: 0-based `offsets=`, `- 1` by hand, raw library numbers in and out.
const OLD_POSITIONS = `
export read_tensor!, entry, entry_info
function read_tensor!(r, fqn, dest; offsets=nothing)
    offs = offsets === nothing ? zeros(UInt64, ndims(dest)) : UInt64[o for o in offsets]
    L.shardpoint_reader_read_tensor(handle(r), fqn, Int32(11), UInt32(ndims(dest)), offs,
                                    UInt64[d for d in size(dest)], pointer(dest), C_NULL)
end
entry_info(r, index::UInt64) = L.shardpoint_reader_entry_info(handle(r), index, Ref{L.shardpoint_entry_info}())
entry(r, i::Integer) = entry_info(r, UInt64(i - 1))
function chunk_offsets(r, index::UInt64, c::Integer)
    out = Ref{L.shardpoint_chunk_info}()
    L.shardpoint_reader_chunk_info(handle(r), index, UInt64(c), out)
    return copy_u64s(out[].offsets, 2)
end
`;

// The same functions in the 1-based style, converting through the helpers only.
const NEW_POSITIONS = `
export read_tensor!, entry
function c_index(i::Integer)
    i >= 1 || throw(ArgumentError("positions are 1-based"))
    return UInt64(i - 1)
end
julia_index(i::Integer) = Int(i) + 1
c_offsets(at, sizes, shape, fqn) = UInt64[first(r) - 1 for r in at]
julia_ranges(o, s, n) = ntuple(d -> (Int(unsafe_load(o, d)) + 1):(Int(unsafe_load(o, d)) + Int(unsafe_load(s, d))), n)
function read_tensor!(r, fqn, dest; at=nothing)
    offs = c_offsets(at, size(dest), nothing, fqn)
    L.shardpoint_reader_read_tensor(handle(r), fqn, Int32(11), UInt32(ndims(dest)), offs,
                                    UInt64[d for d in size(dest)], pointer(dest), C_NULL)
end
entry_info(r, index::UInt64) = L.shardpoint_reader_entry_info(handle(r), index, Ref{L.shardpoint_entry_info}())
function find_entry(r, fqn)
    out = Ref{UInt64}(0)
    L.shardpoint_reader_find(handle(r), fqn, out)
    return out[]
end
entry(r, i::Integer) = entry_info(r, c_index(i))
entry(r, fqn::AbstractString) = entry_info(r, find_entry(r, fqn))
function chunk_box(r, index::UInt64, c::Integer)
    out = Ref{L.shardpoint_chunk_info}()
    L.shardpoint_reader_chunk_info(handle(r), index, c_index(c), out)
    ci = out[]
    return julia_ranges(ci.offsets, ci.sizes, 2)
end
`;

const GOOD_STRUCT = `
struct shardpoint_load_options
    version::UInt32
    flags::UInt32
    io_threads::UInt32
end
`;

const cases = [
  {
    name: 'correct @ccall and ccall forms pass',
    run: () => failuresOf(`
const libshardpoint = "libshardpoint.so.0"
f(s, k, v) = @ccall libshardpoint.shardpoint_save_set_metadata(s::Ptr{shardpoint_save}, k::Cstring, v::Cstring)::Cint
g(r, i, o) = ccall((:shardpoint_reader_entry_info, libshardpoint), Cint,
                   (Ptr{shardpoint_reader}, UInt64, Ref{shardpoint_entry_info}), r, i, o)
h(o) = @ccall libshardpoint.shardpoint_comm_new_single(o::Ptr{Ptr{L.shardpoint_comm}})::Cint
e() = @ccall libshardpoint.shardpoint_last_error()::Cstring
const SHARDPOINT_ECHECKSUM = Cint(-7)
const SHARDPOINT_SAVE_FSYNC = UInt32(0x2)
const SHARDPOINT_VERSION_STRING = "0.1.0"
my_gather(user::Ptr{Cvoid}, send::Ptr{Cvoid}, len::UInt64, recv::Ptr{Cvoid})::Cint = Cint(0)
cb = @cfunction(my_gather, Cint, (Ptr{Cvoid}, Ptr{Cvoid}, UInt64, Ptr{Cvoid}))
`),
    expect: (f) => f.length === 0 || `unexpected failures: ${f.map((x) => x.what + ' ' + x.problems.join('; ')).join(' | ')}`,
  },
  {
    name: 'syntax error (unclosed bracket) is reported with its line',
    run: () => failuresOf('function g()\n    x = [1, 2\nend\n'),
    expect: (f) => f.some((r) => r.what === 'case.jl parses' && r.problems.some((p) => /^case\.jl:\d+:\d+: syntax error/.test(p))),
  },
  {
    name: 'MISSING node is reported',
    run: () => failuresOf('y = 1\nf(x = 1\n'),
    expect: (f) => f.some((r) => r.what === 'case.jl parses' && r.problems.some((p) => /^case\.jl:2:\d+: missing/.test(p))),
  },
  {
    name: 'wrong argument count',
    run: () => failuresOf('f(s) = @ccall libshardpoint.shardpoint_save_commit(s::Ptr{shardpoint_save}, 1::Cint)::Cint\n'),
    expect: (f) => f.some((r) => /shardpoint_save_commit/.test(r.what) && r.problems.some((p) => /argument count 2, the header has 1/.test(p))),
  },
  {
    name: 'wrong argument type (UInt32 for uint64_t)',
    run: () => failuresOf('f(s, d, n) = @ccall libshardpoint.shardpoint_save_add_bytes(s::Ptr{shardpoint_save}, "x"::Cstring, d::Ptr{Cvoid}, n::UInt32)::Cint\n'),
    expect: (f) => f.some((r) => r.problems.some((p) => /argument 4 \(len: uint64_t\) is UInt32/.test(p))),
  },
  {
    name: 'wrong pointee type (Ptr{Cvoid} for a handle pointer)',
    run: () => failuresOf('f(s) = @ccall libshardpoint.shardpoint_save_commit(s::Ptr{Cvoid})::Cint\n'),
    expect: (f) => f.some((r) => r.problems.some((p) => /argument 1 .* is Ptr\{Cvoid\}/.test(p))),
  },
  {
    name: 'wrong return type',
    run: () => failuresOf('f() = @ccall libshardpoint.shardpoint_version_number()::Int64\n'),
    expect: (f) => f.some((r) => r.problems.some((p) => /return type is Int64/.test(p))),
  },
  {
    name: 'unknown symbol (not in header, not exported)',
    run: () => failuresOf('f() = @ccall libshardpoint.shardpoint_no_such_function()::Cint\n'),
    expect: (f) => f.some((r) => r.problems.some((p) => /not declared in the header/.test(p)) &&
      r.problems.some((p) => /not exported by the library/.test(p))),
  },
  {
    name: 'symbol missing from the library',
    run: () => {
      const exported = allExports();
      exported.delete('shardpoint_reader_verify');
      return failuresNamed('f(r) = @ccall libshardpoint.shardpoint_reader_verify(r::Ptr{shardpoint_reader})::Cint\n', '', exported);
    },
    expect: (f) => f.some((r) => r.what.startsWith('case.jl') && r.problems.some((p) => /shardpoint_reader_verify is not exported/.test(p))) &&
      f.some((r) => r.what === 'header function shardpoint_reader_verify is exported by the library'),
  },
  {
    name: 'wrong library name',
    run: () => failuresOf('f() = @ccall libother.shardpoint_version_number()::UInt32\n'),
    expect: (f) => f.some((r) => r.problems.some((p) => /library is "libother"/.test(p))),
  },
  {
    name: 'ccall with argument types not a tuple',
    run: () => failuresOf('f(s) = ccall((:shardpoint_save_commit, libshardpoint), Cint, (Ptr{shardpoint_save}), s)\n'),
    expect: (f) => f.some((r) => r.problems.some((p) => /not a tuple literal/.test(p))),
  },
  {
    name: 'ccall with fewer values than types',
    run: () => failuresOf('f(s) = ccall((:shardpoint_save_set_metadata, libshardpoint), Cint, (Ptr{shardpoint_save}, Cstring, Cstring), s, "k")\n'),
    expect: (f) => f.some((r) => r.problems.some((p) => /3 argument types but 2 argument values/.test(p))),
  },
  {
    name: 'ccall with a wrong type',
    run: () => failuresOf('f(r, k, o) = ccall((:shardpoint_reader_metadata_get, libshardpoint), Cint, (Ptr{shardpoint_reader}, Cstring, Ptr{UInt8}), r, k, o)\n'),
    expect: (f) => f.some((r) => r.problems.some((p) => /argument 3 \(out_value: char \*\*\) is Ptr\{UInt8\}/.test(p))),
  },
  {
    name: 'struct with a wrong field type',
    run: () => failuresNamed(GOOD_STRUCT.replace('flags::UInt32', 'flags::UInt64'), 'struct shardpoint_load_options'),
    expect: (f) => f.some((r) => r.problems.some((p) => /field flags \(uint32_t\) is UInt64/.test(p))),
  },
  {
    name: 'struct with a missing field',
    run: () => failuresNamed(GOOD_STRUCT.replace('    io_threads::UInt32\n', ''), 'struct shardpoint_load_options'),
    expect: (f) => f.some((r) => r.problems.some((p) => /2 fields, the header has 3/.test(p))),
  },
  {
    name: 'correct struct passes',
    run: () => failuresNamed(GOOD_STRUCT, 'struct shardpoint_load_options'),
    expect: (f) => f.length === 0 || `unexpected: ${JSON.stringify(f)}`,
  },
  {
    name: 'constant with a wrong value',
    run: () => failuresOf('const SHARDPOINT_EDTYPE = Cint(-11)\n'),
    expect: (f) => f.some((r) => r.problems.some((p) => /value -11, the header has -10/.test(p))),
  },
  {
    name: 'constant that is not in the header',
    run: () => failuresOf('const SHARDPOINT_ENOPE = Cint(-42)\n'),
    expect: (f) => f.some((r) => r.problems.some((p) => /not in the header/.test(p))),
  },
  {
    name: '@cfunction with a wrong signature',
    run: () => failuresOf('p = @cfunction(broadcast_callback, Cint, (Ptr{Cvoid}, Ptr{Cvoid}, UInt32))\n'),
    expect: (f) => f.some((r) => r.problems.some((p) => /shardpoint_comm_callbacks\.broadcast callback/.test(p))),
  },
  {
    name: 'callbacks of function pointer typedefs (gc, verify) and their ccall pass',
    run: () => failuresOf(`
const libshardpoint = "libshardpoint.so.0"
g(d, f, cb, u, n, b) = @ccall libshardpoint.shardpoint_gc(d::Cstring, f::UInt32, cb::Ptr{Cvoid}, u::Ptr{Cvoid},
                                                      n::Ptr{UInt64}, b::Ptr{UInt64})::Cint
gc_file_callback(user, name::Ptr{UInt8}, size::UInt64)::Int32 = Int32(0)
function verify_callback(user::Ptr{Cvoid}, problem::Ptr{L.shardpoint_verify_problem})::Cint
    return Cint(0)
end
p = @cfunction(gc_file_callback, Cint, (Ptr{Cvoid}, Ptr{UInt8}, UInt64))
q = @cfunction(verify_callback, Cint, (Ptr{Cvoid}, Ptr{shardpoint_verify_problem}))
`),
    expect: (f) => f.length === 0 || f.map((r) => `${r.what}: ${r.problems.join('; ')}`).join('\n'),
  },
  {
    name: '@cfunction with a wrong signature for a typedef callback',
    run: () => failuresOf('p = @cfunction(verify_callback, Cint, (Ptr{Cvoid}, Ptr{shardpoint_entry_info}))\n'),
    expect: (f) => f.some((r) => r.problems.some((p) => /shardpoint_verify_callback callback/.test(p))),
  },
  {
    name: 'the progress callback (shardpoint_progress_callback), its ccalls and phase constants pass',
    run: () => failuresOf(`
const libshardpoint = "libshardpoint.so.0"
const SHARDPOINT_ECANCELED = Cint(-22)
const SHARDPOINT_PROGRESS_WRITE = Int32(1)
const SHARDPOINT_PROGRESS_VERIFY = Int32(3)
s(save, cb, u) = @ccall libshardpoint.shardpoint_save_set_progress(save::Ptr{shardpoint_save}, cb::Ptr{Cvoid}, u::Ptr{Cvoid})::Cint
w(wr, cb, u) = @ccall libshardpoint.shardpoint_writer_set_progress(wr::Ptr{shardpoint_writer}, cb::Ptr{Cvoid}, u::Ptr{Cvoid})::Cint
function progress_callback(user::Ptr{Cvoid}, phase::Int32, done::UInt64, total::UInt64)::Cint
    return Cint(0)
end
p = @cfunction(progress_callback, Cint, (Ptr{Cvoid}, Int32, UInt64, UInt64))
`),
    expect: (f) => f.length === 0 || f.map((r) => `${r.what}: ${r.problems.join('; ')}`).join('\n'),
  },
  {
    name: '@cfunction of the progress callback with an unsigned phase',
    run: () => failuresOf('p = @cfunction(progress_callback, Cint, (Ptr{Cvoid}, UInt32, UInt64, UInt64))\n'),
    expect: (f) => f.some((r) => r.problems.some((p) => /shardpoint_progress_callback callback, its signature must match int \(\*\)\(void \*, int32_t, uint64_t, uint64_t\)/.test(p))),
  },
  {
    name: 'phase constant with a wrong value',
    run: () => failuresOf('const SHARDPOINT_PROGRESS_READ = Int32(3)\n'),
    expect: (f) => f.some((r) => r.problems.some((p) => /value 3, the header has 2/.test(p))),
  },
  {
    name: '@cfunction whose method takes other types than its C signature',
    run: () => failuresOf(`
function progress_callback(user::Ptr{Cvoid}, phase::UInt32, done::UInt64, total::UInt64)::Cint
    return Cint(0)
end
p = @cfunction(progress_callback, Cint, (Ptr{Cvoid}, Int32, UInt64, UInt64))
`),
    expect: (f) => f.some((r) => /@cfunction progress_callback has a method/.test(r.what) &&
      r.problems.some((p) => /argument 2 phase::UInt32, the @cfunction needs \(Ptr\{Cvoid\}, Int32, UInt64, UInt64\)::Cint/.test(p))),
  },
  {
    name: '@cfunction whose method returns another type, or has another arity; one matching method is enough',
    run: () => failuresOf(`
gc_file_callback(user::Ptr{Cvoid}, name::Ptr{UInt8}, size::UInt64)::Bool = false
verify_callback(user) = 0
p = @cfunction(gc_file_callback, Cint, (Ptr{Cvoid}, Ptr{UInt8}, UInt64))
q = @cfunction(verify_callback, Cint, (Ptr{Cvoid}, Ptr{shardpoint_verify_problem}))
broadcast_callback(user, buf, len::UInt32) = 0
broadcast_callback(user, buf, len::UInt64) = 0
b = @cfunction(broadcast_callback, Cint, (Ptr{Cvoid}, Ptr{Cvoid}, UInt64))
`),
    expect: (f) => {
      const has = (re) => f.some((r) => r.problems.some((p) => re.test(p)));
      const broadcast = f.filter((r) => /@cfunction broadcast_callback/.test(r.what));
      return (has(/method of gc_file_callback has return type Bool/) &&
        has(/method of verify_callback has 1 positional arguments/) && broadcast.length === 0) ||
        `got ${f.map((r) => `${r.what}: ${r.problems.join('; ')}`).join(' | ')}`;
    },
  },
  {
    name: '@cfunction of an undefined function, and a closure @cfunction',
    run: () => failuresOf(`
p = @cfunction(gc_file_calback, Cint, (Ptr{Cvoid}, Ptr{UInt8}, UInt64))
q = @cfunction($f, Cint, (Ptr{Cvoid}, Ptr{UInt8}, UInt64))
`),
    expect: (f) => f.some((r) => r.problems.some((p) => /no function gc_file_calback is defined/.test(p))) &&
      f.some((r) => r.problems.some((p) => /closure cfunction/.test(p))),
  },
  {
    name: 'every literal header constant and every error code must be mirrored',
    run: () => runChecks({ sources: [{ file: 'case.jl', text:
      'const SHARDPOINT_ECANCELED = Cint(-22)\nconst ECANCELED = Int(L.SHARDPOINT_ECANCELED)\nconst EIO = Int(L.SHARDPOINT_EINVAL)\n' }],
      headerText, exported: allExports() }).filter((r) => /^(header constant|error code)/.test(r.what)),
    expect: (f) => {
      const get = (what) => f.find((r) => r.what === what);
      const checks = [
        [get('header constant SHARDPOINT_ECANCELED is mirrored in Julia'), true],
        [get('header constant SHARDPOINT_PROGRESS_VERIFY is mirrored in Julia'), false],
        [get('error code SHARDPOINT_ECANCELED has the Julia name ECANCELED'), true],
        [get('error code SHARDPOINT_ENOTDURABLE has the Julia name ENOTDURABLE'), false],
        [get('error code SHARDPOINT_EIO has the Julia name EIO'), false],
      ];
      const wrong = checks.filter(([r, ok]) => !r || r.ok !== ok);
      return wrong.length === 0 || `unexpected: ${wrong.map(([r, ok]) => (r ? r.what : '(missing result)') + ` ok=${r && r.ok}, expected ${ok}`).join('; ')}`;
    },
  },
  {
    name: 'a function pointer argument passed as something else',
    run: () => failuresOf('g(d, f, cb, u, n, b) = @ccall libshardpoint.shardpoint_gc(d::Cstring, f::UInt32, ' +
      'cb::UInt64, u::Ptr{Cvoid}, n::Ptr{UInt64}, b::Ptr{UInt64})::Cint\n'),
    expect: (f) => f.some((r) => /shardpoint_gc/.test(r.what) && r.problems.some((p) => /cb|argument 3/.test(p))),
  },
  {
    name: 'library constant that is not the SONAME',
    run: () => runChecks({ sources: [{ file: 'case.jl', text: 'const libshardpoint = "libshardpoint.so"\n' }],
      headerText, exported: allExports(), soname: 'libshardpoint.so.0' }).filter((r) => !r.ok && /SONAME/.test(r.what)),
    expect: (f) => f.length === 1 && f[0].problems.some((p) => /it is "libshardpoint.so"/.test(p)),
  },
  {
    name: 'preference whose Linux default is not the SONAME',
    run: () => runChecks({ sources: [{ file: 'case.jl', text:
      'const library_linux = "libshardpoint.so.1"\n' +
      'const libshardpoint = Preferences.load_preference(package_uuid, "library", Sys.isapple() ? "x" : library_linux)\n' }],
      headerText, exported: allExports(), soname: 'libshardpoint.so.0' }).filter((r) => !r.ok && /SONAME/.test(r.what)),
    expect: (f) => f.length === 1 && f[0].problems.some((p) => /library_linux is "libshardpoint.so.1"/.test(p)),
  },
  {
    name: 'library constant read from an environment variable',
    run: () => runChecks({ sources: [{ file: 'case.jl', text:
      'const library_linux = "libshardpoint.so.0"\n' +
      'const libshardpoint = get(ENV, "SHARDPOINT_LIBRARY", library_linux)\n' }],
      headerText, exported: allExports(), soname: 'libshardpoint.so.0' }).filter((r) => !r.ok && /SONAME/.test(r.what)),
    expect: (f) => f.length === 1 && f[0].problems.some((p) => /neither a string nor Preferences/.test(p)),
  },
  {
    name: 'positions: a sample of the old mixed style (0-based offsets=, hand-made - 1) fails every positions check',
    run: () => positionFailures(OLD_POSITIONS),
    expect: (f) => {
      const has = (what, re) => f.some((r) => r.what.includes(what) && r.problems.some((p) => re.test(p)));
      const missing = [
        ['no public name', /case\.jl:3: keyword offsets/],
        ['no + 1 / - 1', /"i - 1"/],
        ['passed to C', /shardpoint_reader_read_tensor argument 5 \(box_offsets\) is "offs"/],
        ['passed to C', /entry_info argument 2 \(a 0-based number\) is "UInt64\(i - 1\)"/],
        ['passed to C', /shardpoint_reader_chunk_info argument 3 \(chunk\) is "UInt64\(c\)"/],
        ['read from C', /"out\[\]\.offsets" is the library's 0-based position/],
        ['no exported function', /entry_info is exported/],
      ].filter(([what, re]) => !has(what, re));
      return missing.length === 0 ||
        `not reported: ${missing.map(([w, re]) => `${w} ${re}`).join('; ')} (got ${f.map((r) => r.what + ': ' + r.problems.join('; ')).join(' | ')})`;
    },
  },
  {
    name: 'positions: the 1-based style (at= ranges, c_index, julia_ranges) passes',
    run: () => positionFailures(NEW_POSITIONS),
    expect: (f) => f.length === 0 || f.map((r) => `${r.what}: ${r.problems.join('; ')}`).join(' | '),
  },
  {
    name: 'positions: test files are held to the names only',
    run: () => runChecks({ sources: [{ file: 'test/case.jl', text:
      'rows = lo + 1:hi\nadd_tensor!(s, "w", A; offsets=(lo, 0))\n' }], headerText, exported: allExports() })
      .filter((r) => r.what.startsWith('test/case.jl: positions')),
    expect: (f) => (f.length === 1 && !f[0].ok && f[0].problems.some((p) => /keyword offsets/.test(p))) ||
      `got ${JSON.stringify(f.map((r) => [r.what, r.ok]))}`,
  },
];

let passed = 0;
let failed = 0;
for (const c of cases) {
  let verdict;
  try {
    verdict = c.expect(c.run());
  } catch (e) {
    verdict = `threw ${e.stack}`;
  }
  if (verdict === true) {
    passed++;
    console.log(`ok   ${c.name}`);
  } else {
    failed++;
    console.log(`FAIL ${c.name}${typeof verdict === 'string' ? ': ' + verdict : ''}`);
  }
}
console.log(`selftest: ${passed} passed, ${failed} failed`);
process.exitCode = failed === 0 ? 0 : 1;
