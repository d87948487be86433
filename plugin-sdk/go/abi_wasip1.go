//go:build wasip1

package sluice

// The `transformer` exports and the `host.log` import, lifted and lowered
// by hand (canonical ABI, wasm32). Operator authors never see this file.

import (
	"runtime"
	"strings"
	"unicode/utf8"
	"unsafe"

	"sluice.dev/sdk/internal/abi"
)

//go:wasmimport sluice:operator/host@0.2.0 log
func wasmLog(level uint32, ptr unsafe.Pointer, n uint32)

func hostLog(level Level, message string) {
	if !utf8.ValidString(message) {
		message = strings.ToValidUTF8(message, "\uFFFD")
	}
	wasmLog(uint32(level), unsafe.Pointer(unsafe.StringData(message)), uint32(len(message)))
}

var (
	instance Operator
	input    Batch
	out      Output
	own      Batch // the output buffers, reused from call to call
)

func init() {
	abi.ToErr = func(err error) *abi.Err {
		e := asError(err)
		switch e.Kind {
		case KindBadConfig:
			return &abi.Err{Case: 0, Message: e.Message}
		case KindBadRecords:
			a := &abi.Err{Case: 1}
			for _, r := range e.Records {
				a.Indices = append(a.Indices, uint32(r.Index))
				a.Reasons = append(a.Reasons, r.Reason)
			}
			return a
		default:
			return &abi.Err{Case: 2, Message: e.Message}
		}
	}
}

// Protect runs f. A panic in f is a bug of the operator's and, as a panic in
// a Rust operator, makes the component trap: the host then isolates the
// record that panics, writes it to the dead-letter file, re-creates the
// instance and goes on (a Failed error would stop the job). The panic, the
// goroutine's stack and, last, the panic and where it happened go to stderr
// first, which the host logs; that last line is the reason the host gives
// for the trap. For the glue only.
func Protect(f func() error) error {
	defer func() {
		if p := recover(); p != nil {
			trap(p)
		}
	}()
	return f()
}

// trap reports the recovered panic p and traps. Called from the deferred
// function that recovered p: the panicking frames are still on the stack.
func trap(p any) {
	what := describePanic(p)
	stack := make([]byte, 32<<10)
	stack = stack[:runtime.Stack(stack, false)]
	// The builtin print writes to stderr, without package fmt or os.
	print("panic: ", panicValue(p), "\n\n", string(stack), "\nuncaught panic: ", what, "\n")
	abi.Trap()
}

// init: func(config: list<tuple<string, string>>) -> result<_, error>
//
//go:wasmexport sluice:operator/transformer@0.2.0#init
func wasmInit(list unsafe.Pointer, n uint32) unsafe.Pointer {
	cfg := &Config{entries: make([][2]string, n)}
	for i := range cfg.entries {
		w := (*[4]uint32)(unsafe.Add(list, 16*i))
		cfg.entries[i] = [2]string{abi.String(abi.Ptr(w[0]), w[1]), abi.String(abi.Ptr(w[2]), w[3])}
	}
	err := Protect(func() error {
		if registered == nil {
			return Failed("no operator registered: call sluice.Register from an init function of package main")
		}
		op, err := registered(cfg)
		if err != nil {
			return err
		}
		instance = op
		abi.Instance = op
		return nil
	})
	abi.Prepare()
	return abi.UnitResult(err)
}

//go:wasmexport cabi_post_sluice:operator/transformer@0.2.0#init
func wasmPostInit(unsafe.Pointer) { abi.Reset() }

// process: func(input: batch) -> result<batch, error>. The batch (100
// bytes: six lists, then option<record-headers> at 48) arrives by pointer;
// the result (104 bytes) leaves through the return area.
//
//go:wasmexport sluice:operator/transformer@0.2.0#process
func wasmProcess(p unsafe.Pointer) unsafe.Pointer {
	in := &input
	*in = Batch{
		Keys: abi.Bytes(p, 0), KeyEnds: abi.U32s(p, 8), KeyPresent: abi.Bytes(p, 16),
		Values: abi.Bytes(p, 24), ValueEnds: abi.U32s(p, 32), Timestamps: abi.I64s(p, 40),
	}
	if *(*uint8)(unsafe.Add(p, 48)) != 0 {
		in.HeaderEnds, in.HeaderKeys, in.HeaderKeyEnds = abi.U32s(p, 52), abi.Bytes(p, 60), abi.U32s(p, 68)
		in.HeaderValues, in.HeaderValueEnds, in.HeaderValuePresent = abi.Bytes(p, 76), abi.U32s(p, 84), abi.Bytes(p, 92)
	}
	out.Batch = own
	b := &out.Batch
	b.Reset() // keeps the capacity the buffers grew to in earlier calls

	err := Protect(processInput)

	r := abi.Ret()
	if err != nil {
		abi.PutU8(r, 0, 1)
		abi.PutErr(r, 4, abi.ToErr(err))
	} else {
		lowerBatch(r, 4, b)
	}
	// Keep the grown buffers for the next call, unless the operator
	// replaced the output with the (arena) input buffers.
	if !replaced(b) {
		own = *b
	}
	*in = Batch{}
	abi.Prepare()
	return r
}

func processInput() error {
	if instance == nil {
		return Failed("process called before init")
	}
	return run(instance, &input, &out)
}

//go:wasmexport cabi_post_sluice:operator/transformer@0.2.0#process
func wasmPostProcess(unsafe.Pointer) { abi.Reset() }

func replaced(b *Batch) bool {
	return abi.Owns(unsafe.Pointer(unsafe.SliceData(b.Values))) ||
		abi.Owns(unsafe.Pointer(unsafe.SliceData(b.ValueEnds))) ||
		abi.Owns(unsafe.Pointer(unsafe.SliceData(b.Keys))) ||
		abi.Owns(unsafe.Pointer(unsafe.SliceData(b.Timestamps)))
}

func lowerBatch(r unsafe.Pointer, o uintptr, b *Batch) {
	abi.PutBytes(r, o+0, b.Keys)
	abi.PutU32s(r, o+8, b.KeyEnds)
	abi.PutBytes(r, o+16, b.KeyPresent)
	abi.PutBytes(r, o+24, b.Values)
	abi.PutU32s(r, o+32, b.ValueEnds)
	abi.PutI64s(r, o+40, b.Timestamps)
	// No headers: only the option's tag crosses. Any header data at all
	// goes across, for the host to validate.
	if len(b.HeaderEnds)+len(b.HeaderKeys)+len(b.HeaderKeyEnds)+len(b.HeaderValues)+len(b.HeaderValueEnds)+len(b.HeaderValuePresent) > 0 {
		abi.PutU8(r, o+48, 1)
		abi.PutU32s(r, o+52, b.HeaderEnds)
		abi.PutBytes(r, o+60, b.HeaderKeys)
		abi.PutU32s(r, o+68, b.HeaderKeyEnds)
		abi.PutBytes(r, o+76, b.HeaderValues)
		abi.PutU32s(r, o+84, b.HeaderValueEnds)
		abi.PutBytes(r, o+92, b.HeaderValuePresent)
	}
}
