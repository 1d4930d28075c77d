;; hostile.wat - a deliberately misbehaving payload, to prove that a payload
;; costs one request an error and never Mothership's stability.  What it does
;; depends on the request path (both on_request and on_response):
;;   /hostile/loop  loops forever          -> fuel or deadline exhaustion
;;   /hostile/grow  grows its memory until memory.grow is refused (the page
;;                  cap), then traps       -> "memory" error
;;   /hostile/deep  recurses without end   -> call stack exhausted
;;   /hostile/trap  executes unreachable   -> trap
;;   /hostile/oob   passes the host a pointer outside its memory -> ABI error
;;   anything else  continues normally
;; Use it with on_error = "closed" (500) or "open" (skipped).
(module
  (import "mothership" "get" (func $get (param i32 i32 i32) (result i32)))

  (memory (export "memory") 1)

  (data (i32.const 0) "/hostile/loop")   ;; 13
  (data (i32.const 16) "/hostile/grow")  ;; 13
  (data (i32.const 32) "/hostile/deep")  ;; 13
  (data (i32.const 48) "/hostile/trap")  ;; 13
  (data (i32.const 64) "/hostile/oob")   ;; 12

  (global $PATH i32 (i32.const 1024))   ;; path buffer, 1 KiB
  (global $depth (mut i32) (i32.const 0))

  ;; does the path (len bytes at $PATH) start with the n bytes at s?
  (func $starts (param $len i32) (param $s i32) (param $n i32) (result i32)
    (local $i i32)
    (if (i32.lt_u (local.get $len) (local.get $n)) (then (return (i32.const 0))))
    (block $out
      (loop $cmp
        (br_if $out (i32.ge_u (local.get $i) (local.get $n)))
        (if (i32.ne (i32.load8_u (i32.add (global.get $PATH) (local.get $i)))
                    (i32.load8_u (i32.add (local.get $s) (local.get $i))))
          (then (return (i32.const 0))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $cmp)))
    (i32.const 1))

  (func $deep (param $x i32) (result i32)
    (global.set $depth (i32.add (global.get $depth) (i32.const 1)))
    (i32.add (call $deep (i32.add (local.get $x) (i32.const 1))) (i32.const 1)))

  (func $act (result i32)
    (local $len i32)
    (local.set $len (call $get (i32.const 1) (global.get $PATH) (i32.const 1024)))
    (if (i32.gt_s (local.get $len) (i32.const 1024)) (then (return (i32.const 0))))
    (if (call $starts (local.get $len) (i32.const 0) (i32.const 13))
      (then (loop $forever (br $forever))))
    (if (call $starts (local.get $len) (i32.const 16) (i32.const 13))
      (then
        (block $refused
          (loop $more
            (br_if $refused (i32.eq (memory.grow (i32.const 1)) (i32.const -1)))
            (br $more)))
        ;; memory.grow said no: give up the hard way
        (unreachable)))
    (if (call $starts (local.get $len) (i32.const 32) (i32.const 13))
      (then (return (call $deep (i32.const 0)))))
    (if (call $starts (local.get $len) (i32.const 48) (i32.const 13))
      (then (unreachable)))
    (if (call $starts (local.get $len) (i32.const 64) (i32.const 12))
      (then (return (call $get (i32.const 1) (i32.const 0xfffffff0) (i32.const 64)))))
    (i32.const 0))

  (func (export "on_request") (result i32) (call $act))
  (func (export "on_response") (result i32) (call $act))
)
