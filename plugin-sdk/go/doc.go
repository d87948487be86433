// Package sluice writes Sluice stream operators in Go.
//
// An operator is a type with a ProcessRecord method, built by a constructor
// that reads its settings. Register the constructor from an init function of
// package main and build the program for GOOS=wasip1 as a c-shared module;
// `sluice plugin build` turns it into a WebAssembly component:
//
//	package main
//
//	import (
//		"bytes"
//		"errors"
//
//		"sluice.dev/sdk"
//	)
//
//	// Shout keeps the records whose value contains a word, upper-cased.
//	type Shout struct{ word []byte }
//
//	func New(cfg *sluice.Config) (*Shout, error) {
//		if err := cfg.AllowOnly("word"); err != nil {
//			return nil, err
//		}
//		word, err := cfg.Require("word")
//		if err != nil {
//			return nil, err
//		}
//		return &Shout{word: []byte(word)}, nil
//	}
//
//	func (s *Shout) ProcessRecord(r sluice.Record, out *sluice.Output) error {
//		if len(r.Value) == 0 {
//			return errors.New("empty value") // rejects this record
//		}
//		if bytes.Contains(r.Value, s.word) {
//			out.Emit(r.Key, bytes.ToUpper(r.Value), r.Timestamp)
//		}
//		return nil
//	}
//
//	func init() { sluice.Register(New) }
//
//	func main() {}
//
// The host calls the component once per micro-batch of one partition, never
// once per record. The batch crosses the boundary as a few flat buffers
// (Batch); Record and Output hide that layout. Record slices point into the
// input batch: they are valid until ProcessRecord returns, so copy what you
// keep (string(r.Value), bytes.Clone). An operator that wants the last bit of
// speed also implements BatchProcessor and works on the buffers directly.
//
// A nil key means "no key"; a non-nil empty slice is a present, empty key.
// The same holds for header values (nil is a null value).
//
// Errors: an error returned by ProcessRecord rejects that record (its text is
// the reason, written to the dead-letter file); return Failed(...) to stop the
// job instead. Constructors return BadConfig errors (Config's helpers do) to
// refuse their settings. A panic is a bug, and as a panic in a Rust operator
// it makes the component trap, after the SDK writes it with its stack to
// stderr (which the host logs): the host sends the record that panics to the
// dead-letter file and goes on with a fresh instance.
//
// The same code runs natively under `go test` with Harness; the Wasm glue
// (files tagged wasip1) is compiled only for the Wasm build.
package sluice
