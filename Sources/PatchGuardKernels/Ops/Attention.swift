import Foundation
import PatchGuardCore

/// Multi-head self-attention core on a fused `qkv` projection (timm `Attention` without its two Linears):
/// per head `h`, `P = softmax(q·kᵀ·HS^{-1/2})`, `out_h = P·v`.
///
/// Shape legend: `B` batch, `N` tokens, `C` channels, `NH` heads, `HS = C/NH` head size.
///
/// `qkv` is the output of the `qkv` Linear, (B, N, 3C), laid out as timm reshapes it: `(B, N, 3, NH, HS)` — the
/// query of head `h` is columns `h·HS ..< (h+1)·HS`, its key `C + h·HS ...`, its value `2C + h·HS ...`.
/// The output is heads concatenated, (B, N, C), ready for the `proj` Linear.
///
/// The cache is the probabilities `probs` (B, NH, N, N), which callers may read (attention maps, regularisers).
/// Optional attention dropout (PyTorch `nn.MultiheadAttention(dropout=p)` in training): with a mask `dropMask`
/// (B, NH, N, N; 0 or 1/(1−p), see ``Dropout``) the values are mixed by `P̃ = P ⊙ mask`, kept in `dropped`
/// (B, NH, N, N) for backward; `probs` stays the undropped `P`.
/// Backward accepts an extra `dProbs` (gradient of a loss on the probabilities themselves) and *adds* into
/// `dQKV`. Work is split over (image, head) pairs on ``SingleThreadedBLAS/parallelFor(_:_:)``: each worker runs
/// its pair's whole chain (score GEMM, softmax rows, value GEMM; strided operands, no copies) with OpenBLAS at one
/// thread, so the score matrix stays in cache and the many small GEMMs pay no thread hand-off. Pairs write
/// disjoint slices, so results do not depend on the split. The per-head products go through
/// ``NNScalar/gemmSmall(transA:transB:m:n:k:alpha:a:lda:b:ldb:beta:c:ldc:)`` (fp32 on AVX-512: a kernel that packs
/// only one operand, as these products are too small for OpenBLAS's packing of both to pay off).
public enum Attention {
    /// - Parameters:
    ///   - out: (B, N, C)
    ///   - probs: (B, NH, N, N) cache (also the attention maps)
    ///   - qkv: (B, N, 3C)
    ///   - dropMask, dropped: (B, NH, N, N) attention-dropout mask and the dropped probabilities (both or neither)
    @inlinable
    public static func forward<T: NNScalar>(_ out: UnsafeMutablePointer<T>, _ probs: UnsafeMutablePointer<T>,
                                            _ qkv: UnsafePointer<T>, batch B: Int, tokens N: Int, channels C: Int,
                                            heads NH: Int, dropMask: UnsafePointer<T>? = nil,
                                            dropped: UnsafeMutablePointer<T>? = nil) {
        precondition((dropMask == nil) == (dropped == nil), "attention dropout needs both a mask and a buffer")
        if T.self == Float.self, dropMask == nil, SmallGEMM.enabled, GEMMPrecision.current == .fp32 {
            forwardFused(UnsafeMutableRawPointer(out).assumingMemoryBound(to: Float.self),
                         UnsafeMutableRawPointer(probs).assumingMemoryBound(to: Float.self),
                         UnsafeRawPointer(qkv).assumingMemoryBound(to: Float.self), batch: B, tokens: N, channels: C,
                         heads: NH)
            return
        }
        let hs = C / NH, c3 = 3 * C
        let scale = 1 / T(hs).squareRoot()
        SingleThreadedBLAS.parallelFor(B * NH) { bh in
            let b = bh / NH, h = bh % NH
            let q = qkv + b * N * c3 + h * hs, k = q + C, v = q + 2 * C
            let p = probs + bh * N * N
            // p (N, N) = scale · q (N, HS; ld 3C) · kᵀ
            T.gemmSmall(transA: false, transB: true, m: N, n: N, k: hs, alpha: scale, a: q, lda: c3, b: k, ldb: c3,
                   beta: 0, c: p, ldc: N)
            for i in 0..<N { Softmax.forwardRow(p + i * N, p + i * N, length: N, scale: 1) }
            var mix = UnsafePointer(p)
            if let dropMask, let dropped {
                let m = dropMask + bh * N * N, d = dropped + bh * N * N
                for i in 0..<(N * N) { d[i] = p[i] * m[i] }
                mix = UnsafePointer(d)
            }
            // out_h (N, HS; ld C) = p̃ (N, N) · v (N, HS; ld 3C)
            T.gemmSmall(transA: false, transB: false, m: N, n: hs, k: N, alpha: 1, a: mix, lda: N, b: v, ldb: c3,
                   beta: 0, c: out + b * N * C + h * hs, ldc: C)
        }
    }

    /// Rows of the score matrix a fused forward computes, softmaxes and multiplies by v at a time (64 rows × N
    /// scores stay in L1/L2 between the three steps).
    @usableFromInline static let fusedRows = 64

    /// `forward` without dropout in fp32 on an AVX-512 CPU: per (image, head) kᵀ and v are packed once
    /// (``SmallGEMM``), then each block of ``fusedRows`` query rows gets its scores, their softmax and its output
    /// while the block is in cache; `probs` is written once. Same formulas, sums in the same order per element as
    /// the unfused path's products.
    @usableFromInline
    static func forwardFused(_ out: UnsafeMutablePointer<Float>, _ probs: UnsafeMutablePointer<Float>,
                             _ qkv: UnsafePointer<Float>, batch B: Int, tokens N: Int, channels C: Int, heads NH: Int) {
        let hs = C / NH, c3 = 3 * C
        let scale = 1 / Float(hs).squareRoot()
        let kCount = SmallGEMM.packedCount(k: hs, n: N), vCount = SmallGEMM.packedCount(k: N, n: hs)
        SingleThreadedBLAS.parallelFor(B * NH) { bh in
            let b = bh / NH, h = bh % NH
            let q = qkv + b * N * c3 + h * hs, k = q + C, v = q + 2 * C
            let p = probs + bh * N * N, o = out + b * N * C + h * hs
            let packed = UnsafeMutableRawPointer.allocate(byteCount: (kCount + vCount) * 4, alignment: 64)
                .assumingMemoryBound(to: Float.self)
            defer { packed.deallocate() }
            let kp = packed, vp = packed + kCount
            SmallGEMM.packB(kp, k, ldb: c3, transB: true, k: hs, n: N)     // kᵀ (HS, N)
            SmallGEMM.packB(vp, v, ldb: c3, transB: false, k: N, n: hs)    // v (N, HS)
            var i0 = 0
            while i0 < N {
                let rows = min(fusedRows, N - i0)
                // p[i0..<i0+rows] = scale · q[i0..<i0+rows] · kᵀ, softmax per row, out rows = p rows · v
                SmallGEMM.compute(transA: false, m: rows, n: N, k: hs, alpha: scale, a: q + i0 * c3, lda: c3,
                                  packedB: kp, beta: 0, c: p + i0 * N, ldc: N)
                for i in i0..<(i0 + rows) { Softmax.forwardRow(p + i * N, p + i * N, length: N, scale: 1) }
                SmallGEMM.compute(transA: false, m: rows, n: hs, k: N, alpha: 1, a: p + i0 * N, lda: N, packedB: vp,
                                  beta: 0, c: o + i0 * C, ldc: C)
                i0 += rows
            }
        }
    }

    /// Gradient of ``forward(_:_:_:batch:tokens:channels:heads:)``, added into `dQKV`.
    ///
    /// `dP = dOut_h·vᵀ (+ dProbsIn)`, `dV += Pᵀ·dOut_h`, `dS = P ⊙ (dP − rowsum(dP ⊙ P))·scale`,
    /// `dQ += dS·K`, `dK += dSᵀ·Q`. With attention dropout: `dV += P̃ᵀ·dOut_h` and
    /// `dP = (dOut_h·vᵀ) ⊙ mask (+ dProbsIn)`.
    /// - Parameters:
    ///   - dQKV: (B, N, 3C) added into
    ///   - dScores: (B, NH, N, N) scratch, overwritten
    ///   - dOut: (B, N, C)
    ///   - dProbsIn: (B, NH, N, N) or nil — extra gradient on the probabilities
    ///   - qkv: (B, N, 3C); probs: (B, NH, N, N) from forward
    ///   - dropMask, dropped: the attention-dropout mask and dropped probabilities of forward (both or neither)
    @inlinable
    public static func backward<T: NNScalar>(_ dQKV: UnsafeMutablePointer<T>, _ dScores: UnsafeMutablePointer<T>,
                                             _ dOut: UnsafePointer<T>, _ dProbsIn: UnsafePointer<T>?,
                                             _ qkv: UnsafePointer<T>, _ probs: UnsafePointer<T>,
                                             batch B: Int, tokens N: Int, channels C: Int, heads NH: Int,
                                             dropMask: UnsafePointer<T>? = nil, dropped: UnsafePointer<T>? = nil) {
        precondition((dropMask == nil) == (dropped == nil), "attention dropout needs both a mask and a buffer")
        if T.self == Float.self, dropMask == nil, SmallGEMM.enabled, GEMMPrecision.current == .fp32 {
            func f(_ p: UnsafePointer<T>) -> UnsafePointer<Float> { UnsafeRawPointer(p).assumingMemoryBound(to: Float.self) }
            backwardFused(UnsafeMutableRawPointer(dQKV).assumingMemoryBound(to: Float.self),
                          UnsafeMutableRawPointer(dScores).assumingMemoryBound(to: Float.self), f(dOut),
                          dProbsIn.map(f), f(qkv), f(probs), batch: B, tokens: N, channels: C, heads: NH)
            return
        }
        let hs = C / NH, c3 = 3 * C
        let scale = 1 / T(hs).squareRoot()
        SingleThreadedBLAS.parallelFor(B * NH) { bh in
            let b = bh / NH, h = bh % NH
            let q = qkv + b * N * c3 + h * hs, k = q + C, v = q + 2 * C
            let dq = dQKV + b * N * c3 + h * hs, dk = dq + C, dv = dq + 2 * C
            let dO = dOut + b * N * C + h * hs
            let p = probs + bh * N * N, dp = dScores + bh * N * N
            if let dropMask, let dropped {
                // dP̃ (N, N) = dOut_h · vᵀ;  dP = dP̃ ⊙ mask (+ dProbsIn);  dV += P̃ᵀ · dOut_h
                T.gemmSmall(transA: false, transB: true, m: N, n: N, k: hs, alpha: 1, a: dO, lda: C, b: v, ldb: c3,
                       beta: 0, c: dp, ldc: N)
                let m = dropMask + bh * N * N
                for i in 0..<(N * N) { dp[i] *= m[i] }
                if let dProbsIn {
                    let e = dProbsIn + bh * N * N
                    for i in 0..<(N * N) { dp[i] += e[i] }
                }
                T.gemmSmall(transA: true, transB: false, m: N, n: hs, k: N, alpha: 1, a: dropped + bh * N * N, lda: N,
                       b: dO, ldb: C, beta: 1, c: dv, ldc: c3)
            } else {
                if let dProbsIn { dp.update(from: dProbsIn + bh * N * N, count: N * N) }
                // dP (N, N) (+)= dOut_h (N, HS; ld C) · vᵀ
                T.gemmSmall(transA: false, transB: true, m: N, n: N, k: hs, alpha: 1, a: dO, lda: C, b: v, ldb: c3,
                       beta: dProbsIn == nil ? 0 : 1, c: dp, ldc: N)
                // dV (N, HS; ld 3C) += Pᵀ · dOut_h
                T.gemmSmall(transA: true, transB: false, m: N, n: hs, k: N, alpha: 1, a: p, lda: N, b: dO, ldb: C,
                       beta: 1, c: dv, ldc: c3)
            }
            for i in 0..<N {
                let pr = p + i * N, dr = dp + i * N
                let dot = Softmax.dot(pr, UnsafePointer(dr), N)
                for j in 0..<N { dr[j] = scale * pr[j] * (dr[j] - dot) }
            }
            // dQ (N, HS; ld 3C) += dS · K
            T.gemmSmall(transA: false, transB: false, m: N, n: hs, k: N, alpha: 1, a: dp, lda: N, b: k, ldb: c3,
                   beta: 1, c: dq, ldc: c3)
            // dK (N, HS; ld 3C) += dSᵀ · Q
            T.gemmSmall(transA: true, transB: false, m: N, n: hs, k: N, alpha: 1, a: dp, lda: N, b: q, ldb: c3,
                   beta: 1, c: dk, ldc: c3)
        }
    }

    /// `backward` without dropout in fp32 on an AVX-512 CPU, the fused forward's counterpart: per (image, head) vᵀ,
    /// k, dOut_h and q are packed once; each block of ``fusedRows`` rows gets dP, dS and its dQ rows while in cache;
    /// then dV += Pᵀ·dOut_h and dK += dSᵀ·Q over the whole head.
    @usableFromInline
    static func backwardFused(_ dQKV: UnsafeMutablePointer<Float>, _ dScores: UnsafeMutablePointer<Float>,
                              _ dOut: UnsafePointer<Float>, _ dProbsIn: UnsafePointer<Float>?,
                              _ qkv: UnsafePointer<Float>, _ probs: UnsafePointer<Float>, batch B: Int, tokens N: Int,
                              channels C: Int, heads NH: Int) {
        let hs = C / NH, c3 = 3 * C
        let scale = 1 / Float(hs).squareRoot()
        let tCount = SmallGEMM.packedCount(k: hs, n: N), nCount = SmallGEMM.packedCount(k: N, n: hs)
        SingleThreadedBLAS.parallelFor(B * NH) { bh in
            let b = bh / NH, h = bh % NH
            let q = qkv + b * N * c3 + h * hs, k = q + C, v = q + 2 * C
            let dq = dQKV + b * N * c3 + h * hs, dk = dq + C, dv = dq + 2 * C
            let dO = dOut + b * N * C + h * hs
            let p = probs + bh * N * N, dp = dScores + bh * N * N
            let packed = UnsafeMutableRawPointer.allocate(byteCount: (tCount + 3 * nCount) * 4, alignment: 64)
                .assumingMemoryBound(to: Float.self)
            defer { packed.deallocate() }
            let vt = packed, kp = vt + tCount, dOp = kp + nCount, qp = dOp + nCount
            SmallGEMM.packB(vt, v, ldb: c3, transB: true, k: hs, n: N)       // vᵀ (HS, N)
            SmallGEMM.packB(kp, k, ldb: c3, transB: false, k: N, n: hs)      // k (N, HS)
            SmallGEMM.packB(dOp, dO, ldb: C, transB: false, k: N, n: hs)     // dOut_h (N, HS)
            SmallGEMM.packB(qp, q, ldb: c3, transB: false, k: N, n: hs)      // q (N, HS)
            var i0 = 0
            while i0 < N {
                let rows = min(fusedRows, N - i0)
                let dpRows = dp + i0 * N
                // dP rows (+)= dOut_h rows · vᵀ
                if let dProbsIn { dpRows.update(from: dProbsIn + bh * N * N + i0 * N, count: rows * N) }
                SmallGEMM.compute(transA: false, m: rows, n: N, k: hs, alpha: 1, a: dO + i0 * C, lda: C, packedB: vt,
                                  beta: dProbsIn == nil ? 0 : 1, c: dpRows, ldc: N)
                // dS = scale · P ⊙ (dP − rowsum(dP ⊙ P))
                for i in i0..<(i0 + rows) {
                    let pr = p + i * N, dr = dp + i * N
                    let dot = Softmax.dot(pr, UnsafePointer(dr), N)
                    for j in 0..<N { dr[j] = scale * pr[j] * (dr[j] - dot) }
                }
                // dQ rows += dS rows · K
                SmallGEMM.compute(transA: false, m: rows, n: hs, k: N, alpha: 1, a: dpRows, lda: N, packedB: kp,
                                  beta: 1, c: dq + i0 * c3, ldc: c3)
                i0 += rows
            }
            // dV += Pᵀ · dOut_h;  dK += dSᵀ · Q
            SmallGEMM.compute(transA: true, m: N, n: hs, k: N, alpha: 1, a: p, lda: N, packedB: dOp, beta: 1, c: dv,
                              ldc: c3)
            SmallGEMM.compute(transA: true, m: N, n: hs, k: N, alpha: 1, a: dp, lda: N, packedB: qp, beta: 1, c: dk,
                              ldc: c3)
        }
    }

    /// Naive reference (loops, no BLAS) for tests: same contract as `forward`.
    public static func naiveForward<T: NNScalar>(_ out: UnsafeMutablePointer<T>, _ probs: UnsafeMutablePointer<T>,
                                                 _ qkv: UnsafePointer<T>, batch B: Int, tokens N: Int,
                                                 channels C: Int, heads NH: Int) {
        let hs = C / NH, c3 = 3 * C
        let scale = 1 / T(hs).squareRoot()
        for b in 0..<B {
            for h in 0..<NH {
                let p = probs + (b * NH + h) * N * N
                for i in 0..<N {
                    for j in 0..<N {
                        var s: T = 0
                        for d in 0..<hs { s += qkv[(b * N + i) * c3 + h * hs + d] * qkv[(b * N + j) * c3 + C + h * hs + d] }
                        p[i * N + j] = s * scale
                    }
                    Softmax.forwardRow(p + i * N, p + i * N, length: N, scale: 1)
                    for d in 0..<hs {
                        var s: T = 0
                        for j in 0..<N { s += p[i * N + j] * qkv[(b * N + j) * c3 + 2 * C + h * hs + d] }
                        out[(b * N + i) * C + h * hs + d] = s
                    }
                }
            }
        }
    }
}

/// Runs small independent GEMM chains in parallel: `body(i)` for `i` in `0..<count` on ``parallelFor(_:minChunk:_:)``
/// workers, each calling BLAS itself, with OpenBLAS switched to one thread for the duration (the exception to the
/// rule in ``Parallel``: the machine stays at `Parallel.threads` busy threads). The previous OpenBLAS thread count
/// is restored when the last concurrent caller leaves (callers may overlap, e.g. concurrent tests).
public enum SingleThreadedBLAS {
    @usableFromInline static let lock = NSLock()
    @usableFromInline nonisolated(unsafe) static var depth = 0
    @usableFromInline nonisolated(unsafe) static var saved = 1

    @inlinable
    public static func parallelFor(_ count: Int, _ body: (Int) -> Void) {
        guard Parallel.threads > 1, count > 1, !Parallel.isSerialThread else {
            for i in 0..<count { body(i) }
            return
        }
        enter()
        defer { leave() }
        PatchGuardCore.parallelFor(count, body)
    }

    /// Runs `body(w, share)` for each of `shares` (contiguous ranges of independent items, e.g. the images of a
    /// batch) on its own worker, concurrently, with OpenBLAS at one thread and every `parallelFor` inside a share
    /// inline (``Parallel/runSerially(_:)``): the data-parallel alternative to multi-threaded GEMMs for a model
    /// whose products are too small to split well. One share runs on the calling thread as is.
    public static func parallelShares(_ shares: [Range<Int>], _ body: (Int, Range<Int>) -> Void) {
        guard shares.count > 1, !Parallel.isSerialThread else {
            for (w, r) in shares.enumerated() { body(w, r) }
            return
        }
        enter()
        defer { leave() }
        withoutActuallyEscaping(body) { body in
            DispatchQueue.concurrentPerform(iterations: shares.count) { w in
                Parallel.runSerially { body(w, shares[w]) }
            }
        }
    }

    /// Runs `body` with OpenBLAS at one thread throughout (a sequence of ``parallelShares(_:_:)`` calls then
    /// does not switch the thread count back and forth between them).
    public static func region<R>(_ body: () throws -> R) rethrows -> R {
        enter()
        defer { leave() }
        return try body()
    }

    @usableFromInline static func enter() {
        lock.lock(); defer { lock.unlock() }
        if depth == 0 {
            saved = OpenBLAS.threadCount
            OpenBLAS.setThreads(1)
        }
        depth += 1
    }

    @usableFromInline static func leave() {
        lock.lock(); defer { lock.unlock() }
        depth -= 1
        if depth == 0 { OpenBLAS.setThreads(saved) }
    }
}
