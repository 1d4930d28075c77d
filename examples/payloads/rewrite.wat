;; rewrite.wat - request phase: path rewriting and request-header edits.
;;   /old/<rest>      -> /new/<rest>  (the query is kept)
;;   X-Payload: rewrite       set (replacing any the client sent)
;;   Via-Payload: rewrite     added (after any the client sent)
;;   X-Debug                  removed
;;   X-Seen: <X-Payload>      set when the request already had X-Payload
;;                            (from the client, or from an earlier module)
;;
;;   [[modules]]
;;   name = "rewrite"
;;   wasm = "examples/payloads/rewrite.wasm"
(module
  (import "mothership" "get" (func $get (param i32 i32 i32) (result i32)))
  (import "mothership" "get_header"
    (func $get_header (param i32 i32 i32 i32) (result i32)))
  (import "mothership" "set_header"
    (func $set_header (param i32 i32 i32 i32) (result i32)))
  (import "mothership" "add_header"
    (func $add_header (param i32 i32 i32 i32) (result i32)))
  (import "mothership" "remove_header"
    (func $remove_header (param i32 i32) (result i32)))
  (import "mothership" "set_path" (func $set_path (param i32 i32) (result i32)))

  (memory (export "memory") 1)

  (data (i32.const 0) "X-Payload")     ;; 9
  (data (i32.const 16) "rewrite")      ;; 7
  (data (i32.const 32) "Via-Payload")  ;; 11
  (data (i32.const 48) "X-Debug")      ;; 7
  (data (i32.const 64) "X-Seen")       ;; 6

  (global $PATH i32 (i32.const 4096))   ;; 8 KiB path buffer
  (global $VAL i32 (i32.const 16384))   ;; 8 KiB header value buffer

  (func (export "on_request") (result i32)
    (local $len i32) (local $n i32)
    ;; X-Seen first: what earlier modules (or the client) put in X-Payload
    (local.set $n (call $get_header (i32.const 0) (i32.const 9) (global.get $VAL) (i32.const 8192)))
    (if (i32.and (i32.ge_s (local.get $n) (i32.const 0)) (i32.le_s (local.get $n) (i32.const 8192)))
      (then (drop (call $set_header (i32.const 64) (i32.const 6) (global.get $VAL) (local.get $n)))))
    (drop (call $set_header (i32.const 0) (i32.const 9) (i32.const 16) (i32.const 7)))
    (drop (call $add_header (i32.const 32) (i32.const 11) (i32.const 16) (i32.const 7)))
    (drop (call $remove_header (i32.const 48) (i32.const 7)))
    ;; "/old/" -> "/new/": overwrite the first four bytes in place
    (local.set $len (call $get (i32.const 1) (global.get $PATH) (i32.const 8192)))
    (if (i32.and (i32.ge_s (local.get $len) (i32.const 5))
                 (i32.le_s (local.get $len) (i32.const 8192)))
      (then
        (if (i32.and (i32.eq (i32.load (global.get $PATH)) (i32.const 0x646c6f2f))   ;; "/old"
                     (i32.eq (i32.load8_u offset=4 (global.get $PATH)) (i32.const 0x2f)))
          (then
            (i32.store (global.get $PATH) (i32.const 0x77656e2f))                   ;; "/new"
            (drop (call $set_path (global.get $PATH) (local.get $len)))))))
    (i32.const 0))
)
