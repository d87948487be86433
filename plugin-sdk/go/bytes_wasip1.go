//go:build wasip1

package sluice

import "unsafe"

// Exported by adapter/sluice_bytes.wasm (adapter/sluice_bytes.wat), which
// works in place in this module's memory. The pointer is into Go memory,
// which the garbage collector never moves.

//go:wasmimport sluice_bytes upper
//go:noescape
func bytesUpper(p unsafe.Pointer, n uint32)

//go:wasmimport sluice_bytes lower
//go:noescape
func bytesLower(p unsafe.Pointer, n uint32)

func asciiUpper(b []byte) { bytesUpper(unsafe.Pointer(unsafe.SliceData(b)), uint32(len(b))) }

func asciiLower(b []byte) { bytesLower(unsafe.Pointer(unsafe.SliceData(b)), uint32(len(b))) }
