package sluice

import "testing"

func TestASCIIUpperLowerMatchBytewise(t *testing.T) {
	var all []byte
	for i := range 256 * 3 {
		all = append(all, byte(i*7+i/256))
	}
	for start := range 9 {
		for end := start; end <= len(all); end += 13 {
			up := append([]byte(nil), all[start:end]...)
			lo := append([]byte(nil), all[start:end]...)
			ASCIIUpper(up)
			ASCIILower(lo)
			for j, c := range all[start:end] {
				wantUp, wantLo := c, c
				if c >= 'a' && c <= 'z' {
					wantUp = c - 32
				}
				if c >= 'A' && c <= 'Z' {
					wantLo = c + 32
				}
				if up[j] != wantUp || lo[j] != wantLo {
					t.Fatalf("byte %#x: upper %#x, lower %#x", c, up[j], lo[j])
				}
			}
		}
	}
	ASCIIUpper(nil)
	ASCIILower([]byte{})
}
