//go:build wasip1

package stateful

// The `stateful` exports, lifted and lowered by hand (canonical ABI).

import (
	"unsafe"

	"sluice.dev/sdk"
	"sluice.dev/sdk/internal/abi"
)

func current(what string) (Operator, error) {
	op, ok := abi.Instance.(Operator)
	if !ok {
		if abi.Instance == nil {
			return nil, sluice.Failed(what + " called before init")
		}
		return nil, sluice.Failed("the operator has no Snapshot and Restore methods")
	}
	return op, nil
}

// snapshot: func() -> result<list<u8>, error>
//
//go:wasmexport sluice:operator/stateful@0.2.0#snapshot
func wasmSnapshot() unsafe.Pointer {
	var state []byte
	err := sluice.Protect(func() error {
		op, err := current("snapshot")
		if err != nil {
			return err
		}
		state, err = op.Snapshot()
		return err
	})
	r := abi.Ret()
	if err != nil {
		abi.PutU8(r, 0, 1)
		abi.PutErr(r, 4, abi.ToErr(err))
	} else {
		abi.PutBytes(r, 4, state)
	}
	abi.Prepare()
	return r
}

//go:wasmexport cabi_post_sluice:operator/stateful@0.2.0#snapshot
func wasmPostSnapshot(unsafe.Pointer) { abi.Reset() }

// restore: func(state: list<u8>) -> result<_, error>
//
//go:wasmexport sluice:operator/stateful@0.2.0#restore
func wasmRestore(ptr unsafe.Pointer, n uint32) unsafe.Pointer {
	state := []byte{}
	if n > 0 {
		state = unsafe.Slice((*byte)(ptr), n)
	}
	err := sluice.Protect(func() error {
		op, err := current("restore")
		if err != nil {
			return err
		}
		return op.Restore(state)
	})
	abi.Prepare()
	return abi.UnitResult(err)
}

//go:wasmexport cabi_post_sluice:operator/stateful@0.2.0#restore
func wasmPostRestore(unsafe.Pointer) { abi.Reset() }
