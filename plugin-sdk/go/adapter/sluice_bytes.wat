;; sluice_bytes: byte helpers for Go (GOOS=wasip1) Sluice operators, with
;; the simd128 instructions Go's wasm backend does not emit.
;;
;; Linked by wit-component as an adapter named `sluice_bytes` (the host's Go
;; build passes every .wasm of this directory as an adapter named after its
;; file): the main module's `//go:wasmimport sluice_bytes upper` imports are
;; satisfied by this module's exports, and its `env` `memory` import is the
;; main module's memory, as for the WASI adapter. No state, no stack, no
;; imports besides the memory: callable from anywhere, cabi_realloc included.
;;
;; Rebuild (only if this file changes), from this directory:
;;   wasm-tools parse sluice_bytes.wat -o /tmp/sluice_bytes.core.wasm
;;   wasm-tools component embed wit --world bytes /tmp/sluice_bytes.core.wasm -o sluice_bytes.wasm
(module
  (import "env" "memory" (memory 0))

  ;; Flips the case bit (0x20) of every byte c of [p, p+n) with
  ;; c - $from < 26 (unsigned): upper-cases ($from = 'a') or lower-cases
  ;; ($from = 'A') the ASCII letters in place; all other bytes (UTF-8
  ;; sequences included) are unchanged. Converting a byte twice changes
  ;; nothing more, so the last 16 bytes are done as one vector that may
  ;; overlap the previous one.
  (func $convert (param $p i32) (param $n i32) (param $from i32)
    (local $end i32) (local $c i32)
    (local $vfrom v128) (local $v26 v128) (local $bit v128) (local $v v128)
    (if (i32.ge_u (local.get $n) (i32.const 16))
      (then
        (local.set $vfrom (i8x16.splat (local.get $from)))
        (local.set $v26 (i8x16.splat (i32.const 26)))
        (local.set $bit (i8x16.splat (i32.const 0x20)))
        (local.set $end (i32.add (local.get $p) (local.get $n)))
        ;; 64 bytes per step.
        (block $done64
          (loop $by64
            (br_if $done64 (i32.gt_u (i32.add (local.get $p) (i32.const 64)) (local.get $end)))
            (local.set $v (v128.load offset=0 (local.get $p)))
            (v128.store offset=0 (local.get $p)
              (v128.xor (local.get $v)
                (v128.and (local.get $bit)
                  (i8x16.lt_u (i8x16.sub (local.get $v) (local.get $vfrom)) (local.get $v26)))))
            (local.set $v (v128.load offset=16 (local.get $p)))
            (v128.store offset=16 (local.get $p)
              (v128.xor (local.get $v)
                (v128.and (local.get $bit)
                  (i8x16.lt_u (i8x16.sub (local.get $v) (local.get $vfrom)) (local.get $v26)))))
            (local.set $v (v128.load offset=32 (local.get $p)))
            (v128.store offset=32 (local.get $p)
              (v128.xor (local.get $v)
                (v128.and (local.get $bit)
                  (i8x16.lt_u (i8x16.sub (local.get $v) (local.get $vfrom)) (local.get $v26)))))
            (local.set $v (v128.load offset=48 (local.get $p)))
            (v128.store offset=48 (local.get $p)
              (v128.xor (local.get $v)
                (v128.and (local.get $bit)
                  (i8x16.lt_u (i8x16.sub (local.get $v) (local.get $vfrom)) (local.get $v26)))))
            (local.set $p (i32.add (local.get $p) (i32.const 64)))
            (br $by64)))
        ;; 16 bytes per step.
        (block $done16
          (loop $by16
            (br_if $done16 (i32.gt_u (i32.add (local.get $p) (i32.const 16)) (local.get $end)))
            (local.set $v (v128.load (local.get $p)))
            (v128.store (local.get $p)
              (v128.xor (local.get $v)
                (v128.and (local.get $bit)
                  (i8x16.lt_u (i8x16.sub (local.get $v) (local.get $vfrom)) (local.get $v26)))))
            (local.set $p (i32.add (local.get $p) (i32.const 16)))
            (br $by16)))
        ;; The last 0..15 bytes: the final 16 bytes, overlapping.
        (if (i32.lt_u (local.get $p) (local.get $end))
          (then
            (local.set $p (i32.sub (local.get $end) (i32.const 16)))
            (local.set $v (v128.load (local.get $p)))
            (v128.store (local.get $p)
              (v128.xor (local.get $v)
                (v128.and (local.get $bit)
                  (i8x16.lt_u (i8x16.sub (local.get $v) (local.get $vfrom)) (local.get $v26)))))))
        (return)))
    ;; Shorter than 16 bytes: one byte at a time.
    (local.set $end (i32.add (local.get $p) (local.get $n)))
    (block $done
      (loop $bytes
        (br_if $done (i32.ge_u (local.get $p) (local.get $end)))
        (local.set $c (i32.load8_u (local.get $p)))
        (if (i32.lt_u (i32.sub (local.get $c) (local.get $from)) (i32.const 26))
          (then (i32.store8 (local.get $p) (i32.xor (local.get $c) (i32.const 0x20)))))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $bytes))))

  ;; upper(ptr, len): upper-cases the ASCII letters of [ptr, ptr+len).
  (func (export "upper") (param $p i32) (param $n i32)
    (call $convert (local.get $p) (local.get $n) (i32.const 0x61)))

  ;; lower(ptr, len): lower-cases the ASCII letters of [ptr, ptr+len).
  (func (export "lower") (param $p i32) (param $n i32)
    (call $convert (local.get $p) (local.get $n) (i32.const 0x41)))
)
