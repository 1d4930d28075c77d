;; cache.wat - response phase: give 200 responses
;;   Cache-Control: public, max-age=<config ttl>
;; (ttl in seconds, digits only; default 60).  A response that already has a
;; Cache-Control header keeps it: the application knows better.
;;
;;   [[modules]]
;;   name = "cache"
;;   wasm = "examples/payloads/cache.wasm"
;;   phase = "response"
;;   routes = ["/assets/.*"]
;;   config = { ttl = "3600" }
(module
  (import "mothership" "get_config"
    (func $get_config (param i32 i32 i32 i32) (result i32)))
  (import "mothership" "get_header"
    (func $get_header (param i32 i32 i32 i32) (result i32)))
  (import "mothership" "get_status" (func $get_status (result i32)))
  (import "mothership" "set_header"
    (func $set_header (param i32 i32 i32 i32) (result i32)))

  (memory (export "memory") 1)

  (data (i32.const 0) "ttl")                  ;; 3
  (data (i32.const 16) "Cache-Control")       ;; 13
  (data (i32.const 512) "public, max-age=")   ;; 16; the ttl is written right after it

  (func (export "on_response") (result i32)
    (local $n i32) (local $i i32) (local $c i32)
    (if (i32.ne (call $get_status) (i32.const 200))
      (then (return (i32.const 0))))
    ;; already has Cache-Control? (a zero-length probe: -1 when absent)
    (if (i32.ge_s (call $get_header (i32.const 16) (i32.const 13) (i32.const 0) (i32.const 0))
                  (i32.const 0))
      (then (return (i32.const 0))))
    (local.set $n (call $get_config (i32.const 0) (i32.const 3) (i32.const 528) (i32.const 20)))
    (block $bad
      (br_if $bad (i32.or (i32.lt_s (local.get $n) (i32.const 1))
                          (i32.gt_s (local.get $n) (i32.const 20))))
      (loop $digits
        (local.set $c (i32.load8_u offset=528 (local.get $i)))
        (br_if $bad (i32.or (i32.lt_u (local.get $c) (i32.const 48))
                            (i32.gt_u (local.get $c) (i32.const 57))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $digits (i32.lt_u (local.get $i) (local.get $n))))
      (drop (call $set_header (i32.const 16) (i32.const 13)
                              (i32.const 512) (i32.add (i32.const 16) (local.get $n))))
      (return (i32.const 0)))
    ;; no or bad ttl: 60
    (i32.store16 (i32.const 528) (i32.const 0x3036))   ;; "60"
    (drop (call $set_header (i32.const 16) (i32.const 13) (i32.const 512) (i32.const 18)))
    (i32.const 0))
)
