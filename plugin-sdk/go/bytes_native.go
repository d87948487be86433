//go:build !wasip1

package sluice

import "unsafe"

func asciiUpper(b []byte) { swarConvert(b, 'a') }

func asciiLower(b []byte) { swarConvert(b, 'A') }

// swarConvert flips the case of the ASCII letters from..from+25 of b.
func swarConvert(b []byte, from byte) {
	n, i := len(b), 0
	p := unsafe.Pointer(unsafe.SliceData(b))
	for ; i+8 <= n; i += 8 {
		w := (*uint64)(unsafe.Add(p, i))
		*w = swarCase(*w, from)
	}
	for ; i < n; i++ {
		if c := b[i]; c-from < 26 {
			b[i] = c ^ 0x20
		}
	}
}
