//go:build wasip1

// Package abi is the canonical-ABI glue shared by the exports of package
// sluice and package stateful: the allocator the host lifts arguments into,
// the return area, and lowering helpers. Operator authors never use it.
//
// Written by hand: the Go bindings generator (wit-bindgen-go and its
// go.bytecodealliance.org runtime packages) is not available from the Go
// module proxy here. See BUILD.md.
package abi

import (
	"strings"
	"unicode/utf8"
	"unsafe"
)

// Err is an operator error ready to lower: the contract's `error` variant.
type Err struct {
	Case    uint8 // 0 bad-config, 1 bad-records, 2 failed
	Message string
	Indices []uint32
	Reasons []string
}

// Instance is the operator of this instance, set by the init export.
var Instance any

// ToErr turns any error into an Err (set by package sluice).
var ToErr func(error) *Err

// Trap ends the call with a trap (wasm `unreachable`, trap_wasip1_wasm.s),
// as a panic does in a Rust operator. (An unrecovered panic exits through
// proc_exit instead, after a stack dump that ends with nothing to name.)
func Trap()

// ---- Allocation ----------------------------------------------------------
//
// The host lifts every argument (the input batch, the settings, a snapshot)
// into memory it gets from cabi_realloc. That memory is a bump arena of Go
// byte slices kept reachable from `chunks`, so the garbage collector never
// moves or frees it while record views point into it. The arena is reset in
// each post-return function: input buffers stay valid until the host has
// read the result (which may be the input itself, changed in place).
// Steady state allocates nothing: the chunks are reused from call to call.

var (
	chunks  [][]byte
	cur     int     // chunk being filled
	off     uintptr // bytes used in chunks[cur]
	pending []byte  // one chunk replacing all of them at the next reset
)

func init() {
	chunks = [][]byte{make([]byte, 256<<10)}
}

//go:wasmimport wasi_snapshot_preview1 adapter_monotonic_clock_set_paused
func clockSetPaused(paused bool)

//go:wasmexport cabi_realloc
func cabiRealloc(old unsafe.Pointer, oldSize, align, newSize uint32) unsafe.Pointer {
	// Calling an import from cabi_realloc traps ("cannot leave component
	// instance"). The Go runtime reads the monotonic clock when it grows the
	// heap or schedules garbage-collection work, which may happen at any
	// function call here: the WASI adapter answers from a cached value
	// meanwhile.
	clockSetPaused(true)
	p := alloc(uintptr(newSize), uintptr(align))
	if old != nil && oldSize > 0 {
		copy(unsafe.Slice((*byte)(p), newSize), unsafe.Slice((*byte)(old), min(oldSize, newSize)))
	}
	clockSetPaused(false)
	return p
}

func alloc(size, align uintptr) unsafe.Pointer {
	if align == 0 {
		align = 1
	}
	for cur < len(chunks) {
		c := chunks[cur]
		base := uintptr(unsafe.Pointer(unsafe.SliceData(c)))
		start := (base+off+align-1)&^(align-1) - base
		if start+size <= uintptr(len(c)) {
			off = start + size
			return unsafe.Add(unsafe.Pointer(unsafe.SliceData(c)), start)
		}
		cur++
		off = 0
	}
	// A new chunk (the clock is paused: see cabiRealloc).
	n := max(size+align, 2*uintptr(len(chunks[len(chunks)-1])))
	c := make([]byte, n)
	chunks = append(chunks, c)
	cur = len(chunks) - 1
	base := uintptr(unsafe.Pointer(unsafe.SliceData(c)))
	start := (base+align-1)&^(align-1) - base
	off = start + size
	return unsafe.Add(unsafe.Pointer(unsafe.SliceData(c)), start)
}

// Owns reports whether p points into the arena.
func Owns(p unsafe.Pointer) bool {
	a := uintptr(p)
	for _, c := range chunks {
		base := uintptr(unsafe.Pointer(unsafe.SliceData(c)))
		if a >= base && a < base+uintptr(len(c)) {
			return true
		}
	}
	return false
}

// Prepare runs at the end of an export (where allocating is allowed): when
// this call needed several chunks, it allocates one that holds them all,
// taken into use at the next Reset.
func Prepare() {
	if len(chunks) > 1 && pending == nil {
		var total int
		for _, c := range chunks {
			total += len(c)
		}
		pending = make([]byte, total+total/4)
	}
}

// Reset frees the arena for the next call (from post-return functions,
// which may not call imports either: the clock is paused) and drops what
// the last result referenced.
func Reset() {
	clockSetPaused(true)
	defer clockSetPaused(false)
	if pending != nil {
		chunks = [][]byte{pending}
		pending = nil
	}
	cur, off = 0, 0
	keep = keep[:0]
	for i := range keepStr {
		keepStr[i] = ""
	}
	keepStr = keepStr[:0]
	records = records[:0]
}

// ---- Lifting -------------------------------------------------------------

var nonNil = []byte{}

func word(p unsafe.Pointer, off uintptr) uint32 { return *(*uint32)(unsafe.Add(p, off)) }

// Bytes lifts the list<u8> whose (ptr, len) pair is at p+off.
func Bytes(p unsafe.Pointer, off uintptr) []byte {
	n := word(p, off+4)
	if n == 0 {
		return nonNil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(uintptr(word(p, off)))), n)
}

// U32s lifts a list<u32>.
func U32s(p unsafe.Pointer, off uintptr) []uint32 {
	n := word(p, off+4)
	if n == 0 {
		return nil
	}
	return unsafe.Slice((*uint32)(unsafe.Pointer(uintptr(word(p, off)))), n)
}

// I64s lifts a list<s64>.
func I64s(p unsafe.Pointer, off uintptr) []int64 {
	n := word(p, off+4)
	if n == 0 {
		return nil
	}
	return unsafe.Slice((*int64)(unsafe.Pointer(uintptr(word(p, off)))), n)
}

// Ptr turns a core-wasm address into a pointer.
func Ptr(addr uint32) unsafe.Pointer { return unsafe.Pointer(uintptr(addr)) }

// String copies the string at (ptr, len) into Go memory.
func String(ptr unsafe.Pointer, n uint32) string {
	if n == 0 {
		return ""
	}
	return strings.Clone(unsafe.String((*byte)(ptr), n))
}

// ---- Lowering ------------------------------------------------------------

// The return area: the largest result is result<batch, error>, 104 bytes.
var ret [26]uint32

// What the last result points to, kept reachable until post-return.
var (
	keep    [][]byte
	keepStr []string
	records []uint32
)

// Ret returns the return area, cleared.
func Ret() unsafe.Pointer {
	ret = [26]uint32{}
	return unsafe.Pointer(&ret)
}

// PutU8 stores a byte at p+off.
func PutU8(p unsafe.Pointer, off uintptr, v uint8) { *(*uint8)(unsafe.Add(p, off)) = v }

// PutU32 stores a word at p+off.
func PutU32(p unsafe.Pointer, off uintptr, v uint32) { *(*uint32)(unsafe.Add(p, off)) = v }

func putList(p unsafe.Pointer, off uintptr, data unsafe.Pointer, n int) {
	if n == 0 {
		data = nil
	}
	PutU32(p, off, uint32(uintptr(data)))
	PutU32(p, off+4, uint32(n))
}

// PutBytes lowers a list<u8> at p+off; b stays reachable until post-return.
func PutBytes(p unsafe.Pointer, off uintptr, b []byte) {
	keep = append(keep, b)
	putList(p, off, unsafe.Pointer(unsafe.SliceData(b)), len(b))
}

// PutU32s lowers a list<u32>. The caller keeps s reachable (it is an
// operator buffer or arena memory).
func PutU32s(p unsafe.Pointer, off uintptr, s []uint32) {
	putList(p, off, unsafe.Pointer(unsafe.SliceData(s)), len(s))
}

// PutI64s lowers a list<s64>. The caller keeps s reachable.
func PutI64s(p unsafe.Pointer, off uintptr, s []int64) {
	putList(p, off, unsafe.Pointer(unsafe.SliceData(s)), len(s))
}

// PutString lowers a string (made valid UTF-8, as the host requires).
func PutString(p unsafe.Pointer, off uintptr, s string) {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	keepStr = append(keepStr, s)
	putList(p, off, unsafe.Pointer(unsafe.StringData(s)), len(s))
}

// PutErr lowers the `error` variant at p+off (its 12 bytes: case, payload).
func PutErr(p unsafe.Pointer, off uintptr, e *Err) {
	PutU8(p, off, e.Case)
	if e.Case != 1 {
		PutString(p, off+4, e.Message)
		return
	}
	// list<record-error>: 12 bytes each, {index u32, reason string}.
	records = records[:0]
	for i, idx := range e.Indices {
		s := e.Reasons[i]
		if !utf8.ValidString(s) {
			s = strings.ToValidUTF8(s, "\uFFFD")
		}
		keepStr = append(keepStr, s)
		records = append(records, idx, uint32(uintptr(unsafe.Pointer(unsafe.StringData(s)))), uint32(len(s)))
	}
	putList(p, off+4, unsafe.Pointer(unsafe.SliceData(records)), len(e.Indices))
}

// UnitResult lowers result<_, error> (16 bytes) for err and returns it.
func UnitResult(err error) unsafe.Pointer {
	r := Ret()
	if err != nil {
		PutU8(r, 0, 1)
		PutErr(r, 4, ToErr(err))
	}
	return r
}
