;; auth.wat - request phase: let a request through only with
;;   Authorization: Bearer <token>
;; where <token> is the module's config `token`; otherwise answer
;; 401 with WWW-Authenticate.  No token configured: every request is refused.
;;
;;   [[modules]]
;;   name = "auth"
;;   wasm = "examples/payloads/auth.wasm"   # built from this file by meson
;;   routes = ["/api/.*"]
;;   config = { token = "s3cret" }
(module
  (import "mothership" "get_config"
    (func $get_config (param i32 i32 i32 i32) (result i32)))
  (import "mothership" "get_header"
    (func $get_header (param i32 i32 i32 i32) (result i32)))
  (import "mothership" "block"
    (func $block (param i32 i32 i32) (result i32)))
  (import "mothership" "block_header"
    (func $block_header (param i32 i32 i32 i32) (result i32)))

  (memory (export "memory") 1)

  ;; constants
  (data (i32.const 0) "token")                          ;; 5
  (data (i32.const 16) "authorization")                 ;; 13
  (data (i32.const 32) "Bearer ")                       ;; 7
  (data (i32.const 48) "WWW-Authenticate")              ;; 16
  (data (i32.const 64) "Bearer realm=\"mothership\"")   ;; 25
  (data (i32.const 96) "Content-Type")                  ;; 12
  (data (i32.const 112) "text/plain; charset=utf-8")    ;; 25
  (data (i32.const 144) "Unauthorized\n")               ;; 13

  ;; buffers
  (global $TOKEN i32 (i32.const 1024))   ;; 1 KiB: config token
  (global $HDR i32 (i32.const 2048))     ;; 4 KiB: Authorization header

  (func $deny (result i32)
    (drop (call $block_header (i32.const 48) (i32.const 16) (i32.const 64) (i32.const 25)))
    (drop (call $block_header (i32.const 96) (i32.const 12) (i32.const 112) (i32.const 25)))
    (drop (call $block (i32.const 401) (i32.const 144) (i32.const 13)))
    (i32.const 1))

  (func (export "on_request") (result i32)
    (local $tlen i32) (local $hlen i32) (local $i i32) (local $diff i32)
    (local.set $tlen (call $get_config (i32.const 0) (i32.const 5) (global.get $TOKEN) (i32.const 1024)))
    (if (i32.or (i32.le_s (local.get $tlen) (i32.const 0))
                (i32.gt_s (local.get $tlen) (i32.const 1024)))
      (then (return (call $deny))))
    (local.set $hlen (call $get_header (i32.const 16) (i32.const 13) (global.get $HDR) (i32.const 4096)))
    (if (i32.ne (local.get $hlen) (i32.add (local.get $tlen) (i32.const 7)))
      (then (return (call $deny))))
    ;; scheme: "Bearer " case-insensitively (letters | 0x20; space stays space)
    (local.set $i (i32.const 0))
    (block $done
      (loop $scheme
        (br_if $done (i32.ge_u (local.get $i) (i32.const 7)))
        (if (i32.ne (i32.or (i32.load8_u (i32.add (global.get $HDR) (local.get $i))) (i32.const 0x20))
                    (i32.or (i32.load8_u offset=32 (local.get $i)) (i32.const 0x20)))
          (then (return (call $deny))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $scheme)))
    ;; token: compare every byte (no early exit)
    (local.set $i (i32.const 0))
    (block $done2
      (loop $tok
        (br_if $done2 (i32.ge_u (local.get $i) (local.get $tlen)))
        (local.set $diff
          (i32.or (local.get $diff)
            (i32.xor (i32.load8_u offset=7 (i32.add (global.get $HDR) (local.get $i)))
                     (i32.load8_u (i32.add (global.get $TOKEN) (local.get $i))))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $tok)))
    (if (local.get $diff) (then (return (call $deny))))
    (i32.const 0))
)
