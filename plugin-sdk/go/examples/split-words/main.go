// Command split-words is a Sluice flatMap from lines to words.
//
// It splits each value into words and emits one record per non-empty word,
// keyed by the word (so that a following `count` groups by word). Output
// records carry no headers. Settings:
//
//   - split_on (whitespace or non-alphanumeric, default whitespace): what
//     separates words. Whitespace is ASCII space, \t, \n, \f and \r (not
//     \v). non-alphanumeric also drops punctuation: any byte that is not an
//     ASCII letter or digit, or part of a non-ASCII character, separates
//     words.
//   - lowercase (true/false, default false): lower-case ASCII letters.
//   - keyed (true/false, default true): set the word as the key.
package main

import (
	"slices"

	"sluice.dev/sdk"
)

// SplitWords splits lines into words.
type SplitWords struct {
	separator [256]bool // whether each byte value separates words
	lowercase bool
	keyed     bool
	lowered   []byte // the lower-cased word, reused across records
}

// New reads the settings.
func New(cfg *sluice.Config) (*SplitWords, error) {
	if err := cfg.AllowOnly("split_on", "lowercase", "keyed"); err != nil {
		return nil, err
	}
	op := &SplitWords{}
	var isSeparator func(b byte) bool
	switch splitOn := cfg.GetOr("split_on", "whitespace"); splitOn {
	case "whitespace":
		isSeparator = func(b byte) bool { return b == ' ' || b == '\t' || b == '\n' || b == '\f' || b == '\r' }
	case "non-alphanumeric":
		// Bytes >= 0x80 belong to non-ASCII characters, which are kept whole.
		isSeparator = func(b byte) bool {
			return !('a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || b >= 0x80)
		}
	default:
		return nil, sluice.BadConfig("setting `split_on` = " + sluice.Quote(splitOn) + " is not valid (accepted: whitespace, non-alphanumeric)")
	}
	for b := range op.separator {
		op.separator[b] = isSeparator(byte(b))
	}
	var err error
	if op.lowercase, err = cfg.Bool("lowercase", false); err != nil {
		return nil, err
	}
	if op.keyed, err = cfg.Bool("keyed", true); err != nil {
		return nil, err
	}
	return op, nil
}

// ProcessBatch sizes the output once (text has a word every few bytes, and
// growing the buffers word by word would copy them several times over),
// then splits each record.
func (op *SplitWords) ProcessBatch(in *sluice.Batch, out *sluice.Output) error {
	b := &out.Batch
	n := len(in.Values)
	b.Values = slices.Grow(b.Values, n)
	b.ValueEnds = slices.Grow(b.ValueEnds, n/4)
	b.KeyEnds = slices.Grow(b.KeyEnds, n/4)
	b.Timestamps = slices.Grow(b.Timestamps, n/4)
	if op.keyed {
		b.Keys = slices.Grow(b.Keys, n)
		b.KeyPresent = slices.Grow(b.KeyPresent, n/4)
	}
	for r := range in.Records() {
		if err := op.ProcessRecord(r, out); err != nil {
			return err
		}
	}
	return nil
}

// ProcessRecord emits the words of one line.
func (op *SplitWords) ProcessRecord(r sluice.Record, out *sluice.Output) error {
	v, sep := r.Value, &op.separator
	for i := 0; i < len(v); {
		for i < len(v) && sep[v[i]] {
			i++
		}
		start := i
		for i < len(v) && !sep[v[i]] {
			i++
		}
		if start == i {
			break
		}
		word := v[start:i]
		if op.lowercase {
			op.lowered = op.lowered[:0]
			for _, c := range word {
				if 'A' <= c && c <= 'Z' {
					c += 'a' - 'A'
				}
				op.lowered = append(op.lowered, c)
			}
			word = op.lowered
		}
		if op.keyed {
			out.Emit(word, word, r.Timestamp)
		} else {
			out.Emit(nil, word, r.Timestamp)
		}
	}
	return nil
}

func init() { sluice.Register(New) }

func main() {}
