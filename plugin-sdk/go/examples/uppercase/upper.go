package main

import "unsafe"

const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// Upper upper-cases the ASCII letters of b in place; other bytes (UTF-8
// sequences included) are unchanged. SWAR: eight bytes per step.
func Upper(b []byte) {
	n := len(b)
	i := 0
	if n >= 8 {
		p := unsafe.Pointer(unsafe.SliceData(b))
		for ; i+32 <= n; i += 32 {
			w := (*[4]uint64)(unsafe.Add(p, i))
			w[0] = upper8(w[0])
			w[1] = upper8(w[1])
			w[2] = upper8(w[2])
			w[3] = upper8(w[3])
		}
		for ; i+8 <= n; i += 8 {
			w := (*uint64)(unsafe.Add(p, i))
			*w = upper8(*w)
		}
	}
	for ; i < n; i++ {
		if c := b[i]; c-'a' < 26 {
			b[i] = c - 0x20
		}
	}
}

// upper8 upper-cases the ASCII letters among the 8 bytes of w.
func upper8(w uint64) uint64 {
	h := w &^ highs                // low 7 bits of each byte: no carries below
	ge := h + (0x80-'a')*ones      // high bit set where byte >= 'a'
	gt := h + (0x80-'z'-1)*ones    // high bit set where byte > 'z'
	lower := ge &^ gt &^ w & highs // 'a'..'z' and not a non-ASCII byte
	return w ^ lower>>2            // 0x80 >> 2 = 0x20
}
