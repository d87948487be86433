// Package stateful exports a sluice operator whose state moves to its next
// version when a job swaps versions while it runs (the stateful-transform
// world).
//
// Register the constructor with stateful.Register instead of
// sluice.Register; the operator also implements Snapshot and Restore. The
// host takes a Snapshot from the running instance at a batch boundary and
// hands it to Restore on a fresh instance of the new version, after its
// constructor and before its first batch.
package stateful

import "sluice.dev/sdk"

// Operator is a sluice.Operator with state that survives a hot swap.
type Operator interface {
	sluice.Operator
	// Snapshot returns the state as bytes, in a format the next versions
	// can read.
	Snapshot() ([]byte, error)
	// Restore takes over state, a Snapshot of the previous version. Return
	// an error when it cannot be read: the job then keeps that version.
	// state is only valid during the call: copy what you keep.
	Restore(state []byte) error
}

// Register makes newOp the stateful operator of this component. Call it
// once, from an init function of package main.
func Register[T Operator](newOp sluice.Constructor[T]) {
	sluice.Register(newOp)
}
