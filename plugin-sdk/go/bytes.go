package sluice

// ASCIIUpper upper-cases the ASCII letters of b in place ('a'..'z' become
// 'A'..'Z'); every other byte, UTF-8 sequences included, is unchanged.
//
// In a component it runs as simd128 code, 16 bytes per instruction, which
// Go's wasm backend does not emit: adapter/sluice_bytes.wat, linked in by
// `sluice plugin build` like the WASI adapter. Natively (tests) it is a
// portable 8-bytes-a-step loop with the same results.
func ASCIIUpper(b []byte) {
	if len(b) > 0 {
		asciiUpper(b)
	}
}

// ASCIILower lower-cases the ASCII letters of b in place ('A'..'Z' become
// 'a'..'z'); every other byte is unchanged. See ASCIIUpper.
func ASCIILower(b []byte) {
	if len(b) > 0 {
		asciiLower(b)
	}
}

const (
	swarOnes  = 0x0101010101010101
	swarHighs = 0x8080808080808080
)

// swarCase flips the case bit of the bytes of w in from..from+25 (from =
// 'a': upper-cases, from = 'A': lower-cases), eight bytes at once.
func swarCase(w uint64, from byte) uint64 {
	h := w &^ swarHighs                     // low 7 bits: no carries between bytes
	ge := h + uint64(0x80-from)*swarOnes    // high bit where byte >= from
	gt := h + uint64(0x80-from-26)*swarOnes // high bit where byte > from+25
	in := ge &^ gt &^ w & swarHighs         // in range and not a non-ASCII byte
	return w ^ in>>2                        // 0x80 >> 2 = 0x20
}
