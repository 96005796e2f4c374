#!/usr/bin/env node
// Static check of the Julia binding, standing in for running Julia (there is no Julia on the CI
// machine). It parses every .jl file with tree-sitter's Julia grammar and compares what the code
// declares about the C ABI with the header and with the built library:
//
//   - every file parses without ERROR or MISSING nodes;
//   - every ccall / @ccall names a symbol the library exports and the header declares, with the
//     header's argument count, argument types and return type (C types mapped to Julia types);
//   - every header function is exported by the library and called from Julia;
//   - every Julia struct mirroring a header struct has the header's fields, in order, with
//     matching types (so Ref{struct} arguments have the C layout);
//   - every Julia constant named SHARDPOINT_* has the header's value;
//   - every @cfunction matches the prototype of the callback it is passed as (a function pointer
//     field of a header struct, or a function pointer typedef such as shardpoint_gc_callback);
//   - the library name used by the ccalls is the library's SONAME;
//   - positions follow one convention (see "Positions" below): 1-based in Julia, converted to and
//     from the C ABI's 0-based offsets and numbers only by the helpers of src/positions.jl.
//
// Usage: node check.js --header shardpoint.h [--lib libshardpoint.so] [--root DIR] [-v]
// Exits 1 when any check fails. The last line is "checks: N passed, N failed".

'use strict';

const fs = require('fs');
const path = require('path');
const { execFileSync } = require('child_process');

// ------------------------------------------------------------------------------------------------
// Header
// ------------------------------------------------------------------------------------------------

function stripComments(text) {
  return text.replace(/\/\*[\s\S]*?\*\//g, ' ').replace(/\/\/[^\n]*/g, ' ');
}

// "const uint64_t *" -> { base: 'uint64_t', ptr: 1 }. Qualifiers are dropped: they do not change
// the Julia type.
function parseCType(text) {
  const ptr = (text.match(/\*/g) || []).length;
  const words = text.replace(/\*/g, ' ').split(/\s+/).filter(
    (w) => w && !['const', 'volatile', 'struct', 'enum', 'restrict'].includes(w));
  if (words.length !== 1) throw new Error(`cannot parse C type "${text.trim()}"`);
  return { base: words[0], ptr };
}

function cTypeText(t) {
  return t.base + (t.ptr ? ' ' + '*'.repeat(t.ptr) : '');
}

// One parameter or field declaration "const char *name" -> { name, type }.
function parseDecl(text) {
  const m = text.trim().match(/^([\s\S]*?)([A-Za-z_]\w*)\s*$/);
  if (!m || !/\S/.test(m[1])) throw new Error(`cannot parse declaration "${text.trim()}"`);
  return { name: m[2], type: parseCType(m[1]) };
}

function parseParams(text) {
  const t = text.trim();
  if (t === '' || t === 'void') return [];
  return t.split(',').map(parseDecl);
}

function parseHeader(source) {
  const text = stripComments(source);
  const header = { functions: new Map(), structs: new Map(), constants: new Map(), enums: new Set(),
    enumMembers: new Map(), callbacks: new Map() };

  // Macros with a literal value. Multi-line and expression macros are recorded as unparsable.
  const logical = text.replace(/\\\n/g, ' ').split('\n');
  for (const line of logical) {
    const m = line.match(/^\s*#\s*define\s+(SHARDPOINT_\w+)\s+(.*?)\s*$/);
    if (!m) continue;
    const value = parseCLiteral(m[2]);
    header.constants.set(m[1], value);
  }
  const body = logical.filter((l) => !/^\s*#/.test(l)).join('\n');

  for (const m of body.matchAll(/typedef\s+enum\s+(\w+)\s*\{([^}]*)\}\s*(\w+)\s*;/g)) {
    header.enums.add(m[1]);
    header.enums.add(m[3]);
    const members = [];
    header.enumMembers.set(m[1], members);
    header.enumMembers.set(m[3], members);
    let next = 0;
    for (const item of m[2].split(',')) {
      const e = item.trim().match(/^(\w+)\s*(?:=\s*(.+))?$/);
      if (!e) continue;
      const v = e[2] !== undefined ? parseCLiteral(e[2]) : next;
      header.constants.set(e[1], v);
      members.push(e[1]);
      if (typeof v === 'bigint') next = v + 1n;
    }
  }

  for (const m of body.matchAll(/typedef\s+struct\s+(\w+)\s*\{([^}]*)\}\s*(\w+)\s*;/g)) {
    const fields = [];
    for (const raw of m[2].split(';')) {
      const decl = raw.trim();
      if (!decl) continue;
      const fp = decl.match(/^([\s\S]+?)\(\s*\*\s*(\w+)\s*\)\s*\(([\s\S]*)\)$/);
      if (fp) {
        fields.push({ name: fp[2], fnptr: { ret: parseCType(fp[1]), params: parseParams(fp[3]) } });
      } else {
        fields.push(parseDecl(decl));
      }
    }
    header.structs.set(m[3], { opaque: false, fields });
  }
  for (const m of body.matchAll(/typedef\s+struct\s+(\w+)\s+(\w+)\s*;/g)) {
    header.structs.set(m[2], { opaque: true, fields: [] });
  }

  // Function pointer types: typedef int (*shardpoint_gc_callback)(void *user, ...);
  for (const m of body.matchAll(/typedef\s+([^;{}()]+?)\(\s*\*\s*(\w+)\s*\)\s*\(([^)]*)\)\s*;/g)) {
    header.callbacks.set(m[2], { ret: parseCType(m[1]), params: parseParams(m[3]) });
  }

  for (const m of body.matchAll(/SHARDPOINT_API\s+([^;{}()]+?)\b(shardpoint_\w+)\s*\(([^)]*)\)\s*;/g)) {
    header.functions.set(m[2], { ret: parseCType(m[1]), params: parseParams(m[3]) });
  }
  return header;
}

// An integer literal (0x1u, -7, 32) as a BigInt, a string literal as a string, else undefined.
function parseCLiteral(text) {
  const t = text.trim();
  let m = t.match(/^(-?)\s*(0[xX][0-9a-fA-F]+|\d+)[uUlL]*$/);
  if (m) return (m[1] ? -1n : 1n) * BigInt(m[2]);
  m = t.match(/^"((?:[^"\\]|\\.)*)"$/);
  if (m) return m[1];
  return undefined;
}

// ------------------------------------------------------------------------------------------------
// C type -> accepted Julia types
// ------------------------------------------------------------------------------------------------

const SCALARS = {
  void: ['Cvoid'],
  char: ['Cchar', 'UInt8', 'Int8'],
  int: ['Cint', 'Int32'],
  'unsigned': ['Cuint', 'UInt32'],
  int8_t: ['Int8'],
  uint8_t: ['UInt8'],
  int16_t: ['Int16'],
  uint16_t: ['UInt16'],
  int32_t: ['Int32', 'Cint'],
  uint32_t: ['UInt32', 'Cuint'],
  int64_t: ['Int64', 'Clonglong'],
  uint64_t: ['UInt64', 'Culonglong'],
  size_t: ['Csize_t', 'UInt64', 'UInt'],
  float: ['Cfloat', 'Float32'],
  double: ['Cdouble', 'Float64'],
};

// ctx: 'arg' (ccall argument: Ref{T} is as good as Ptr{T}), 'ret', 'field' (struct field), 'cb'
// (@cfunction argument).
function juliaTypesFor(ct, header, ctx) {
  if (ct.ptr === 0) {
    if (SCALARS[ct.base]) {
      if (ct.base === 'void' && ctx !== 'ret' && ctx !== 'pointee') return [];
      return SCALARS[ct.base];
    }
    if (header.enums.has(ct.base)) return ['Cint', 'Int32'];
    if (header.structs.has(ct.base)) return [ct.base];
    // A function pointer type (an @cfunction's pointer) is passed as a plain pointer.
    if (header.callbacks && header.callbacks.has(ct.base)) return ['Ptr{Cvoid}'];
    return [];
  }
  if (ct.ptr === 1 && ct.base === 'char') {
    return ctx === 'arg' || ctx === 'ret' || ctx === 'field'
      ? ['Cstring', 'Ptr{UInt8}', 'Ptr{Cchar}']
      : ['Ptr{UInt8}', 'Ptr{Cchar}'];
  }
  const inner = juliaTypesFor({ base: ct.base, ptr: ct.ptr - 1 }, header, 'pointee');
  const out = inner.map((t) => `Ptr{${t}}`);
  if (ctx === 'arg') for (const t of inner) if (t !== 'Cvoid') out.push(`Ref{${t}}`);
  return out;
}

// Julia type text as compared: no spaces, module qualifiers dropped, Nothing spelled Cvoid.
function normJuliaType(text) {
  return text
    .replace(/\s+/g, '')
    .replace(/\b(?:[A-Za-z_]\w*\.)+(?=[A-Za-z_])/g, '')
    .replace(/\bNothing\b/g, 'Cvoid');
}

// ------------------------------------------------------------------------------------------------
// Julia sources
// ------------------------------------------------------------------------------------------------

function makeParser() {
  const Parser = require('tree-sitter');
  const Julia = require('tree-sitter-julia');
  const parser = new Parser();
  parser.setLanguage(Julia);
  return parser;
}

function isComment(node) {
  return /comment/.test(node.type);
}

function namedArgs(node) {
  return node ? node.namedChildren.filter((c) => !isComment(c)) : [];
}

function lineOf(node) {
  return node.startPosition.row + 1;
}

function walk(node, visit) {
  const stack = [node];
  while (stack.length) {
    const n = stack.pop();
    visit(n);
    for (let i = n.childCount - 1; i >= 0; i--) stack.push(n.child(i));
  }
}

function macroName(node) {
  const id = node.namedChildren.find((c) => c.type === 'macro_identifier');
  return id ? id.text.replace(/\s+/g, '') : null;
}

function macroArgs(node) {
  const list = node.namedChildren.find((c) => c.type === 'macro_argument_list' || c.type === 'argument_list');
  return namedArgs(list);
}

// @ccall lib.name(a::T, ...)::R  ->  { kind, line, lib, name, args: [type], ret, problems }
function readAtCcall(node) {
  const site = { form: '@ccall', line: lineOf(node), lib: null, name: null, args: [], ret: null, problems: [] };
  const [expr] = macroArgs(node);
  if (!expr || expr.type !== 'typed_expression') {
    site.problems.push('@ccall without a ::ReturnType');
    return site;
  }
  const parts = namedArgs(expr);
  const call = parts[0];
  site.ret = parts[parts.length - 1].text;
  if (!call || call.type !== 'call_expression') {
    site.problems.push('@ccall of something that is not a call');
    return site;
  }
  const [callee, arglist] = namedArgs(call);
  if (callee.type === 'field_expression') {
    const [lib, name] = namedArgs(callee);
    site.lib = lib.text;
    site.name = name.text;
  } else if (callee.type === 'identifier') {
    site.name = callee.text;
  } else {
    site.problems.push(`cannot check a call through "${callee.text}" (not library.symbol)`);
    return site;
  }
  namedArgs(arglist).forEach((a, i) => {
    if (a.type !== 'typed_expression') {
      site.problems.push(`argument ${i + 1} "${a.text}" has no ::Type`);
      site.args.push(null);
    } else {
      const p = namedArgs(a);
      site.args.push(p[p.length - 1].text);
    }
  });
  return site;
}

const CALLCONVS = new Set(['cdecl', 'stdcall', 'fastcall', 'thiscall', 'llvmcall']);

// ccall((:name, lib), R, (T, ...), values...)
function readCcall(node) {
  const site = { form: 'ccall', line: lineOf(node), lib: null, name: null, args: [], ret: null, problems: [] };
  const args = namedArgs(node.namedChildren.find((c) => c.type === 'argument_list'));
  let i = 0;
  const spec = args[i++];
  if (args[i] && CALLCONVS.has(args[i].text)) i++;
  const ret = args[i++];
  const types = args[i++];
  const values = args.slice(i);
  if (!spec || !ret || !types) {
    site.problems.push('ccall needs (function, library), return type and argument types');
    return site;
  }
  const symbolOf = (n) => (n.type === 'quote_expression' ? n.text.replace(/^:/, '')
    : n.type === 'string_literal' ? n.text.replace(/^"|"$/g, '') : null);
  if (spec.type === 'tuple_expression') {
    const [fn, lib] = namedArgs(spec);
    site.name = fn ? symbolOf(fn) : null;
    site.lib = lib ? lib.text : null;
  } else {
    site.name = symbolOf(spec);
  }
  if (!site.name) {
    site.problems.push(`cannot check a call through "${spec.text}" (not (:symbol, library))`);
    return site;
  }
  site.ret = ret.text;
  if (types.type !== 'tuple_expression') {
    site.problems.push(`argument types "${types.text}" are not a tuple literal (a 1-tuple needs a trailing comma)`);
    return site;
  }
  site.args = namedArgs(types).map((t) => t.text);
  if (values.length !== site.args.length) {
    site.problems.push(`${site.args.length} argument types but ${values.length} argument values`);
  }
  return site;
}

// @cfunction(f, R, (T, ...))
function readCfunction(node) {
  const site = { line: lineOf(node), fn: null, ret: null, args: [], problems: [] };
  const args = macroArgs(node);
  if (args.length !== 3) {
    site.problems.push('@cfunction needs (function, return type, argument types)');
    return site;
  }
  site.fn = args[0].text;
  site.ret = args[1].text;
  if (args[2].type !== 'tuple_expression') {
    site.problems.push(`argument types "${args[2].text}" are not a tuple literal`);
    return site;
  }
  site.args = namedArgs(args[2]).map((t) => t.text);
  return site;
}

function readStruct(node) {
  const head = node.namedChildren.find((c) => c.type === 'type_head');
  const nameNode = head && namedArgs(head)[0];
  if (!nameNode || nameNode.type !== 'identifier') return null;
  const fields = [];
  for (const c of namedArgs(node)) {
    if (c.type === 'typed_expression') {
      const p = namedArgs(c);
      fields.push({ name: p[0].text, type: p[p.length - 1].text });
    } else if (c.type === 'identifier') {
      fields.push({ name: c.text, type: 'Any' });
    } else if (c.type === 'const_statement') {
      fields.push({ name: c.text, type: '(const field)' });
    }
  }
  return { line: lineOf(node), name: nameNode.text, mutable: /^mutable\b/.test(node.text), fields };
}

const INT_CTORS = new Set(['Int8', 'UInt8', 'Int16', 'UInt16', 'Int32', 'UInt32', 'Int64', 'UInt64',
  'Int', 'UInt', 'Cint', 'Cuint', 'Clonglong', 'Culonglong', 'Csize_t']);

// Value of a constant's right-hand side: integer literals, their negation, integer type
// constructors around them, and plain string literals.
function evalJulia(node) {
  if (!node) return undefined;
  if (node.type === 'integer_literal') return BigInt(node.text.replace(/_/g, ''));
  if (node.type === 'string_literal') {
    const c = namedArgs(node);
    if (c.length === 0) return '';
    if (c.length === 1 && c[0].type === 'content') return c[0].text;
    return undefined;
  }
  if (node.type === 'unary_expression') {
    const [op, arg] = node.children;
    const v = evalJulia(arg);
    if (op && op.text === '-' && typeof v === 'bigint') return -v;
    return undefined;
  }
  if (node.type === 'parenthesized_expression') return evalJulia(namedArgs(node)[0]);
  if (node.type === 'call_expression') {
    const [callee, list] = namedArgs(node);
    const args = namedArgs(list);
    if (callee && INT_CTORS.has(callee.text) && args.length === 1) return evalJulia(args[0]);
  }
  return undefined;
}

function readConst(node) {
  const asg = namedArgs(node)[0];
  if (!asg || asg.type !== 'assignment') return null;
  const lhs = asg.namedChildren[0];
  const rhs = asg.namedChildren[asg.namedChildren.length - 1];
  if (!lhs || lhs.type !== 'identifier') return null;
  return { line: lineOf(node), name: lhs.text, value: evalJulia(rhs), text: rhs.text };
}

// Everything the checks need from one file.
function scanJulia(parser, file, text) {
  const tree = parser.parse(text, null, { bufferSize: Buffer.byteLength(text) * 2 + 64 });
  const out = { file, root: tree.rootNode, syntax: [], ccalls: [], cfunctions: [], structs: [], consts: [] };
  walk(tree.rootNode, (n) => {
    if (n.type === 'ERROR') {
      out.syntax.push(`${file}:${lineOf(n)}:${n.startPosition.column + 1}: syntax error near "${n.text.slice(0, 40).replace(/\n/g, ' ')}"`);
    } else if (n.isMissing) {
      out.syntax.push(`${file}:${lineOf(n)}:${n.startPosition.column + 1}: missing "${n.type}"`);
    }
    if (n.type === 'macrocall_expression') {
      const name = macroName(n);
      if (name === '@ccall') out.ccalls.push(readAtCcall(n));
      else if (name === '@cfunction') out.cfunctions.push(readCfunction(n));
    } else if (n.type === 'call_expression') {
      const callee = n.namedChildren[0];
      if (callee && callee.type === 'identifier' && callee.text === 'ccall') out.ccalls.push(readCcall(n));
    } else if (n.type === 'struct_definition') {
      const s = readStruct(n);
      if (s) out.structs.push(s);
    } else if (n.type === 'const_statement') {
      const c = readConst(n);
      if (c) out.consts.push(c);
    }
  });
  return out;
}

// ------------------------------------------------------------------------------------------------
// Checks
// ------------------------------------------------------------------------------------------------

const LIBRARY_NAME = 'libshardpoint';

function typeMatches(juliaText, ctype, header, ctx) {
  const allowed = juliaTypesFor(ctype, header, ctx);
  return { ok: allowed.includes(normJuliaType(juliaText)), allowed };
}

function checkCallSite(site, file, header, exported) {
  const problems = [...site.problems];
  if (site.name) {
    if (site.lib !== LIBRARY_NAME) problems.push(`library is "${site.lib}", expected ${LIBRARY_NAME}`);
    if (exported && !exported.has(site.name)) problems.push(`symbol ${site.name} is not exported by the library`);
    const proto = header.functions.get(site.name);
    if (!proto) {
      problems.push(`symbol ${site.name} is not declared in the header`);
    } else if (site.problems.length === 0) {
      if (site.args.length !== proto.params.length) {
        problems.push(`argument count ${site.args.length}, the header has ${proto.params.length}`);
      } else {
        proto.params.forEach((p, i) => {
          const { ok, allowed } = typeMatches(site.args[i], p.type, header, 'arg');
          if (!ok) problems.push(`argument ${i + 1} (${p.name}: ${cTypeText(p.type)}) is ${site.args[i]}, expected one of ${allowed.join(', ')}`);
        });
      }
      const { ok, allowed } = typeMatches(site.ret, proto.ret, header, 'ret');
      if (!ok) problems.push(`return type is ${site.ret}, the header's ${cTypeText(proto.ret)} needs one of ${allowed.join(', ')}`);
    }
  }
  return { ok: problems.length === 0, what: `${file}:${site.line}: ${site.form} ${site.name || '?'}`, problems };
}

function checkStruct(name, hs, defs, header) {
  const what = `struct ${name} mirrors the header`;
  if (defs.length === 0) return { ok: false, what, problems: [`no Julia struct named ${name}`] };
  const problems = [];
  for (const { file, def } of defs) {
    const at = `${file}:${def.line}`;
    if (hs.opaque) {
      if (def.fields.length !== 0) problems.push(`${at}: ${name} is opaque in C, the Julia struct must have no fields`);
      continue;
    }
    if (def.mutable) problems.push(`${at}: ${name} must be an immutable struct (a mutable one is not laid out inline)`);
    if (def.fields.length !== hs.fields.length) {
      problems.push(`${at}: ${def.fields.length} fields, the header has ${hs.fields.length}`);
      continue;
    }
    hs.fields.forEach((f, i) => {
      const jf = def.fields[i];
      if (jf.name !== f.name) problems.push(`${at}: field ${i + 1} is ${jf.name}, the header has ${f.name}`);
      const allowed = f.fnptr ? ['Ptr{Cvoid}'] : juliaTypesFor(f.type, header, 'field');
      if (!allowed.includes(normJuliaType(jf.type))) {
        const ctext = f.fnptr ? 'function pointer' : cTypeText(f.type);
        problems.push(`${at}: field ${f.name} (${ctext}) is ${jf.type}, expected one of ${allowed.join(', ')}`);
      }
    });
  }
  return { ok: problems.length === 0, what: `${what} (${defs.map((d) => `${d.file}:${d.def.line}`).join(', ')})`, problems };
}

function checkConst(c, file, header) {
  const what = `${file}:${c.line}: const ${c.name}`;
  if (!header.constants.has(c.name)) return { ok: false, what, problems: [`${c.name} is not in the header`] };
  const expected = header.constants.get(c.name);
  if (expected === undefined) return { ok: false, what, problems: [`the header's ${c.name} is not a literal; do not mirror it`] };
  if (c.value === undefined) return { ok: false, what, problems: [`cannot evaluate "${c.text}" (use a literal or Int32(literal))`] };
  if (typeof c.value !== typeof expected || c.value !== expected) {
    return { ok: false, what, problems: [`value ${c.value}, the header has ${expected}`] };
  }
  return { ok: true, what, problems: [] };
}

function checkCfunction(site, file, header) {
  const problems = [...site.problems];
  const callbacks = [];
  for (const [sname, s] of header.structs) {
    for (const f of s.fields) if (f.fnptr) callbacks.push({ name: `${sname}.${f.name}`, field: f.name, proto: f.fnptr });
  }
  // Typedef'd callbacks are named by the word between shardpoint_ and _callback ("gc", "verify").
  for (const [tname, proto] of header.callbacks || []) {
    callbacks.push({ name: tname, field: tname.replace(/^shardpoint_/, '').replace(/_callback$/, ''), proto });
  }
  const matches = (cb) => cb.proto.params.length === site.args.length &&
    cb.proto.params.every((p, i) => juliaTypesFor(p.type, header, 'cb').includes(normJuliaType(site.args[i]))) &&
    juliaTypesFor(cb.proto.ret, header, 'ret').includes(normJuliaType(site.ret));
  let target = null;
  if (site.problems.length === 0) {
    const named = callbacks.filter((cb) => site.fn.toLowerCase().includes(cb.field.toLowerCase()));
    if (named.length > 0) {
      target = named.find(matches) || null;
      if (!target) {
        const cb = named[0];
        const want = `${cTypeText(cb.proto.ret)} (*)(${cb.proto.params.map((p) => cTypeText(p.type)).join(', ')})`;
        problems.push(`${site.fn} is the ${cb.name} callback, its signature must match ${want}`);
      }
    } else {
      target = callbacks.find(matches) || null;
      if (!target) problems.push('the signature matches no callback of the header');
    }
  }
  return { ok: problems.length === 0, what: `${file}:${site.line}: @cfunction ${site.fn || '?'}${target ? ' as ' + target.name : ''}`, problems };
}

// The binding names the library through the constant `libshardpoint` (see src/LibShardpoint.jl):
// either the SONAME itself, or a Preferences.jl lookup whose default is the platform's name, where
// the Linux name, the constant `library_linux`, must be the SONAME of the built library.
const LINUX_NAME = 'library_linux';
function checkSoname(scans, soname) {
  const find = (name) => {
    const defs = [];
    for (const s of scans) for (const c of s.consts) if (c.name === name) defs.push({ file: s.file, c });
    return defs;
  };
  const what = `const ${LIBRARY_NAME} is the library's SONAME ${soname}`;
  const defs = find(LIBRARY_NAME);
  if (defs.length !== 1) return { ok: false, what, problems: [`${defs.length} definitions of const ${LIBRARY_NAME}, expected 1`] };
  const { file, c } = defs[0];
  if (typeof c.value === 'string') {
    const ok = c.value === soname;
    return { ok, what: `${file}:${c.line}: ${what}`, problems: ok ? [] : [`it is ${c.text}`] };
  }
  const viaPreference = /^Preferences\.load_preference\(\s*package_uuid\s*,\s*"library"\s*,/.test(c.text) &&
    new RegExp(`\\b${LINUX_NAME}\\b`).test(c.text);
  const linux = find(LINUX_NAME);
  const whatPref = `${file}:${c.line}: const ${LIBRARY_NAME} is the "library" preference, by default ${LINUX_NAME} on Linux, the SONAME ${soname}`;
  const problems = [];
  if (!viaPreference) problems.push(`it is ${c.text}: neither a string nor Preferences.load_preference(package_uuid, "library", ...${LINUX_NAME}...)`);
  if (linux.length !== 1) problems.push(`${linux.length} definitions of const ${LINUX_NAME}, expected 1`);
  else if (linux[0].c.value !== soname) problems.push(`${LINUX_NAME} is ${linux[0].c.text}`);
  return { ok: problems.length === 0, what: whatPref, problems };
}

// ------------------------------------------------------------------------------------------------
// Positions
// ------------------------------------------------------------------------------------------------
//
// The Julia API uses one indexing convention: every position in a tensor is 1-based (a box is a
// tuple of unit ranges, entries and chunks are numbered from 1), and only the helpers of
// src/positions.jl convert to and from the library's 0-based offsets and numbers. Checked on the
// package's sources (test files: the names only):
//
//   - names: no keyword (in a definition or a call), field of a Julia struct or argument of an
//     exported function is named `offsets` or `*_offsets`, the C ABI's names of 0-based offsets;
//   - arithmetic: `+ 1` / `- 1` occurs only inside the helpers (elsewhere it converts by hand);
//   - to C: what is passed to a C function's position parameter (a header parameter named index,
//     chunk, first or *offsets) or to such a field of a C struct built in Julia is a helper's
//     result (c_index, c_offsets), a number the library returned (X[] of a Ref given to a C call),
//     a null pointer, or a `::UInt64` argument of an internal function whose callers are checked
//     the same way (exported functions take no such argument). Names bound to such values, and
//     functions that return them, count as the values;
//   - from C: a position field read from a C struct (`.offsets`, `.chunk`, ...) is read as a
//     direct argument of a helper (julia_ranges, julia_index).
// Names are matched, not types: it is a static check of the binding's own code.

const TO_C_HELPERS = new Set(['c_index', 'c_offsets']);
const TO_JULIA_HELPERS = new Set(['julia_index', 'julia_ranges']);
const POSITION_NAME = /^(?:index|chunk|first|(?:\w+_)?offsets)$/;
const ZERO_BASED_NAME = /^(?:\w+_)?offsets$/;
const LIBRARY_NUMBER_TYPES = new Set(['UInt64', 'Vector{UInt64}']);

function isTestFile(file) {
  return /(^|[\\/])test[\\/]/.test(file);
}

function unwrapParens(n) {
  while (n && n.type === 'parenthesized_expression') n = namedArgs(n)[0];
  return n;
}

// The name a call or definition is made under: `f`, `Base.close` -> `close`, `Ptr{UInt64}`.
function calleeName(callee) {
  if (!callee) return null;
  if (callee.type === 'field_expression') {
    const parts = namedArgs(callee);
    return parts[parts.length - 1].text;
  }
  return callee.text;
}

function insideCcall(node) {
  for (let p = node.parent; p; p = p.parent) {
    if (p.type === 'macrocall_expression' && macroName(p) === '@ccall') return true;
  }
  return false;
}

// A call of the C ABI through the raw wrappers (`L.shardpoint_x(...)`), not the @ccall inside one:
// { name, proto: [{ name }] } for a header function or a header struct's constructor, else null.
function cTarget(call, header) {
  const callee = namedArgs(call)[0];
  const name = calleeName(callee);
  if (!name || !/^shardpoint_\w+$/.test(name)) return null;
  if (callee.type === 'field_expression' && namedArgs(callee)[0].text === LIBRARY_NAME) return null;
  if (callee.type !== 'field_expression' && insideCcall(call)) return null;
  if (header.functions.has(name)) return { name, params: header.functions.get(name).params };
  const st = header.structs.get(name);
  if (st && !st.opaque) return { name, params: st.fields };
  return null;
}

// The positional arguments of a call (keywords and what follows a splat are not).
function positionalArgs(call) {
  const list = namedArgs(call).find((c) => c.type === 'argument_list');
  const out = [];
  for (const a of namedArgs(list)) {
    if (a.type === 'named_argument') continue;
    if (a.type === 'splat_expression') break;
    out.push(a);
  }
  return out;
}

function paramOf(node, keyword) {
  let n = node;
  if (n.type === 'named_argument') n = namedArgs(n)[0];
  if (!n) return null;
  if (n.type === 'identifier') return { name: n.text, type: null, keyword, node };
  if (n.type === 'typed_expression') {
    const p = namedArgs(n);
    return { name: p[0].type === 'identifier' ? p[0].text : null, type: p[p.length - 1].text, keyword, node };
  }
  return { name: null, type: null, keyword, node };
}

// A method definition, `function f(a; k) ... end` or `f(a) = expr`: { name, node, params, body,
// returns }, else null.
function readFunction(node) {
  let sig;
  let body;
  if (node.type === 'function_definition') {
    const s = node.namedChildren.find((c) => c.type === 'signature');
    sig = s && namedArgs(s)[0];
    body = namedArgs(node).filter((c) => c.type !== 'signature');
  } else if (node.type === 'assignment') {
    sig = node.namedChildren[0];
    body = [node.namedChildren[node.namedChildren.length - 1]];
  } else {
    return null;
  }
  let ret = null;  // the return type annotation, `f(...)::T`
  while (sig && (sig.type === 'where_expression' || sig.type === 'typed_expression')) {
    if (sig.type === 'typed_expression' && ret === null) {
      const parts = namedArgs(sig);
      ret = parts[parts.length - 1].text;
    }
    sig = namedArgs(sig)[0];
  }
  if (!sig || sig.type !== 'call_expression') return null;
  const [callee, list] = namedArgs(sig);
  if (!list || list.type !== 'argument_list') return null;
  const params = [];
  let keyword = false;
  for (const c of list.children) {
    if (c.type === ';') keyword = true;
    if (!c.isNamed || isComment(c)) continue;
    if (c.type === 'splat_expression') continue;
    const p = paramOf(c, keyword);
    if (p) params.push(p);
  }
  // What the method returns: its `return`s (not those of nested functions) and its last expression.
  const returns = [];
  const nested = new Set(['function_definition', 'arrow_function_expression', 'do_clause', 'macro_definition']);
  for (const b of body) {
    walk(b, (n) => {
      if (n.type === 'return_statement' && !hasAncestorBetween(n, node, nested)) returns.push(namedArgs(n)[0] || null);
    });
  }
  const last = body[body.length - 1];
  if (last && last.type !== 'return_statement') returns.push(last);
  const variadic = list.children.some((c) => c.type === 'splat_expression');
  return { name: calleeName(callee), node, params, positional: params.filter((p) => !p.keyword), body, returns,
    ret, variadic };
}

// Node objects are not unique (each access makes a new one): nodes are compared by their span.
function sameNode(a, b) {
  return a.type === b.type && a.startIndex === b.startIndex && a.endIndex === b.endIndex;
}

// Whether a node of one of `types` lies between `node` and its ancestor `top`.
function hasAncestorBetween(node, top, types) {
  for (let p = node.parent; p && !sameNode(p, top); p = p.parent) if (types.has(p.type)) return true;
  return false;
}

function collectFunctions(scan) {
  const fns = [];
  walk(scan.root, (n) => {
    if (n.type !== 'function_definition' && n.type !== 'assignment') return;
    const f = readFunction(n);
    if (f) fns.push({ ...f, file: scan.file });
  });
  return fns;
}

// Names bound in a function (`x = ...`) and names given to C calls as arguments (out-values).
function analyseBody(fn, header) {
  fn.bindings = new Map();
  fn.cArgs = new Set();
  fn.calls = [];
  for (const b of fn.body) {
    walk(b, (n) => {
      if (n.type === 'assignment') {
        const lhs = n.namedChildren[0];
        const rhs = n.namedChildren[n.namedChildren.length - 1];
        if (lhs && lhs.type === 'identifier') {
          if (!fn.bindings.has(lhs.text)) fn.bindings.set(lhs.text, []);
          fn.bindings.get(lhs.text).push(rhs);
        } else if (lhs && (lhs.type === 'open_tuple' || lhs.type === 'tuple_expression')) {
          // A destructured value is not traced: its names count as unconverted.
          for (const id of namedArgs(lhs)) {
            if (id.type === 'identifier') {
              if (!fn.bindings.has(id.text)) fn.bindings.set(id.text, []);
              fn.bindings.get(id.text).push(null);
            }
          }
        }
      } else if (n.type === 'call_expression') {
        fn.calls.push(n);
        if (cTarget(n, header)) {
          for (const a of positionalArgs(n)) if (a.type === 'identifier') fn.cArgs.add(a.text);
        }
      }
    });
  }
}

function checkPositions(scans, header) {
  const results = [];
  const pkg = scans.filter((s) => !isTestFile(s.file));
  const fns = [];
  const fnsByFile = new Map();
  for (const s of pkg) {
    const list = collectFunctions(s).filter((f) => !/^shardpoint_/.test(f.name));  // raw wrappers
    list.forEach((f) => analyseBody(f, header));
    fnsByFile.set(s.file, list);
    fns.push(...list);
  }
  const exported = new Set();
  for (const s of pkg) {
    walk(s.root, (n) => {
      if (n.type === 'export_statement') for (const id of namedArgs(n)) exported.add(id.text);
    });
  }
  const helperNames = new Set([...TO_C_HELPERS, ...TO_JULIA_HELPERS]);
  const helperNodes = fns.filter((f) => helperNames.has(f.name)).map((f) => f.node);
  const inHelper = (n) => helperNodes.some((h) => n.startIndex >= h.startIndex && n.endIndex <= h.endIndex);

  // to C: which values are positions the library can take.
  const derived = new Map();  // internal function -> indices of its ::UInt64 position arguments
  const sources = new Set();  // functions whose every result is such a value
  let grew = false;
  const derive = (name, k) => {
    if (!derived.has(name)) derived.set(name, new Set());
    if (!derived.get(name).has(k)) {
      derived.get(name).add(k);
      grew = true;
    }
  };
  const allowed = (expr, fn, seen) => {
    const e = unwrapParens(expr);
    if (!e) return false;
    if (e.type === 'identifier') {
      if (e.text === 'C_NULL') return true;
      if (fn.bindings.has(e.text)) {
        if (seen.has(e.text)) return true;
        seen.add(e.text);
        return fn.bindings.get(e.text).every((rhs) => allowed(rhs, fn, seen));
      }
      const k = fn.positional.findIndex((p) => p.name === e.text);
      if (k >= 0 && fn.positional[k].type && LIBRARY_NUMBER_TYPES.has(normJuliaType(fn.positional[k].type))) {
        derive(fn.name, k);
        return true;
      }
      return false;
    }
    if (e.type === 'index_expression') {
      const [obj, idx] = namedArgs(e);
      return Boolean(obj && obj.type === 'identifier' && idx && idx.type === 'vector_expression' &&
        namedArgs(idx).length === 0 && fn.cArgs.has(obj.text));
    }
    if (e.type === 'call_expression') {
      const [callee] = namedArgs(e);
      const name = calleeName(callee);
      if (TO_C_HELPERS.has(name) || sources.has(name)) return true;
      if (name === 'pointer' || /^Ptr\{/.test(name || '')) {
        const args = positionalArgs(e);
        return args.length === 1 && allowed(args[0], fn, seen);
      }
    }
    return false;
  };
  // Functions whose results are positions for the library, to a fixed point.
  for (let changed = true; changed;) {
    changed = false;
    const byName = new Map();
    for (const f of fns) {
      if (!byName.has(f.name)) byName.set(f.name, []);
      byName.get(f.name).push(f);
    }
    for (const [name, methods] of byName) {
      if (sources.has(name) || TO_C_HELPERS.has(name)) continue;
      if (methods.every((f) => f.returns.length > 0 && f.returns.every((r) => r && allowed(r, f, new Set())))) {
        sources.add(name);
        changed = true;
      }
    }
  }
  // The sinks, until no new internal function turns out to take library numbers.
  let toC;
  do {
    grew = false;
    toC = new Map();
    for (const f of fns) {
      const problems = [];
      for (const call of f.calls) {
        const target = cTarget(call, header);
        const args = positionalArgs(call);
        const checkArg = (i, what) => {
          if (i < args.length && !allowed(args[i], f, new Set())) {
            problems.push(`${f.file}:${lineOf(args[i])}: ${what} is "${args[i].text}": ` +
              'convert a 1-based position with c_index / c_offsets (src/positions.jl)');
          }
        };
        if (target) {
          target.params.forEach((p, i) => {
            if (POSITION_NAME.test(p.name)) checkArg(i, `${target.name} argument ${i + 1} (${p.name})`);
          });
        } else {
          const name = calleeName(namedArgs(call)[0]);
          if (derived.has(name)) {
            for (const k of derived.get(name)) checkArg(k, `${name} argument ${k + 1} (a 0-based number)`);
          }
        }
      }
      if (!toC.has(f.file)) toC.set(f.file, []);
      toC.get(f.file).push(...problems);
    }
  } while (grew);

  const positionFields = new Set();
  for (const st of header.structs.values()) {
    if (!st.opaque) for (const fl of st.fields) if (POSITION_NAME.test(fl.name)) positionFields.add(fl.name);
  }

  for (const s of scans) {
    const names = [];
    walk(s.root, (n) => {
      if (n.type === 'named_argument') {
        const p = paramOf(n, true);
        if (p && p.name && ZERO_BASED_NAME.test(p.name)) names.push(`${s.file}:${lineOf(n)}: keyword ${p.name}`);
      }
    });
    for (const st of s.structs) {
      if (/^shardpoint_/.test(st.name)) continue;  // mirrors of the C structs keep the C names
      for (const fl of st.fields) {
        if (ZERO_BASED_NAME.test(fl.name)) names.push(`${s.file}:${st.line}: field ${st.name}.${fl.name}`);
      }
    }
    for (const f of fnsByFile.get(s.file) || []) {
      for (const p of f.params) {
        if (!p.name || !ZERO_BASED_NAME.test(p.name) || p.node.type === 'named_argument') continue;
        if (p.keyword || exported.has(f.name)) {
          names.push(`${s.file}:${lineOf(p.node)}: ${p.keyword ? 'keyword' : 'argument'} ${p.name} of ${f.name}`);
        }
      }
    }
    results.push({ ok: names.length === 0, what: `${s.file}: positions: no public name is a 0-based offsets (C's name)`,
      problems: names.map((n) => `${n}: positions are 1-based ranges (at=...), not 0-based offsets`) });
    if (isTestFile(s.file)) continue;

    const arithmetic = [];
    const fromC = [];
    walk(s.root, (n) => {
      if (n.type === 'binary_expression') {
        const op = n.children.find((c) => c.type === 'operator');
        const one = namedArgs(n).some((c) => c.type === 'integer_literal' && c.text === '1');
        if (op && ['+', '-', '.+', '.-'].includes(op.text) && one && !inHelper(n)) {
          arithmetic.push(`${s.file}:${lineOf(n)}: "${n.text}": index arithmetic outside the conversion helpers (src/positions.jl)`);
        }
      } else if (n.type === 'field_expression') {
        const parts = namedArgs(n);
        const field = parts[parts.length - 1];
        if (parts.length === 2 && positionFields.has(field.text)) {
          const list = n.parent;
          const call = list && list.type === 'argument_list' ? list.parent : null;
          const via = call && call.type === 'call_expression' ? calleeName(namedArgs(call)[0]) : null;
          if (!TO_JULIA_HELPERS.has(via)) {
            fromC.push(`${s.file}:${lineOf(n)}: "${n.text}" is the library's 0-based position: read it with julia_index / julia_ranges`);
          }
        }
      }
    });
    results.push({ ok: arithmetic.length === 0, what: `${s.file}: positions: no + 1 / - 1 outside the conversion helpers`, problems: arithmetic });
    const sent = toC.get(s.file) || [];
    results.push({ ok: sent.length === 0, what: `${s.file}: positions: every position passed to C is converted`, problems: sent });
    results.push({ ok: fromC.length === 0, what: `${s.file}: positions: every position read from C is converted`, problems: fromC });
  }

  const defined = [...helperNames].filter((h) => fns.some((f) => f.name === h));
  const missing = [...helperNames].filter((h) => !defined.includes(h));
  results.push({ ok: missing.length === 0, what: `positions: the conversion helpers ${[...helperNames].join(', ')} are defined`,
    problems: missing.map((h) => `no definition of ${h}`) });
  const leaks = [...derived.keys()].filter((name) => exported.has(name));
  results.push({ ok: leaks.length === 0, what: 'positions: no exported function takes the library\'s 0-based numbers',
    problems: leaks.map((name) => `${name} is exported and passes its argument ${[...derived.get(name)].map((k) => k + 1).join(', ')} to C unconverted`) });
  return results;
}

// ------------------------------------------------------------------------------------------------
// Callback methods and constant coverage
// ------------------------------------------------------------------------------------------------

// Julia's aliases of C types, as the types they are (Cint === Int32), to compare method
// signatures with @cfunction types.
const TYPE_ALIASES = { Cint: 'Int32', Cuint: 'UInt32', Clonglong: 'Int64', Culonglong: 'UInt64', Csize_t: 'UInt',
  Cchar: 'Int8', Cfloat: 'Float32', Cdouble: 'Float64' };
function sameJuliaType(a, b) {
  const canon = (t) => normJuliaType(t).replace(/\b[A-Za-z_]\w*\b/g, (w) => TYPE_ALIASES[w] || w);
  return canon(a) === canon(b);
}

// Every @cfunction(f, R, (T, ...)) names a function f (not a closure, `$f`, which some platforms
// do not support) that the package defines with a method taking those argument types: a
// positional parameter per type, each untyped or of that type, and a return annotation, if any,
// of type R. Otherwise the @cfunction fails when Julia compiles it, which no run here would show.
function checkCfunctionMethods(scans) {
  const results = [];
  const methods = new Map();
  for (const s of scans) {
    for (const f of collectFunctions(s)) {
      if (!methods.has(f.name)) methods.set(f.name, []);
      methods.get(f.name).push(f);
    }
  }
  for (const s of scans) {
    for (const cf of s.cfunctions) {
      if (cf.problems.length > 0 || !cf.fn) continue;  // checkCfunction reports those
      const what = `${s.file}:${cf.line}: @cfunction ${cf.fn} has a method of its C signature`;
      const problems = [];
      if (/^\$/.test(cf.fn)) {
        problems.push(`${cf.fn} makes a closure cfunction, which some platforms do not support: ` +
          'pass a named function and its data through the callback\'s user pointer');
      } else {
        const name = cf.fn.replace(/^(?:[A-Za-z_]\w*\.)+/, '');
        const candidates = methods.get(name) || [];
        const want = `(${cf.args.join(', ')})::${cf.ret}`;
        if (candidates.length === 0) {
          problems.push(`no function ${name} is defined in the package`);
        } else {
          const mismatch = (f) => {
            if (f.variadic) return null;  // not compared
            if (f.positional.length !== cf.args.length) return `${f.positional.length} positional arguments`;
            for (let i = 0; i < cf.args.length; i++) {
              const p = f.positional[i];
              if (p.type && !sameJuliaType(p.type, cf.args[i])) return `argument ${i + 1} ${p.name || ''}::${p.type}`;
            }
            if (f.ret && !sameJuliaType(f.ret, cf.ret)) return `return type ${f.ret}`;
            return null;
          };
          const reasons = candidates.map((f) => [f, mismatch(f)]);
          if (!reasons.some(([, r]) => r === null)) {
            for (const [f, r] of reasons) {
              problems.push(`${f.file}:${lineOf(f.node)}: the method of ${name} has ${r}, the @cfunction needs ${want}`);
            }
          }
        }
      }
      results.push({ ok: problems.length === 0, what, problems });
    }
  }
  return results;
}

// Every literal constant of the header (#define and enum values) is mirrored by a Julia constant
// of the same name (whose value checkConst compares), and every error code has its short name
// (`const ECANCELED = Int(L.SHARDPOINT_ECANCELED)`, as `Shardpoint.ECANCELED`).
function checkConstantCoverage(scans, header) {
  const results = [];
  const consts = new Map();
  for (const s of scans) {
    if (isTestFile(s.file)) continue;
    for (const c of s.consts) if (!consts.has(c.name)) consts.set(c.name, { file: s.file, c });
  }
  for (const [name, value] of header.constants) {
    if (value === undefined) continue;  // not a literal: not mirrored (see checkConst)
    const ok = consts.has(name);
    results.push({ ok, what: `header constant ${name} is mirrored in Julia`,
      problems: ok ? [] : [`no const ${name} (src/LibShardpoint.jl)`] });
  }
  for (const name of header.enumMembers.get('shardpoint_error') || []) {
    const short = name.replace(/^SHARDPOINT_/, '');
    const def = consts.get(short);
    const ok = Boolean(def && new RegExp(`\\b${name}\\b`).test(def.c.text));
    results.push({ ok, what: `error code ${name} has the Julia name ${short}`,
      problems: ok ? [] : [def ? `${def.file}:${def.c.line}: const ${short} is ${def.c.text}, not the value of ${name}`
        : `no const ${short} = Int(L.${name}) (src/errors.jl)`] });
  }
  return results;
}

// sources: [{ file, text }]; headerText: the header; exported: Set of symbols or null (no library);
// soname: the library's SONAME or null.
function runChecks({ sources, headerText, exported, soname = null }) {
  const header = parseHeader(headerText);
  const parser = makeParser();
  const results = [];
  const scans = sources.map(({ file, text }) => scanJulia(parser, file, text));

  for (const s of scans) {
    results.push({ ok: s.syntax.length === 0, what: `${s.file} parses`, problems: s.syntax });
  }

  const bound = new Set();
  for (const s of scans) {
    for (const site of s.ccalls) {
      results.push(checkCallSite(site, s.file, header, exported));
      if (site.name) bound.add(site.name);
    }
  }
  for (const name of header.functions.keys()) {
    if (exported) {
      results.push({ ok: exported.has(name), what: `header function ${name} is exported by the library`,
        problems: exported.has(name) ? [] : [`${name} is declared in the header but not exported`] });
    }
    results.push({ ok: bound.has(name), what: `header function ${name} is called from Julia`,
      problems: bound.has(name) ? [] : [`no ccall of ${name}`] });
  }

  const defsByName = new Map();
  for (const s of scans) {
    for (const def of s.structs) {
      if (!defsByName.has(def.name)) defsByName.set(def.name, []);
      defsByName.get(def.name).push({ file: s.file, def });
    }
  }
  for (const [name, hs] of header.structs) {
    results.push(checkStruct(name, hs, defsByName.get(name) || [], header));
  }

  if (soname) results.push(checkSoname(scans, soname));
  for (const s of scans) {
    for (const c of s.consts) if (c.name.startsWith('SHARDPOINT_')) results.push(checkConst(c, s.file, header));
    for (const cf of s.cfunctions) results.push(checkCfunction(cf, s.file, header));
  }
  results.push(...checkCfunctionMethods(scans));
  results.push(...checkConstantCoverage(scans, header));
  results.push(...checkPositions(scans, header));
  return results;
}

// ------------------------------------------------------------------------------------------------
// Command line
// ------------------------------------------------------------------------------------------------

function exportedSymbols(lib) {
  const out = execFileSync('nm', ['-D', '--defined-only', lib], { encoding: 'utf8' });
  const names = new Set();
  for (const line of out.split('\n')) {
    const parts = line.trim().split(/\s+/);
    if (parts.length >= 3) names.add(parts[2].replace(/@.*$/, ''));
  }
  return names;
}

function librarySoname(lib) {
  const out = execFileSync('readelf', ['-d', lib], { encoding: 'utf8' });
  const m = out.match(/\(SONAME\)\s+Library soname: \[([^\]]+)\]/);
  return m ? m[1] : '(none)';
}

function juliaFiles(root) {
  const files = [];
  const visit = (dir) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      if (e.name.startsWith('.') || e.name === 'node_modules') continue;
      const p = path.join(dir, e.name);
      if (e.isDirectory()) visit(p);
      else if (e.isFile() && e.name.endsWith('.jl')) files.push(p);
    }
  };
  visit(root);
  return files;
}

function report(results, verbose) {
  let passed = 0;
  let failed = 0;
  for (const r of results) {
    if (r.ok) {
      passed++;
      if (verbose) console.log(`ok   ${r.what}`);
    } else {
      failed++;
      console.log(`FAIL ${r.what}`);
      for (const p of r.problems) console.log(`     ${p}`);
    }
  }
  return { passed, failed };
}

function main(argv) {
  const opts = { root: path.resolve(__dirname, '..'), header: null, lib: null, verbose: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--root') opts.root = argv[++i];
    else if (a === '--header') opts.header = argv[++i];
    else if (a === '--lib') opts.lib = argv[++i];
    else if (a === '-v' || a === '--verbose') opts.verbose = true;
    else throw new Error(`unknown argument ${a}`);
  }
  if (!opts.header) throw new Error('--header is required');
  const root = path.resolve(opts.root);
  const sources = juliaFiles(root).map((f) => ({ file: path.relative(process.cwd(), f), text: fs.readFileSync(f, 'utf8') }));
  if (sources.length === 0) throw new Error(`no .jl files under ${root}`);
  const exported = opts.lib ? exportedSymbols(opts.lib) : null;
  const soname = opts.lib ? librarySoname(opts.lib) : null;
  const results = runChecks({ sources, headerText: fs.readFileSync(opts.header, 'utf8'), exported, soname });
  if (!opts.lib) results.push({ ok: false, what: 'library symbols compared', problems: ['no --lib given'] });
  const { passed, failed } = report(results, opts.verbose);
  console.log(`checks: ${passed} passed, ${failed} failed`);
  return failed === 0 ? 0 : 1;
}

module.exports = { parseHeader, runChecks, juliaTypesFor, normJuliaType, report };

if (require.main === module) {
  try {
    process.exitCode = main(process.argv.slice(2));
  } catch (e) {
    console.error(`check.js: ${e.message}`);
    process.exitCode = 2;
  }
}
