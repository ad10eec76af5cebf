;; add-header: adds `x-golek-plugin-example: 1` to every response.
;; The smallest plugin there is: a manifest, an allocator, one hook with a fixed answer.
(module
  (memory (export "memory") 1)
  (global $heap_base i32 (i32.const 4096))
  (data (i32.const 16) "{\"name\":\"add-header\",\"version\":\"1.0.0\",\"api\":1,\"hooks\":[\"on_response\"]}")
  (data (i32.const 1024) "{\"headers\":{\"x-golek-plugin-example\":\"1\"}}")
  ;; The heap starts over with each call: the host calls alloc once, right before a hook.
  (func (export "alloc") (param $len i32) (result i32)
    (local $end i32)
    (local.set $end (i32.add (global.get $heap_base) (i32.mul (local.get $len) (i32.const 2))))
    (local.set $end (i32.add (local.get $end) (i32.const 4096)))
    (block $done
      (loop $grow
        (br_if $done (i32.le_u (local.get $end) (i32.mul (memory.size) (i32.const 65536))))
        (br_if $done (i32.eq (memory.grow (i32.const 1)) (i32.const -1)))
        (br $grow)))
    (global.get $heap_base))
  ;; (ptr << 32) | len of the manifest JSON.
  (func (export "manifest") (result i64)
    (i64.or (i64.shl (i64.const 16) (i64.const 32)) (i64.const 71)))
  (func (export "on_response") (param $ptr i32) (param $len i32) (result i64)
    (i64.or (i64.shl (i64.const 1024) (i64.const 32)) (i64.const 42))))
