;; model-alias: sends every request to the model its configuration names:
;;
;;   [plugins.model-alias]
;;   model = "golek-tiny"
;;
;; The hook's input is {"path":..,"model":..,"tenant":..,"body":{...}} with the body last, so
;; the answer is {"body":<the body with ,"model":"<name>" added at its end>}: of two equal
;; keys in JSON the last one wins.
(module
  (memory (export "memory") 1)
  (global $heap_base i32 (i32.const 8192))
  ;; The configured model name: its bytes at 2048, its length here.
  (global $name_len (mut i32) (i32.const 0))
  (data (i32.const 16) "{\"name\":\"model-alias\",\"version\":\"1.0.0\",\"api\":1,\"hooks\":[\"on_request\"],\"config_schema\":{\"type\":\"object\",\"properties\":{\"model\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":200}},\"required\":[\"model\"],\"additionalProperties\":false}}")
  (data (i32.const 1536) "{\"model\":\"")
  (data (i32.const 1600) "{\"body\":")
  (data (i32.const 1664) ",\"model\":\"")
  (data (i32.const 1728) "\"body\":")
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
  (func (export "manifest") (result i64)
    (i64.or (i64.shl (i64.const 16) (i64.const 32)) (i64.const 226)))

  ;; Whether the n bytes at a equal the n bytes at b.
  (func $same (param $a i32) (param $b i32) (param $n i32) (result i32)
    (block $differ
      (loop $next
        (if (i32.eqz (local.get $n)) (then (return (i32.const 1))))
        (br_if $differ (i32.ne (i32.load8_u (local.get $a)) (i32.load8_u (local.get $b))))
        (local.set $a (i32.add (local.get $a) (i32.const 1)))
        (local.set $b (i32.add (local.get $b) (i32.const 1)))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $next)))
    (i32.const 0))

  ;; init: the configuration is exactly {"model":"<name>"} (the host writes compact JSON).
  (func (export "init") (param $ptr i32) (param $len i32) (result i32)
    (local $n i32)
    (if (i32.lt_u (local.get $len) (i32.const 13)) (then (return (i32.const 1))))
    (if (i32.eqz (call $same (local.get $ptr) (i32.const 1536) (i32.const 10)))
      (then (return (i32.const 1))))
    ;; The name: between the 10-byte prefix and the closing "} (2 bytes).
    (local.set $n (i32.sub (local.get $len) (i32.const 12)))
    (if (i32.gt_u (local.get $n) (i32.const 200)) (then (return (i32.const 1))))
    (memory.copy (i32.const 2048) (i32.add (local.get $ptr) (i32.const 10)) (local.get $n))
    (global.set $name_len (local.get $n))
    (i32.const 0))

  (func (export "on_request") (param $ptr i32) (param $len i32) (result i64)
    (local $i i32) (local $start i32) (local $body_len i32) (local $out i32) (local $at i32)
    ;; The first "body": is the field (quotes inside strings are escaped).
    (local.set $i (local.get $ptr))
    (block $found
      (loop $scan
        (if (i32.gt_u (i32.add (local.get $i) (i32.const 7)) (i32.add (local.get $ptr) (local.get $len)))
          (then (return (i64.const 0))))
        (br_if $found (call $same (local.get $i) (i32.const 1728) (i32.const 7)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $scan)))
    ;; The body without its closing brace: from after "body": to before the last two bytes.
    (local.set $start (i32.add (local.get $i) (i32.const 7)))
    (local.set $body_len
      (i32.sub (i32.sub (i32.add (local.get $ptr) (local.get $len)) (i32.const 2)) (local.get $start)))
    ;; An empty body takes no comma: leave it alone.
    (if (i32.le_u (local.get $body_len) (i32.const 1)) (then (return (i64.const 0))))
    (local.set $out (i32.add (local.get $ptr) (local.get $len)))
    (local.set $at (local.get $out))
    (memory.copy (local.get $at) (i32.const 1600) (i32.const 8))
    (local.set $at (i32.add (local.get $at) (i32.const 8)))
    (memory.copy (local.get $at) (local.get $start) (local.get $body_len))
    (local.set $at (i32.add (local.get $at) (local.get $body_len)))
    (memory.copy (local.get $at) (i32.const 1664) (i32.const 10))
    (local.set $at (i32.add (local.get $at) (i32.const 10)))
    (memory.copy (local.get $at) (i32.const 2048) (global.get $name_len))
    (local.set $at (i32.add (local.get $at) (global.get $name_len)))
    ;; "}} closes the name, the body and the answer.
    (i32.store8 (local.get $at) (i32.const 34))
    (i32.store8 (i32.add (local.get $at) (i32.const 1)) (i32.const 125))
    (i32.store8 (i32.add (local.get $at) (i32.const 2)) (i32.const 125))
    (local.set $at (i32.add (local.get $at) (i32.const 3)))
    (i64.or
      (i64.shl (i64.extend_i32_u (local.get $out)) (i64.const 32))
      (i64.extend_i32_u (i32.sub (local.get $at) (local.get $out))))))
