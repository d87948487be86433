;; A wasi_snapshot_preview1 adapter for Go (GOOS=wasip1) Sluice operators.
;;
;; Why not the stock reactor adapter: it takes two 64 KiB pages of the main
;; module's memory with memory.grow (its shadow stack, from a start function
;; that runs before Go's _initialize, and its State, at the first WASI call).
;; The Go runtime's sbrk keeps its own idea of the memory's end and hands the
;; same pages out as heap: the adapter and the Go heap overwrite each other.
;; This adapter allocates nothing: no stack, no state pages, no realloc. Its
;; only scratch memory is 64 bytes at 0x1000, inside the range the Go linker
;; leaves unused on wasip1 (data starts at 0x3000: a 4 KiB zero page plus
;; 8 KiB kept for js/wasm's wasm_exec.js).
;;
;; What Go's runtime, syscall and os packages import, and what they get:
;; args and environment: none; clocks: wasi:clocks (with the adapter's
;; "paused" switch, for clock reads from inside cabi_realloc); random:
;; wasi:random; fd_write to 1/2: the component's stdout/stderr; no files or
;; preopens (EBADF); poll_oneoff: sleeps on the monotonic clock.
(module
  (import "env" "memory" (memory 0))
  (import "wasi:clocks/wall-clock@0.2.12" "now" (func $wall_now (param i32)))
  (import "wasi:clocks/monotonic-clock@0.2.12" "now" (func $mono_now (result i64)))
  (import "wasi:clocks/monotonic-clock@0.2.12" "subscribe-duration" (func $subscribe_duration (param i64) (result i32)))
  (import "wasi:io/poll@0.2.12" "[method]pollable.block" (func $block (param i32)))
  (import "wasi:io/poll@0.2.12" "[resource-drop]pollable" (func $drop_pollable (param i32)))
  (import "wasi:io/error@0.2.12" "[resource-drop]error" (func $drop_error (param i32)))
  (import "wasi:io/streams@0.2.12" "[method]output-stream.blocking-write-and-flush" (func $write (param i32 i32 i32 i32)))
  (import "wasi:random/random@0.2.12" "get-random-u64" (func $random_u64 (result i64)))
  (import "wasi:cli/stdout@0.2.12" "get-stdout" (func $get_stdout (result i32)))
  (import "wasi:cli/stderr@0.2.12" "get-stderr" (func $get_stderr (result i32)))
  (import "wasi:cli/exit@0.2.12" "exit" (func $exit (param i32)))

  (global $paused (mut i32) (i32.const 0))
  (global $mono_last (mut i64) (i64.const 0))
  (global $wall_last (mut i64) (i64.const 0))
  (global $stdout (mut i32) (i32.const 0)) ;; 0: not fetched yet
  (global $stderr (mut i32) (i32.const 0))

  (func $wall_ns (result i64)
    (if (i32.eqz (global.get $paused))
      (then
        (call $wall_now (i32.const 0x1000))
        (global.set $wall_last
          (i64.add
            (i64.mul (i64.load (i32.const 0x1000)) (i64.const 1000000000))
            (i64.extend_i32_u (i32.load (i32.const 0x1008)))))))
    (global.get $wall_last))

  (func $mono_ns (result i64)
    (if (i32.eqz (global.get $paused))
      (then (global.set $mono_last (call $mono_now))))
    (global.get $mono_last))

  (func (export "adapter_monotonic_clock_set_paused") (param $p i32)
    (global.set $paused (local.get $p)))

  (func (export "clock_time_get") (param $id i32) (param $precision i64) (param $ret i32) (result i32)
    (if (i32.eqz (local.get $id))
      (then (i64.store (local.get $ret) (call $wall_ns)))
      (else (i64.store (local.get $ret) (call $mono_ns))))
    (i32.const 0))

  (func (export "clock_res_get") (param $id i32) (param $ret i32) (result i32)
    (i64.store (local.get $ret) (i64.const 1))
    (i32.const 0))

  (func (export "random_get") (param $buf i32) (param $len i32) (result i32)
    (local $v i64)
    (block $done
      (loop $words
        (br_if $done (i32.lt_u (local.get $len) (i32.const 8)))
        (i64.store (local.get $buf) (call $random_u64))
        (local.set $buf (i32.add (local.get $buf) (i32.const 8)))
        (local.set $len (i32.sub (local.get $len) (i32.const 8)))
        (br $words)))
    (if (local.get $len)
      (then
        (local.set $v (call $random_u64))
        (block $end
          (loop $bytes
            (br_if $end (i32.eqz (local.get $len)))
            (i64.store8 (local.get $buf) (local.get $v))
            (local.set $v (i64.shr_u (local.get $v) (i64.const 8)))
            (local.set $buf (i32.add (local.get $buf) (i32.const 1)))
            (local.set $len (i32.sub (local.get $len) (i32.const 1)))
            (br $bytes)))))
    (i32.const 0))

  (func $no_list (param $count i32) (param $size i32) (result i32)
    (i32.store (local.get $count) (i32.const 0))
    (i32.store (local.get $size) (i32.const 0))
    (i32.const 0))
  (func (export "args_sizes_get") (param i32 i32) (result i32)
    (call $no_list (local.get 0) (local.get 1)))
  (func (export "environ_sizes_get") (param i32 i32) (result i32)
    (call $no_list (local.get 0) (local.get 1)))
  (func (export "args_get") (param i32 i32) (result i32) (i32.const 0))
  (func (export "environ_get") (param i32 i32) (result i32) (i32.const 0))

  ;; fd_write to stdout (1) and stderr (2), at most 4096 bytes per call as
  ;; blocking-write-and-flush requires. Result area: 12 bytes at 0x1010.
  (func (export "fd_write") (param $fd i32) (param $iovs i32) (param $n i32) (param $written i32) (result i32)
    (local $h i32) (local $p i32) (local $len i32) (local $chunk i32) (local $total i32)
    (if (i32.eq (local.get $fd) (i32.const 1))
      (then
        (if (i32.eqz (global.get $stdout)) (then (global.set $stdout (call $get_stdout))))
        (local.set $h (global.get $stdout)))
      (else
        (if (i32.eq (local.get $fd) (i32.const 2))
          (then
            (if (i32.eqz (global.get $stderr)) (then (global.set $stderr (call $get_stderr))))
            (local.set $h (global.get $stderr)))
          (else (return (i32.const 8)))))) ;; EBADF
    (block $iovs_done
      (loop $each_iov
        (br_if $iovs_done (i32.eqz (local.get $n)))
        (local.set $p (i32.load (local.get $iovs)))
        (local.set $len (i32.load offset=4 (local.get $iovs)))
        (local.set $total (i32.add (local.get $total) (local.get $len)))
        (block $iov_done
          (loop $chunks
            (br_if $iov_done (i32.eqz (local.get $len)))
            (local.set $chunk
              (select (local.get $len) (i32.const 4096) (i32.lt_u (local.get $len) (i32.const 4096))))
            (call $write (local.get $h) (local.get $p) (local.get $chunk) (i32.const 0x1010))
            (if (i32.load8_u (i32.const 0x1010))
              (then
                (if (i32.eqz (i32.load8_u (i32.const 0x1014)))
                  (then (call $drop_error (i32.load (i32.const 0x1018)))))
                (return (i32.const 29)))) ;; EIO
            (local.set $p (i32.add (local.get $p) (local.get $chunk)))
            (local.set $len (i32.sub (local.get $len) (local.get $chunk)))
            (br $chunks)))
        (local.set $iovs (i32.add (local.get $iovs) (i32.const 8)))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $each_iov)))
    (i32.store (local.get $written) (local.get $total))
    (i32.const 0))

  ;; stdin/stdout/stderr are character devices; there are no other files.
  (func (export "fd_fdstat_get") (param $fd i32) (param $buf i32) (result i32)
    (if (i32.gt_u (local.get $fd) (i32.const 2)) (then (return (i32.const 8))))
    (i64.store (local.get $buf) (i64.const 2)) ;; filetype character_device, no flags
    (i64.store offset=8 (local.get $buf) (i64.const -1))
    (i64.store offset=16 (local.get $buf) (i64.const -1))
    (i32.const 0))
  (func (export "fd_fdstat_set_flags") (param $fd i32) (param $flags i32) (result i32)
    (select (i32.const 8) (i32.const 0) (i32.gt_u (local.get $fd) (i32.const 2))))
  (func (export "fd_prestat_get") (param i32 i32) (result i32) (i32.const 8))
  (func (export "fd_prestat_dir_name") (param i32 i32 i32) (result i32) (i32.const 8))
  (func (export "fd_close") (param i32) (result i32) (i32.const 0))
  (func (export "sched_yield") (result i32) (i32.const 0))

  (func (export "proc_exit") (param $code i32)
    (call $exit (i32.ne (local.get $code) (i32.const 0)))
    (unreachable))

  ;; poll_oneoff: sleeps until the earliest clock subscription is due (the Go
  ;; scheduler's timers); fd subscriptions are reported ready at once.
  ;; subscription: 48 bytes (userdata 0, tag 8, clock id 16, timeout 24,
  ;; flags 40); event: 32 bytes (userdata 0, error 8, type 10).
  (func (export "poll_oneoff") (param $in i32) (param $out i32) (param $nsubs i32) (param $nevents i32) (result i32)
    (local $i i32) (local $s i32) (local $t i64) (local $min i64) (local $best i32) (local $fds i32) (local $ev i32) (local $tag i32) (local $p i32)
    (if (i32.eqz (local.get $nsubs)) (then (return (i32.const 28)))) ;; EINVAL
    (local.set $min (i64.const -1))
    (local.set $best (i32.const -1))
    (block $scanned
      (loop $scan
        (br_if $scanned (i32.ge_u (local.get $i) (local.get $nsubs)))
        (local.set $s (i32.add (local.get $in) (i32.mul (local.get $i) (i32.const 48))))
        (if (i32.eqz (i32.load8_u offset=8 (local.get $s)))
          (then
            (local.set $t (i64.load offset=24 (local.get $s)))
            (if (i32.and (i32.load16_u offset=40 (local.get $s)) (i32.const 1)) ;; absolute time
              (then
                (local.set $t
                  (i64.sub (local.get $t)
                    (if (result i64) (i32.eqz (i32.load offset=16 (local.get $s)))
                      (then (call $wall_ns)) (else (call $mono_ns)))))
                (if (i64.lt_s (local.get $t) (i64.const 0)) (then (local.set $t (i64.const 0))))))
            (if (i64.lt_u (local.get $t) (local.get $min))
              (then (local.set $min (local.get $t)) (local.set $best (local.get $i)))))
          (else (local.set $fds (i32.const 1))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $scan)))
    (if (i32.and (i32.eqz (local.get $fds)) (i64.gt_u (local.get $min) (i64.const 0)))
      (then
        (local.set $p (call $subscribe_duration (local.get $min)))
        (call $block (local.get $p))
        (call $drop_pollable (local.get $p))))
    (local.set $ev (local.get $out))
    (local.set $i (i32.const 0))
    (local.set $nsubs (local.get $nsubs))
    (block $written
      (loop $emit
        (br_if $written (i32.ge_u (local.get $i) (local.get $nsubs)))
        (local.set $s (i32.add (local.get $in) (i32.mul (local.get $i) (i32.const 48))))
        (local.set $tag (i32.load8_u offset=8 (local.get $s)))
        (if (i32.or (i32.ne (local.get $tag) (i32.const 0))
                    (i32.and (i32.eqz (local.get $fds)) (i32.eq (local.get $i) (local.get $best))))
          (then
            (i64.store (local.get $ev) (i64.load (local.get $s)))
            (i64.store offset=8 (local.get $ev) (i64.extend_i32_u (i32.shl (local.get $tag) (i32.const 16))))
            (i64.store offset=16 (local.get $ev) (i64.const 0))
            (i64.store offset=24 (local.get $ev) (i64.const 0))
            (local.set $ev (i32.add (local.get $ev) (i32.const 32)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $emit)))
    (i32.store (local.get $nevents)
      (i32.shr_u (i32.sub (local.get $ev) (local.get $out)) (i32.const 5)))
    (i32.const 0))
)
