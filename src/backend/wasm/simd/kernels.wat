;; SIMD training kernels for the tfjs wasm backend (dptrain issue #4).
;;
;; The module imports the wasm backend's own linear memory, so every pointer
;; below is a byte offset into the tensors the backend already holds: no
;; copies in or out. All tensors are float32, NHWC, densely packed.
;; Rebuild kernels_wasm.ts with `deno run -A src/backend/wasm/simd/build.ts`.
;;
;; Sums over many rows are formed per row (or per 64-row chunk) in a scratch
;; accumulator and only then added to the result, so float32 rounding grows
;; with the row length plus the row count instead of their product.
(module
  (import "env" "memory" (memory 1))

  ;; out[0 .. n) = 0, n in floats.
  (func $zero (param $p i32) (param $n i32)
    (memory.fill (local.get $p) (i32.const 0) (i32.shl (local.get $n) (i32.const 2))))

  ;; dst[0 .. n) += src[0 .. n), n in floats.
  (func $accumulate (param $dst i32) (param $src i32) (param $n i32)
    (local $k i32) (local $end i32) (local $end4 i32)
    (local.set $end (i32.shl (local.get $n) (i32.const 2)))
    (local.set $end4 (i32.and (local.get $end) (i32.const -16)))
    (block $done4 (loop $l4
      (br_if $done4 (i32.ge_u (local.get $k) (local.get $end4)))
      (v128.store align=4 (i32.add (local.get $dst) (local.get $k))
        (f32x4.add
          (v128.load align=4 (i32.add (local.get $dst) (local.get $k)))
          (v128.load align=4 (i32.add (local.get $src) (local.get $k)))))
      (local.set $k (i32.add (local.get $k) (i32.const 16)))
      (br $l4)))
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $k) (local.get $end)))
      (f32.store (i32.add (local.get $dst) (local.get $k))
        (f32.add
          (f32.load (i32.add (local.get $dst) (local.get $k)))
          (f32.load (i32.add (local.get $src) (local.get $k)))))
      (local.set $k (i32.add (local.get $k) (i32.const 4)))
      (br $l))))

  ;; acc[0 .. c) += a[0 .. c) * b[0 .. c), c in floats.
  (func $fma (param $acc i32) (param $a i32) (param $b i32) (param $c i32)
    (local $k i32) (local $end i32) (local $end4 i32)
    (local.set $end (i32.shl (local.get $c) (i32.const 2)))
    (local.set $end4 (i32.and (local.get $end) (i32.const -16)))
    (block $done4 (loop $l4
      (br_if $done4 (i32.ge_u (local.get $k) (local.get $end4)))
      (v128.store align=4 (i32.add (local.get $acc) (local.get $k))
        (f32x4.add
          (v128.load align=4 (i32.add (local.get $acc) (local.get $k)))
          (f32x4.mul
            (v128.load align=4 (i32.add (local.get $a) (local.get $k)))
            (v128.load align=4 (i32.add (local.get $b) (local.get $k))))))
      (local.set $k (i32.add (local.get $k) (i32.const 16)))
      (br $l4)))
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $k) (local.get $end)))
      (f32.store (i32.add (local.get $acc) (local.get $k))
        (f32.add
          (f32.load (i32.add (local.get $acc) (local.get $k)))
          (f32.mul
            (f32.load (i32.add (local.get $a) (local.get $k)))
            (f32.load (i32.add (local.get $b) (local.get $k))))))
      (local.set $k (i32.add (local.get $k) (i32.const 4)))
      (br $l))))

  ;; acc[0 .. c) += s * b[0 .. c), c in floats.
  (func $axpy (param $acc i32) (param $s f32) (param $b i32) (param $c i32)
    (local $k i32) (local $end i32) (local $end4 i32) (local $sv v128)
    (local.set $sv (f32x4.splat (local.get $s)))
    (local.set $end (i32.shl (local.get $c) (i32.const 2)))
    (local.set $end4 (i32.and (local.get $end) (i32.const -16)))
    (block $done4 (loop $l4
      (br_if $done4 (i32.ge_u (local.get $k) (local.get $end4)))
      (v128.store align=4 (i32.add (local.get $acc) (local.get $k))
        (f32x4.add
          (v128.load align=4 (i32.add (local.get $acc) (local.get $k)))
          (f32x4.mul (local.get $sv)
            (v128.load align=4 (i32.add (local.get $b) (local.get $k))))))
      (local.set $k (i32.add (local.get $k) (i32.const 16)))
      (br $l4)))
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $k) (local.get $end)))
      (f32.store (i32.add (local.get $acc) (local.get $k))
        (f32.add
          (f32.load (i32.add (local.get $acc) (local.get $k)))
          (f32.mul (local.get $s)
            (f32.load (i32.add (local.get $b) (local.get $k))))))
      (local.set $k (i32.add (local.get $k) (i32.const 4)))
      (br $l))))

  ;; Depthwise filter gradient, channel multiplier 1:
  ;;   out[(i*kw + j)*C + c] = sum over n, oh, ow of
  ;;     x[n, oh*sh + i*dh - pt, ow*sw + j*dw - pl, c] * dy[n, oh, ow, c]
  ;; with taps outside x contributing zero. acc: kh*kw*C floats of scratch.
  (func (export "dwFilterGrad")
    (param $x i32) (param $dy i32) (param $out i32) (param $acc i32)
    (param $N i32) (param $H i32) (param $W i32) (param $C i32)
    (param $Ho i32) (param $Wo i32) (param $kh i32) (param $kw i32)
    (param $sh i32) (param $sw i32) (param $dh i32) (param $dw i32)
    (param $pt i32) (param $pl i32)
    (local $n i32) (local $oh i32) (local $ow i32) (local $i i32) (local $j i32)
    (local $ih i32) (local $iw i32) (local $len i32) (local $dyp i32)
    (local $xrow i32) (local $cb i32)
    (local.set $len (i32.mul (i32.mul (local.get $kh) (local.get $kw)) (local.get $C)))
    (local.set $cb (i32.shl (local.get $C) (i32.const 2)))
    (call $zero (local.get $out) (local.get $len))
    (local.set $dyp (local.get $dy))
    (local.set $n (i32.const 0))
    (block $nd (loop $nl
      (br_if $nd (i32.ge_u (local.get $n) (local.get $N)))
      (local.set $oh (i32.const 0))
      (block $hd (loop $hl
        (br_if $hd (i32.ge_u (local.get $oh) (local.get $Ho)))
        (call $zero (local.get $acc) (local.get $len))
        (local.set $ow (i32.const 0))
        (block $wd (loop $wl
          (br_if $wd (i32.ge_u (local.get $ow) (local.get $Wo)))
          (local.set $i (i32.const 0))
          (block $id (loop $il
            (br_if $id (i32.ge_u (local.get $i) (local.get $kh)))
            (local.set $ih (i32.sub
              (i32.add (i32.mul (local.get $oh) (local.get $sh))
                       (i32.mul (local.get $i) (local.get $dh)))
              (local.get $pt)))
            (if (i32.lt_u (local.get $ih) (local.get $H)) (then
              (local.set $xrow (i32.mul (i32.add (i32.mul (local.get $n) (local.get $H))
                                                 (local.get $ih)) (local.get $W)))
              (local.set $j (i32.const 0))
              (block $jd (loop $jl
                (br_if $jd (i32.ge_u (local.get $j) (local.get $kw)))
                (local.set $iw (i32.sub
                  (i32.add (i32.mul (local.get $ow) (local.get $sw))
                           (i32.mul (local.get $j) (local.get $dw)))
                  (local.get $pl)))
                (if (i32.lt_u (local.get $iw) (local.get $W)) (then
                  (call $fma
                    (i32.add (local.get $acc) (i32.mul
                      (i32.add (i32.mul (local.get $i) (local.get $kw)) (local.get $j))
                      (local.get $cb)))
                    (i32.add (local.get $x) (i32.mul
                      (i32.add (local.get $xrow) (local.get $iw)) (local.get $cb)))
                    (local.get $dyp)
                    (local.get $C))))
                (local.set $j (i32.add (local.get $j) (i32.const 1)))
                (br $jl)))))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $il)))
          (local.set $dyp (i32.add (local.get $dyp) (local.get $cb)))
          (local.set $ow (i32.add (local.get $ow) (i32.const 1)))
          (br $wl)))
        (call $accumulate (local.get $out) (local.get $acc) (local.get $len))
        (local.set $oh (i32.add (local.get $oh) (i32.const 1)))
        (br $hl)))
      (local.set $n (i32.add (local.get $n) (i32.const 1)))
      (br $nl))))

  ;; Depthwise input gradient, channel multiplier 1, as a scatter:
  ;;   dx[n, oh*sh + i*dh - pt, ow*sw + j*dw - pl, c] +=
  ;;     f[(i*kw + j)*C + c] * dy[n, oh, ow, c]
  (func (export "dwInputGrad")
    (param $dy i32) (param $f i32) (param $dx i32)
    (param $N i32) (param $H i32) (param $W i32) (param $C i32)
    (param $Ho i32) (param $Wo i32) (param $kh i32) (param $kw i32)
    (param $sh i32) (param $sw i32) (param $dh i32) (param $dw i32)
    (param $pt i32) (param $pl i32)
    (local $n i32) (local $oh i32) (local $ow i32) (local $i i32) (local $j i32)
    (local $ih i32) (local $iw i32) (local $dyp i32) (local $xrow i32) (local $cb i32)
    (local.set $cb (i32.shl (local.get $C) (i32.const 2)))
    (call $zero (local.get $dx)
      (i32.mul (i32.mul (i32.mul (local.get $N) (local.get $H)) (local.get $W)) (local.get $C)))
    (local.set $dyp (local.get $dy))
    (local.set $n (i32.const 0))
    (block $nd (loop $nl
      (br_if $nd (i32.ge_u (local.get $n) (local.get $N)))
      (local.set $oh (i32.const 0))
      (block $hd (loop $hl
        (br_if $hd (i32.ge_u (local.get $oh) (local.get $Ho)))
        (local.set $ow (i32.const 0))
        (block $wd (loop $wl
          (br_if $wd (i32.ge_u (local.get $ow) (local.get $Wo)))
          (local.set $i (i32.const 0))
          (block $id (loop $il
            (br_if $id (i32.ge_u (local.get $i) (local.get $kh)))
            (local.set $ih (i32.sub
              (i32.add (i32.mul (local.get $oh) (local.get $sh))
                       (i32.mul (local.get $i) (local.get $dh)))
              (local.get $pt)))
            (if (i32.lt_u (local.get $ih) (local.get $H)) (then
              (local.set $xrow (i32.mul (i32.add (i32.mul (local.get $n) (local.get $H))
                                                 (local.get $ih)) (local.get $W)))
              (local.set $j (i32.const 0))
              (block $jd (loop $jl
                (br_if $jd (i32.ge_u (local.get $j) (local.get $kw)))
                (local.set $iw (i32.sub
                  (i32.add (i32.mul (local.get $ow) (local.get $sw))
                           (i32.mul (local.get $j) (local.get $dw)))
                  (local.get $pl)))
                (if (i32.lt_u (local.get $iw) (local.get $W)) (then
                  (call $fma
                    (i32.add (local.get $dx) (i32.mul
                      (i32.add (local.get $xrow) (local.get $iw)) (local.get $cb)))
                    (i32.add (local.get $f) (i32.mul
                      (i32.add (i32.mul (local.get $i) (local.get $kw)) (local.get $j))
                      (local.get $cb)))
                    (local.get $dyp)
                    (local.get $C))))
                (local.set $j (i32.add (local.get $j) (i32.const 1)))
                (br $jl)))))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $il)))
          (local.set $dyp (i32.add (local.get $dyp) (local.get $cb)))
          (local.set $ow (i32.add (local.get $ow) (i32.const 1)))
          (br $wl)))
        (local.set $oh (i32.add (local.get $oh) (i32.const 1)))
        (br $hl)))
      (local.set $n (i32.add (local.get $n) (i32.const 1)))
      (br $nl))))

  ;; Direct convolution filter gradient for small filters:
  ;;   out[((i*kw + j)*Ci + ci)*Co + co] += x[n, ih, iw, ci] * dy[n, oh, ow, co]
  ;; acc: kh*kw*Ci*Co floats of scratch (per output row).
  (func (export "convFilterGrad")
    (param $x i32) (param $dy i32) (param $out i32) (param $acc i32)
    (param $N i32) (param $H i32) (param $W i32) (param $Ci i32) (param $Co i32)
    (param $Ho i32) (param $Wo i32) (param $kh i32) (param $kw i32)
    (param $sh i32) (param $sw i32) (param $dh i32) (param $dw i32)
    (param $pt i32) (param $pl i32)
    (local $n i32) (local $oh i32) (local $ow i32) (local $i i32) (local $j i32)
    (local $ih i32) (local $iw i32) (local $len i32) (local $dyp i32)
    (local $xrow i32) (local $xp i32) (local $ap i32) (local $ci i32)
    (local $cob i32) (local $cib i32)
    (local.set $len (i32.mul (i32.mul (i32.mul (local.get $kh) (local.get $kw))
      (local.get $Ci)) (local.get $Co)))
    (local.set $cob (i32.shl (local.get $Co) (i32.const 2)))
    (local.set $cib (i32.shl (local.get $Ci) (i32.const 2)))
    (call $zero (local.get $out) (local.get $len))
    (local.set $dyp (local.get $dy))
    (local.set $n (i32.const 0))
    (block $nd (loop $nl
      (br_if $nd (i32.ge_u (local.get $n) (local.get $N)))
      (local.set $oh (i32.const 0))
      (block $hd (loop $hl
        (br_if $hd (i32.ge_u (local.get $oh) (local.get $Ho)))
        (call $zero (local.get $acc) (local.get $len))
        (local.set $ow (i32.const 0))
        (block $wd (loop $wl
          (br_if $wd (i32.ge_u (local.get $ow) (local.get $Wo)))
          (local.set $i (i32.const 0))
          (block $id (loop $il
            (br_if $id (i32.ge_u (local.get $i) (local.get $kh)))
            (local.set $ih (i32.sub
              (i32.add (i32.mul (local.get $oh) (local.get $sh))
                       (i32.mul (local.get $i) (local.get $dh)))
              (local.get $pt)))
            (if (i32.lt_u (local.get $ih) (local.get $H)) (then
              (local.set $xrow (i32.mul (i32.add (i32.mul (local.get $n) (local.get $H))
                                                 (local.get $ih)) (local.get $W)))
              (local.set $j (i32.const 0))
              (block $jd (loop $jl
                (br_if $jd (i32.ge_u (local.get $j) (local.get $kw)))
                (local.set $iw (i32.sub
                  (i32.add (i32.mul (local.get $ow) (local.get $sw))
                           (i32.mul (local.get $j) (local.get $dw)))
                  (local.get $pl)))
                (if (i32.lt_u (local.get $iw) (local.get $W)) (then
                  (local.set $xp (i32.add (local.get $x) (i32.mul
                    (i32.add (local.get $xrow) (local.get $iw)) (local.get $cib))))
                  (local.set $ap (i32.add (local.get $acc) (i32.mul
                    (i32.mul (i32.add (i32.mul (local.get $i) (local.get $kw)) (local.get $j))
                      (local.get $Ci))
                    (local.get $cob))))
                  (local.set $ci (i32.const 0))
                  (block $cd (loop $cl
                    (br_if $cd (i32.ge_u (local.get $ci) (local.get $Ci)))
                    (call $axpy (local.get $ap)
                      (f32.load (i32.add (local.get $xp) (i32.shl (local.get $ci) (i32.const 2))))
                      (local.get $dyp) (local.get $Co))
                    (local.set $ap (i32.add (local.get $ap) (local.get $cob)))
                    (local.set $ci (i32.add (local.get $ci) (i32.const 1)))
                    (br $cl)))))
                (local.set $j (i32.add (local.get $j) (i32.const 1)))
                (br $jl)))))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $il)))
          (local.set $dyp (i32.add (local.get $dyp) (local.get $cob)))
          (local.set $ow (i32.add (local.get $ow) (i32.const 1)))
          (br $wl)))
        (call $accumulate (local.get $out) (local.get $acc) (local.get $len))
        (local.set $oh (i32.add (local.get $oh) (i32.const 1)))
        (br $hl)))
      (local.set $n (i32.add (local.get $n) (i32.const 1)))
      (br $nl))))

  ;; Per-channel sums over rows of x [P, C]: sum[c] = sum_p x[p, c], and
  ;; with $mean != 0 also sq[c] = sum_p (x[p, c] - mean[c])^2.
  ;; acc: 2*C floats of scratch. Rows are summed in chunks of 64.
  (func (export "channelMoments")
    (param $x i32) (param $mean i32) (param $sum i32) (param $sq i32) (param $acc i32)
    (param $P i32) (param $C i32)
    (local $p i32) (local $k i32) (local $end i32) (local $end4 i32) (local $xp i32)
    (local $acc2 i32) (local $d v128) (local $ds f32) (local $chunk i32)
    (local.set $end (i32.shl (local.get $C) (i32.const 2)))
    (local.set $end4 (i32.and (local.get $end) (i32.const -16)))
    (local.set $acc2 (i32.add (local.get $acc) (local.get $end)))
    (call $zero (local.get $sum) (local.get $C))
    (call $zero (local.get $sq) (local.get $C))
    (local.set $xp (local.get $x))
    (local.set $p (i32.const 0))
    (block $pd (loop $pl
      (br_if $pd (i32.ge_u (local.get $p) (local.get $P)))
      (if (i32.eqz (local.get $chunk)) (then
        (call $zero (local.get $acc) (i32.shl (local.get $C) (i32.const 1)))))
      (local.set $k (i32.const 0))
      (block $d4 (loop $l4
        (br_if $d4 (i32.ge_u (local.get $k) (local.get $end4)))
        (local.set $d (v128.load align=4 (i32.add (local.get $xp) (local.get $k))))
        (v128.store align=4 (i32.add (local.get $acc) (local.get $k))
          (f32x4.add (v128.load align=4 (i32.add (local.get $acc) (local.get $k)))
            (local.get $d)))
        (if (local.get $mean) (then
          (local.set $d (f32x4.sub (local.get $d)
            (v128.load align=4 (i32.add (local.get $mean) (local.get $k)))))
          (v128.store align=4 (i32.add (local.get $acc2) (local.get $k))
            (f32x4.add (v128.load align=4 (i32.add (local.get $acc2) (local.get $k)))
              (f32x4.mul (local.get $d) (local.get $d))))))
        (local.set $k (i32.add (local.get $k) (i32.const 16)))
        (br $l4)))
      (block $d1 (loop $l1
        (br_if $d1 (i32.ge_u (local.get $k) (local.get $end)))
        (local.set $ds (f32.load (i32.add (local.get $xp) (local.get $k))))
        (f32.store (i32.add (local.get $acc) (local.get $k))
          (f32.add (f32.load (i32.add (local.get $acc) (local.get $k))) (local.get $ds)))
        (if (local.get $mean) (then
          (local.set $ds (f32.sub (local.get $ds)
            (f32.load (i32.add (local.get $mean) (local.get $k)))))
          (f32.store (i32.add (local.get $acc2) (local.get $k))
            (f32.add (f32.load (i32.add (local.get $acc2) (local.get $k)))
              (f32.mul (local.get $ds) (local.get $ds))))))
        (local.set $k (i32.add (local.get $k) (i32.const 4)))
        (br $l1)))
      (local.set $xp (i32.add (local.get $xp) (local.get $end)))
      (local.set $p (i32.add (local.get $p) (i32.const 1)))
      (local.set $chunk (i32.add (local.get $chunk) (i32.const 1)))
      (if (i32.or (i32.eq (local.get $chunk) (i32.const 64))
                  (i32.eq (local.get $p) (local.get $P))) (then
        (call $accumulate (local.get $sum) (local.get $acc) (local.get $C))
        (call $accumulate (local.get $sq) (local.get $acc2) (local.get $C))
        (local.set $chunk (i32.const 0))))
      (br $pl))))

  ;; Batch-norm backward sums over rows of x, dy [P, C]:
  ;;   sdy[c] = sum_p dy[p, c],  sdyx[c] = sum_p dy[p, c] * (x[p, c] - mean[c])
  ;; acc: 2*C floats of scratch.
  (func (export "bnGradSums")
    (param $x i32) (param $dy i32) (param $mean i32) (param $sdy i32) (param $sdyx i32)
    (param $acc i32) (param $P i32) (param $C i32)
    (local $p i32) (local $k i32) (local $end i32) (local $end4 i32) (local $xp i32)
    (local $dyp i32) (local $acc2 i32) (local $g v128) (local $gs f32) (local $chunk i32)
    (local.set $end (i32.shl (local.get $C) (i32.const 2)))
    (local.set $end4 (i32.and (local.get $end) (i32.const -16)))
    (local.set $acc2 (i32.add (local.get $acc) (local.get $end)))
    (call $zero (local.get $sdy) (local.get $C))
    (call $zero (local.get $sdyx) (local.get $C))
    (local.set $xp (local.get $x))
    (local.set $dyp (local.get $dy))
    (block $pd (loop $pl
      (br_if $pd (i32.ge_u (local.get $p) (local.get $P)))
      (if (i32.eqz (local.get $chunk)) (then
        (call $zero (local.get $acc) (i32.shl (local.get $C) (i32.const 1)))))
      (local.set $k (i32.const 0))
      (block $d4 (loop $l4
        (br_if $d4 (i32.ge_u (local.get $k) (local.get $end4)))
        (local.set $g (v128.load align=4 (i32.add (local.get $dyp) (local.get $k))))
        (v128.store align=4 (i32.add (local.get $acc) (local.get $k))
          (f32x4.add (v128.load align=4 (i32.add (local.get $acc) (local.get $k)))
            (local.get $g)))
        (v128.store align=4 (i32.add (local.get $acc2) (local.get $k))
          (f32x4.add (v128.load align=4 (i32.add (local.get $acc2) (local.get $k)))
            (f32x4.mul (local.get $g)
              (f32x4.sub (v128.load align=4 (i32.add (local.get $xp) (local.get $k)))
                (v128.load align=4 (i32.add (local.get $mean) (local.get $k)))))))
        (local.set $k (i32.add (local.get $k) (i32.const 16)))
        (br $l4)))
      (block $d1 (loop $l1
        (br_if $d1 (i32.ge_u (local.get $k) (local.get $end)))
        (local.set $gs (f32.load (i32.add (local.get $dyp) (local.get $k))))
        (f32.store (i32.add (local.get $acc) (local.get $k))
          (f32.add (f32.load (i32.add (local.get $acc) (local.get $k))) (local.get $gs)))
        (f32.store (i32.add (local.get $acc2) (local.get $k))
          (f32.add (f32.load (i32.add (local.get $acc2) (local.get $k)))
            (f32.mul (local.get $gs)
              (f32.sub (f32.load (i32.add (local.get $xp) (local.get $k)))
                (f32.load (i32.add (local.get $mean) (local.get $k)))))))
        (local.set $k (i32.add (local.get $k) (i32.const 4)))
        (br $l1)))
      (local.set $xp (i32.add (local.get $xp) (local.get $end)))
      (local.set $dyp (i32.add (local.get $dyp) (local.get $end)))
      (local.set $p (i32.add (local.get $p) (i32.const 1)))
      (local.set $chunk (i32.add (local.get $chunk) (i32.const 1)))
      (if (i32.or (i32.eq (local.get $chunk) (i32.const 64))
                  (i32.eq (local.get $p) (local.get $P))) (then
        (call $accumulate (local.get $sdy) (local.get $acc) (local.get $C))
        (call $accumulate (local.get $sdyx) (local.get $acc2) (local.get $C))
        (local.set $chunk (i32.const 0))))
      (br $pl))))

  ;; Per-channel affine map of two tensors [P, C]:
  ;;   out[p, c] = a[c] * (dy[p, c] - b[c]) + e[c] * (x[p, c] - m[c])
  ;; (the batch-norm input gradient; also the training-mode normalisation
  ;; with dy = x, a = 0).
  (func (export "bnGradInput")
    (param $x i32) (param $dy i32) (param $a i32) (param $b i32) (param $e i32)
    (param $m i32) (param $out i32) (param $P i32) (param $C i32)
    (local $p i32) (local $k i32) (local $end i32) (local $end4 i32) (local $off i32)
    (local.set $end (i32.shl (local.get $C) (i32.const 2)))
    (local.set $end4 (i32.and (local.get $end) (i32.const -16)))
    (block $pd (loop $pl
      (br_if $pd (i32.ge_u (local.get $p) (local.get $P)))
      (local.set $k (i32.const 0))
      (block $d4 (loop $l4
        (br_if $d4 (i32.ge_u (local.get $k) (local.get $end4)))
        (local.set $off (i32.add (i32.mul (local.get $p) (local.get $end)) (local.get $k)))
        (v128.store align=4 (i32.add (local.get $out) (local.get $off))
          (f32x4.add
            (f32x4.mul (v128.load align=4 (i32.add (local.get $a) (local.get $k)))
              (f32x4.sub (v128.load align=4 (i32.add (local.get $dy) (local.get $off)))
                (v128.load align=4 (i32.add (local.get $b) (local.get $k)))))
            (f32x4.mul (v128.load align=4 (i32.add (local.get $e) (local.get $k)))
              (f32x4.sub (v128.load align=4 (i32.add (local.get $x) (local.get $off)))
                (v128.load align=4 (i32.add (local.get $m) (local.get $k)))))))
        (local.set $k (i32.add (local.get $k) (i32.const 16)))
        (br $l4)))
      (block $d1 (loop $l1
        (br_if $d1 (i32.ge_u (local.get $k) (local.get $end)))
        (local.set $off (i32.add (i32.mul (local.get $p) (local.get $end)) (local.get $k)))
        (f32.store (i32.add (local.get $out) (local.get $off))
          (f32.add
            (f32.mul (f32.load (i32.add (local.get $a) (local.get $k)))
              (f32.sub (f32.load (i32.add (local.get $dy) (local.get $off)))
                (f32.load (i32.add (local.get $b) (local.get $k)))))
            (f32.mul (f32.load (i32.add (local.get $e) (local.get $k)))
              (f32.sub (f32.load (i32.add (local.get $x) (local.get $off)))
                (f32.load (i32.add (local.get $m) (local.get $k)))))))
        (local.set $k (i32.add (local.get $k) (i32.const 4)))
        (br $l1)))
      (local.set $p (i32.add (local.get $p) (i32.const 1)))
      (br $pl))))

    ;; Gradient of min(max(x, lo), hi) with lo < hi, masked on the input x:
  ;;   dx[k] = dy[k] if x[k] > lo (x[k] >= lo when $loIncl) and x[k] <= hi,
  ;;   else 0. tfjs uses 0 < x <= 6 for relu6 and lo <= x <= hi for clip.
  (func (export "clipGrad")
    (param $x i32) (param $dy i32) (param $dx i32) (param $n i32)
    (param $lo f32) (param $hi f32) (param $loIncl i32)
    (local $k i32) (local $end i32) (local $end4 i32) (local $lov v128) (local $hiv v128)
    (local $xv v128) (local $xs f32) (local $sel v128)
    (local.set $lov (f32x4.splat (local.get $lo)))
    (local.set $hiv (f32x4.splat (local.get $hi)))
    (local.set $sel (i32x4.splat
      (i32.sub (i32.const 0) (i32.ne (local.get $loIncl) (i32.const 0)))))
    (local.set $end (i32.shl (local.get $n) (i32.const 2)))
    (local.set $end4 (i32.and (local.get $end) (i32.const -16)))
    (block $d4 (loop $l4
      (br_if $d4 (i32.ge_u (local.get $k) (local.get $end4)))
      (local.set $xv (v128.load align=4 (i32.add (local.get $x) (local.get $k))))
      (v128.store align=4 (i32.add (local.get $dx) (local.get $k))
        (v128.and (v128.load align=4 (i32.add (local.get $dy) (local.get $k)))
          (v128.and
            (v128.bitselect
              (f32x4.ge (local.get $xv) (local.get $lov))
              (f32x4.gt (local.get $xv) (local.get $lov))
              (local.get $sel))
            (f32x4.le (local.get $xv) (local.get $hiv)))))
      (local.set $k (i32.add (local.get $k) (i32.const 16)))
      (br $l4)))
    (block $d1 (loop $l1
      (br_if $d1 (i32.ge_u (local.get $k) (local.get $end)))
      (local.set $xs (f32.load (i32.add (local.get $x) (local.get $k))))
      (f32.store (i32.add (local.get $dx) (local.get $k))
        (select (f32.load (i32.add (local.get $dy) (local.get $k))) (f32.const 0)
          (i32.and
            (select (f32.ge (local.get $xs) (local.get $lo))
                    (f32.gt (local.get $xs) (local.get $lo))
                    (local.get $loIncl))
            (f32.le (local.get $xs) (local.get $hi)))))
      (local.set $k (i32.add (local.get $k) (i32.const 4)))
      (br $l1))))

  ;; Per-channel affine map of x [P, C] (batch-norm normalisation):
  ;;   out[p, c] = (x[p, c] - m[c]) * s[c] + t[c]
  (func (export "channelAffine")
    (param $x i32) (param $m i32) (param $s i32) (param $t i32) (param $out i32)
    (param $P i32) (param $C i32)
    (local $p i32) (local $k i32) (local $end i32) (local $end4 i32) (local $off i32)
    (local.set $end (i32.shl (local.get $C) (i32.const 2)))
    (local.set $end4 (i32.and (local.get $end) (i32.const -16)))
    (block $pd (loop $pl
      (br_if $pd (i32.ge_u (local.get $p) (local.get $P)))
      (local.set $k (i32.const 0))
      (block $d4 (loop $l4
        (br_if $d4 (i32.ge_u (local.get $k) (local.get $end4)))
        (local.set $off (i32.add (i32.mul (local.get $p) (local.get $end)) (local.get $k)))
        (v128.store align=4 (i32.add (local.get $out) (local.get $off))
          (f32x4.add
            (f32x4.mul
              (f32x4.sub (v128.load align=4 (i32.add (local.get $x) (local.get $off)))
                (v128.load align=4 (i32.add (local.get $m) (local.get $k))))
              (v128.load align=4 (i32.add (local.get $s) (local.get $k))))
            (v128.load align=4 (i32.add (local.get $t) (local.get $k)))))
        (local.set $k (i32.add (local.get $k) (i32.const 16)))
        (br $l4)))
      (block $d1 (loop $l1
        (br_if $d1 (i32.ge_u (local.get $k) (local.get $end)))
        (local.set $off (i32.add (i32.mul (local.get $p) (local.get $end)) (local.get $k)))
        (f32.store (i32.add (local.get $out) (local.get $off))
          (f32.add
            (f32.mul
              (f32.sub (f32.load (i32.add (local.get $x) (local.get $off)))
                (f32.load (i32.add (local.get $m) (local.get $k))))
              (f32.load (i32.add (local.get $s) (local.get $k))))
            (f32.load (i32.add (local.get $t) (local.get $k)))))
        (local.set $k (i32.add (local.get $k) (i32.const 4)))
        (br $l1)))
      (local.set $p (i32.add (local.get $p) (i32.const 1)))
      (br $pl))))

  ;; out[k] = min(max(x[k], lo), hi) for k < n (relu6: lo = 0, hi = 6).
  (func (export "clamp")
    (param $x i32) (param $out i32) (param $n i32) (param $lo f32) (param $hi f32)
    (local $k i32) (local $end i32) (local $end4 i32) (local $lov v128) (local $hiv v128)
    (local.set $lov (f32x4.splat (local.get $lo)))
    (local.set $hiv (f32x4.splat (local.get $hi)))
    (local.set $end (i32.shl (local.get $n) (i32.const 2)))
    (local.set $end4 (i32.and (local.get $end) (i32.const -16)))
    (block $d4 (loop $l4
      (br_if $d4 (i32.ge_u (local.get $k) (local.get $end4)))
      (v128.store align=4 (i32.add (local.get $out) (local.get $k))
        (f32x4.min (local.get $hiv)
          (f32x4.max (local.get $lov)
            (v128.load align=4 (i32.add (local.get $x) (local.get $k))))))
      (local.set $k (i32.add (local.get $k) (i32.const 16)))
      (br $l4)))
    (block $d1 (loop $l1
      (br_if $d1 (i32.ge_u (local.get $k) (local.get $end)))
      (f32.store (i32.add (local.get $out) (local.get $k))
        (f32.min (local.get $hi)
          (f32.max (local.get $lo) (f32.load (i32.add (local.get $x) (local.get $k))))))
      (local.set $k (i32.add (local.get $k) (i32.const 4)))
      (br $l1))))

  ;; Pointwise (1x1, stride 1, unpadded) convolution filter gradient:
  ;;   out[ci*Co + co] = sum_p x[p, ci] * dy[p, co]
  ;; Four rows of x and dy per sweep over the accumulator (one load and
  ;; store of acc per four products); chunks of 64 rows are summed in acc
  ;; (Ci*Co floats of scratch) before being added to out.
  (func (export "pwFilterGrad")
    (param $x i32) (param $dy i32) (param $out i32) (param $acc i32)
    (param $P i32) (param $Ci i32) (param $Co i32)
    (local $p i32) (local $chunkEnd i32) (local $len i32) (local $ci i32)
    (local $k i32) (local $end i32) (local $end4 i32) (local $cib i32)
    (local $x0 i32) (local $d0 i32) (local $d1 i32) (local $d2 i32) (local $d3 i32)
    (local $ap i32) (local $s0 v128) (local $s1 v128) (local $s2 v128) (local $s3 v128)
    (local $xs i32)
    (local.set $len (i32.mul (local.get $Ci) (local.get $Co)))
    (local.set $end (i32.shl (local.get $Co) (i32.const 2)))
    (local.set $end4 (i32.and (local.get $end) (i32.const -16)))
    (local.set $cib (i32.shl (local.get $Ci) (i32.const 2)))
    (call $zero (local.get $out) (local.get $len))
    (block $pd (loop $pl
      (br_if $pd (i32.ge_u (local.get $p) (local.get $P)))
      (local.set $chunkEnd (i32.add (local.get $p) (i32.const 64)))
      (if (i32.gt_u (local.get $chunkEnd) (local.get $P)) (then
        (local.set $chunkEnd (local.get $P))))
      (call $zero (local.get $acc) (local.get $len))
      ;; four rows at a time
      (block $bd (loop $bl
        (br_if $bd (i32.gt_u (i32.add (local.get $p) (i32.const 4)) (local.get $chunkEnd)))
        (local.set $x0 (i32.add (local.get $x) (i32.mul (local.get $p) (local.get $cib))))
        (local.set $d0 (i32.add (local.get $dy) (i32.mul (local.get $p) (local.get $end))))
        (local.set $d1 (i32.add (local.get $d0) (local.get $end)))
        (local.set $d2 (i32.add (local.get $d1) (local.get $end)))
        (local.set $d3 (i32.add (local.get $d2) (local.get $end)))
        (local.set $ap (local.get $acc))
        (local.set $ci (i32.const 0))
        (block $cd (loop $cl
          (br_if $cd (i32.ge_u (local.get $ci) (local.get $Ci)))
          (local.set $xs (i32.add (local.get $x0) (i32.shl (local.get $ci) (i32.const 2))))
          (local.set $s0 (v128.load32_splat (local.get $xs)))
          (local.set $s1 (v128.load32_splat (i32.add (local.get $xs) (local.get $cib))))
          (local.set $s2 (v128.load32_splat (i32.add (local.get $xs)
            (i32.shl (local.get $cib) (i32.const 1)))))
          (local.set $s3 (v128.load32_splat (i32.add (local.get $xs)
            (i32.mul (local.get $cib) (i32.const 3)))))
          (local.set $k (i32.const 0))
          (block $kd (loop $kl
            (br_if $kd (i32.ge_u (local.get $k) (local.get $end4)))
            (v128.store align=4 (i32.add (local.get $ap) (local.get $k))
              (f32x4.add
                (f32x4.add
                  (v128.load align=4 (i32.add (local.get $ap) (local.get $k)))
                  (f32x4.add
                    (f32x4.mul (local.get $s0)
                      (v128.load align=4 (i32.add (local.get $d0) (local.get $k))))
                    (f32x4.mul (local.get $s1)
                      (v128.load align=4 (i32.add (local.get $d1) (local.get $k))))))
                (f32x4.add
                  (f32x4.mul (local.get $s2)
                    (v128.load align=4 (i32.add (local.get $d2) (local.get $k))))
                  (f32x4.mul (local.get $s3)
                    (v128.load align=4 (i32.add (local.get $d3) (local.get $k)))))))
            (local.set $k (i32.add (local.get $k) (i32.const 16)))
            (br $kl)))
          (block $td (loop $tl
            (br_if $td (i32.ge_u (local.get $k) (local.get $end)))
            (f32.store (i32.add (local.get $ap) (local.get $k))
              (f32.add (f32.load (i32.add (local.get $ap) (local.get $k)))
                (f32.add
                  (f32.add
                    (f32.mul (f32x4.extract_lane 0 (local.get $s0))
                      (f32.load (i32.add (local.get $d0) (local.get $k))))
                    (f32.mul (f32x4.extract_lane 0 (local.get $s1))
                      (f32.load (i32.add (local.get $d1) (local.get $k)))))
                  (f32.add
                    (f32.mul (f32x4.extract_lane 0 (local.get $s2))
                      (f32.load (i32.add (local.get $d2) (local.get $k))))
                    (f32.mul (f32x4.extract_lane 0 (local.get $s3))
                      (f32.load (i32.add (local.get $d3) (local.get $k))))))))
            (local.set $k (i32.add (local.get $k) (i32.const 4)))
            (br $tl)))
          (local.set $ap (i32.add (local.get $ap) (local.get $end)))
          (local.set $ci (i32.add (local.get $ci) (i32.const 1)))
          (br $cl)))
        (local.set $p (i32.add (local.get $p) (i32.const 4)))
        (br $bl)))
      ;; leftover rows of the last chunk, one at a time
      (block $rd (loop $rl
        (br_if $rd (i32.ge_u (local.get $p) (local.get $chunkEnd)))
        (local.set $x0 (i32.add (local.get $x) (i32.mul (local.get $p) (local.get $cib))))
        (local.set $d0 (i32.add (local.get $dy) (i32.mul (local.get $p) (local.get $end))))
        (local.set $ap (local.get $acc))
        (local.set $ci (i32.const 0))
        (block $cd1 (loop $cl1
          (br_if $cd1 (i32.ge_u (local.get $ci) (local.get $Ci)))
          (call $axpy (local.get $ap)
            (f32.load (i32.add (local.get $x0) (i32.shl (local.get $ci) (i32.const 2))))
            (local.get $d0) (local.get $Co))
          (local.set $ap (i32.add (local.get $ap) (local.get $end)))
          (local.set $ci (i32.add (local.get $ci) (i32.const 1)))
          (br $cl1)))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $rl)))
      (call $accumulate (local.get $out) (local.get $acc) (local.get $len))
      (br $pl))))

  ;; sum_k a[k] * b[k] for k < n (n in floats).
  (func $dot (param $a i32) (param $b i32) (param $n i32) (result f32)
    (local $k i32) (local $end i32) (local $end4 i32) (local $acc v128) (local $tail f32)
    (local.set $end (i32.shl (local.get $n) (i32.const 2)))
    (local.set $end4 (i32.and (local.get $end) (i32.const -16)))
    (block $d4 (loop $l4
      (br_if $d4 (i32.ge_u (local.get $k) (local.get $end4)))
      (local.set $acc (f32x4.add (local.get $acc)
        (f32x4.mul (v128.load align=4 (i32.add (local.get $a) (local.get $k)))
                   (v128.load align=4 (i32.add (local.get $b) (local.get $k))))))
      (local.set $k (i32.add (local.get $k) (i32.const 16)))
      (br $l4)))
    (block $d1 (loop $l1
      (br_if $d1 (i32.ge_u (local.get $k) (local.get $end)))
      (local.set $tail (f32.add (local.get $tail)
        (f32.mul (f32.load (i32.add (local.get $a) (local.get $k)))
                 (f32.load (i32.add (local.get $b) (local.get $k))))))
      (local.set $k (i32.add (local.get $k) (i32.const 4)))
      (br $l1)))
    (f32.add
      (f32.add (f32x4.extract_lane 0 (local.get $acc)) (f32x4.extract_lane 1 (local.get $acc)))
      (f32.add
        (f32.add (f32x4.extract_lane 2 (local.get $acc)) (f32x4.extract_lane 3 (local.get $acc)))
        (local.get $tail))))

  ;; Direct convolution input gradient (filter [kh, kw, Ci, Co]):
  ;;   dx[n, oh*sh + i*dh - pt, ow*sw + j*dw - pl, ci] +=
  ;;     sum_co f[i, j, ci, co] * dy[n, oh, ow, co]
  (func (export "convInputGrad")
    (param $dy i32) (param $f i32) (param $dx i32)
    (param $N i32) (param $H i32) (param $W i32) (param $Ci i32) (param $Co i32)
    (param $Ho i32) (param $Wo i32) (param $kh i32) (param $kw i32)
    (param $sh i32) (param $sw i32) (param $dh i32) (param $dw i32)
    (param $pt i32) (param $pl i32)
    (local $n i32) (local $oh i32) (local $ow i32) (local $i i32) (local $j i32)
    (local $ih i32) (local $iw i32) (local $dyp i32) (local $xrow i32)
    (local $xp i32) (local $wp i32) (local $ci i32) (local $cob i32) (local $cib i32)
    (local.set $cob (i32.shl (local.get $Co) (i32.const 2)))
    (local.set $cib (i32.shl (local.get $Ci) (i32.const 2)))
    (call $zero (local.get $dx)
      (i32.mul (i32.mul (i32.mul (local.get $N) (local.get $H)) (local.get $W)) (local.get $Ci)))
    (local.set $dyp (local.get $dy))
    (block $nd (loop $nl
      (br_if $nd (i32.ge_u (local.get $n) (local.get $N)))
      (local.set $oh (i32.const 0))
      (block $hd (loop $hl
        (br_if $hd (i32.ge_u (local.get $oh) (local.get $Ho)))
        (local.set $ow (i32.const 0))
        (block $wd (loop $wl
          (br_if $wd (i32.ge_u (local.get $ow) (local.get $Wo)))
          (local.set $i (i32.const 0))
          (block $id (loop $il
            (br_if $id (i32.ge_u (local.get $i) (local.get $kh)))
            (local.set $ih (i32.sub
              (i32.add (i32.mul (local.get $oh) (local.get $sh))
                       (i32.mul (local.get $i) (local.get $dh)))
              (local.get $pt)))
            (if (i32.lt_u (local.get $ih) (local.get $H)) (then
              (local.set $xrow (i32.mul (i32.add (i32.mul (local.get $n) (local.get $H))
                                                 (local.get $ih)) (local.get $W)))
              (local.set $j (i32.const 0))
              (block $jd (loop $jl
                (br_if $jd (i32.ge_u (local.get $j) (local.get $kw)))
                (local.set $iw (i32.sub
                  (i32.add (i32.mul (local.get $ow) (local.get $sw))
                           (i32.mul (local.get $j) (local.get $dw)))
                  (local.get $pl)))
                (if (i32.lt_u (local.get $iw) (local.get $W)) (then
                  (local.set $xp (i32.add (local.get $dx) (i32.mul
                    (i32.add (local.get $xrow) (local.get $iw)) (local.get $cib))))
                  (local.set $wp (i32.add (local.get $f) (i32.mul
                    (i32.mul (i32.add (i32.mul (local.get $i) (local.get $kw)) (local.get $j))
                      (local.get $Ci))
                    (local.get $cob))))
                  (local.set $ci (i32.const 0))
                  (block $cd (loop $cl
                    (br_if $cd (i32.ge_u (local.get $ci) (local.get $Ci)))
                    (f32.store (local.get $xp)
                      (f32.add (f32.load (local.get $xp))
                        (call $dot (local.get $wp) (local.get $dyp) (local.get $Co))))
                    (local.set $xp (i32.add (local.get $xp) (i32.const 4)))
                    (local.set $wp (i32.add (local.get $wp) (local.get $cob)))
                    (local.set $ci (i32.add (local.get $ci) (i32.const 1)))
                    (br $cl)))))
                (local.set $j (i32.add (local.get $j) (i32.const 1)))
                (br $jl)))))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $il)))
          (local.set $dyp (i32.add (local.get $dyp) (local.get $cob)))
          (local.set $ow (i32.add (local.get $ow) (i32.const 1)))
          (br $wl)))
        (local.set $oh (i32.add (local.get $oh) (i32.const 1)))
        (br $hl)))
      (local.set $n (i32.add (local.get $n) (i32.const 1)))
      (br $nl))))
)
