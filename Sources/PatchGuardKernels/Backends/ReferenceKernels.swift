import Foundation
import PatchGuardCore

/// The reference backend: every requirement of ``Kernels`` as plain loops straight from the maths (no BLAS, no
/// threads, libm `exp`/`erf` for both scalars). Slow; tests compare every other backend with it, and it documents
/// what a new backend must compute. Concrete classes per scalar as for the CPU backend.
public protocol ReferenceKernelsBase: Kernels {}

public final class ReferenceKernelsFloat: ReferenceKernelsBase, @unchecked Sendable {
    public typealias Scalar = Float
    public static let shared = ReferenceKernelsFloat()
    public init() {}
}

public final class ReferenceKernelsDouble: ReferenceKernelsBase, @unchecked Sendable {
    public typealias Scalar = Double
    public static let shared = ReferenceKernelsDouble()
    public init() {}
}

extension ReferenceKernelsBase {
    public var name: String { "reference" }
    public var allocator: any BufferAllocator { HostAllocator.shared }

    // MARK: buffers

    public func zero(_ x: UnsafeMutablePointer<Scalar>, count: Int) { for i in 0..<count { x[i] = 0 } }
    public func fill(_ x: UnsafeMutablePointer<Scalar>, value: Scalar, count: Int) { for i in 0..<count { x[i] = value } }
    public func copy(_ dst: UnsafeMutablePointer<Scalar>, _ src: UnsafePointer<Scalar>, count: Int) {
        for i in 0..<count { dst[i] = src[i] }
    }
    public func addInto(_ dst: UnsafeMutablePointer<Scalar>, _ src: UnsafePointer<Scalar>, count: Int) {
        for i in 0..<count { dst[i] += src[i] }
    }
    public func copy2D(_ dst: UnsafeMutablePointer<Scalar>, dstStride: Int, _ src: UnsafePointer<Scalar>,
                       srcStride: Int, rows: Int, columns: Int) {
        for r in 0..<rows { for j in 0..<columns { dst[r * dstStride + j] = src[r * srcStride + j] } }
    }
    public func broadcastAdd(_ out: UnsafeMutablePointer<Scalar>, _ x: UnsafePointer<Scalar>,
                             _ y: UnsafePointer<Scalar>, batch: Int, count: Int) {
        for b in 0..<batch { for i in 0..<count { out[b * count + i] = x[b * count + i] + y[i] } }
    }
    public func batchSumInto(_ dst: UnsafeMutablePointer<Scalar>, _ src: UnsafePointer<Scalar>, batch: Int,
                             count: Int) {
        for b in 0..<batch { for i in 0..<count { dst[i] += src[b * count + i] } }
    }

    // MARK: layers

    public func linearForward(_ out: UnsafeMutablePointer<Scalar>, _ x: UnsafePointer<Scalar>,
                              _ weight: UnsafePointer<Scalar>, _ bias: UnsafePointer<Scalar>?, rows: Int,
                              inFeatures ic: Int, outFeatures oc: Int) {
        for r in 0..<rows {
            for o in 0..<oc {
                var s: Scalar = bias?[o] ?? 0
                for i in 0..<ic { s += x[r * ic + i] * weight[o * ic + i] }
                out[r * oc + o] = s
            }
        }
    }

    public func linearBackward(_ dX: UnsafeMutablePointer<Scalar>?, _ dWeight: UnsafeMutablePointer<Scalar>?,
                               _ dBias: UnsafeMutablePointer<Scalar>?, _ dOut: UnsafePointer<Scalar>,
                               _ x: UnsafePointer<Scalar>, _ weight: UnsafePointer<Scalar>, rows: Int,
                               inFeatures ic: Int, outFeatures oc: Int) {
        for r in 0..<rows {
            for o in 0..<oc {
                let g = dOut[r * oc + o]
                if let dBias { dBias[o] += g }
                for i in 0..<ic {
                    if let dX { dX[r * ic + i] += g * weight[o * ic + i] }
                    if let dWeight { dWeight[o * ic + i] += g * x[r * ic + i] }
                }
            }
        }
    }

    public func layerNormForward(_ out: UnsafeMutablePointer<Scalar>, _ mean: UnsafeMutablePointer<Scalar>,
                                 _ rstd: UnsafeMutablePointer<Scalar>, _ x: UnsafePointer<Scalar>,
                                 _ weight: UnsafePointer<Scalar>, _ bias: UnsafePointer<Scalar>, rows: Int,
                                 channels c: Int, eps: Scalar) {
        for r in 0..<rows {
            var s: Scalar = 0
            for i in 0..<c { s += x[r * c + i] }
            let m = s / Scalar(c)
            var v: Scalar = 0
            for i in 0..<c { v += (x[r * c + i] - m) * (x[r * c + i] - m) }
            let rs = 1 / (v / Scalar(c) + eps).squareRoot()
            for i in 0..<c { out[r * c + i] = (x[r * c + i] - m) * rs * weight[i] + bias[i] }
            mean[r] = m; rstd[r] = rs
        }
    }

    public func layerNormBackward(_ dX: UnsafeMutablePointer<Scalar>?, _ dWeight: UnsafeMutablePointer<Scalar>?,
                                  _ dBias: UnsafeMutablePointer<Scalar>?, _ dOut: UnsafePointer<Scalar>,
                                  _ x: UnsafePointer<Scalar>, _ weight: UnsafePointer<Scalar>,
                                  _ mean: UnsafePointer<Scalar>, _ rstd: UnsafePointer<Scalar>, rows: Int,
                                  channels c: Int) {
        for r in 0..<rows {
            let m = mean[r], rs = rstd[r]
            var gMean: Scalar = 0, gxMean: Scalar = 0
            for i in 0..<c {
                let xh = (x[r * c + i] - m) * rs, g = dOut[r * c + i]
                gMean += g * weight[i]; gxMean += g * weight[i] * xh
                if let dWeight { dWeight[i] += g * xh }
                if let dBias { dBias[i] += g }
            }
            gMean /= Scalar(c); gxMean /= Scalar(c)
            if let dX {
                for i in 0..<c {
                    let xh = (x[r * c + i] - m) * rs
                    dX[r * c + i] += rs * (dOut[r * c + i] * weight[i] - gMean - xh * gxMean)
                }
            }
        }
    }

    public func layerNormStridedForward(_ out: UnsafeMutablePointer<Scalar>, _ mean: UnsafeMutablePointer<Scalar>,
                                        _ rstd: UnsafeMutablePointer<Scalar>, _ x: UnsafePointer<Scalar>,
                                        _ weight: UnsafePointer<Scalar>, _ bias: UnsafePointer<Scalar>, batch: Int,
                                        rows: Int, inputBatchStride: Int, channels c: Int, eps: Scalar) {
        for b in 0..<batch {
            layerNormForward(out + b * rows * c, mean + b * rows, rstd + b * rows, x + b * inputBatchStride,
                             weight, bias, rows: rows, channels: c, eps: eps)
        }
    }

    public func layerNormStridedBackward(_ dX: UnsafeMutablePointer<Scalar>?,
                                         _ dWeight: UnsafeMutablePointer<Scalar>?,
                                         _ dBias: UnsafeMutablePointer<Scalar>?, _ dOut: UnsafePointer<Scalar>,
                                         _ x: UnsafePointer<Scalar>, _ weight: UnsafePointer<Scalar>,
                                         _ mean: UnsafePointer<Scalar>, _ rstd: UnsafePointer<Scalar>, batch: Int,
                                         rows: Int, inputBatchStride: Int, channels c: Int) {
        for b in 0..<batch {
            layerNormBackward(dX.map { $0 + b * inputBatchStride }, dWeight, dBias, dOut + b * rows * c,
                              x + b * inputBatchStride, weight, mean + b * rows, rstd + b * rows, rows: rows,
                              channels: c)
        }
    }

    public func attentionForward(_ out: UnsafeMutablePointer<Scalar>, _ probs: UnsafeMutablePointer<Scalar>,
                                 _ qkv: UnsafePointer<Scalar>, batch B: Int, tokens N: Int, channels C: Int,
                                 heads NH: Int, dropMask: UnsafePointer<Scalar>?,
                                 dropped: UnsafeMutablePointer<Scalar>?) {
        precondition((dropMask == nil) == (dropped == nil), "attention dropout needs both a mask and a buffer")
        let hs = C / NH, c3 = 3 * C
        let scale = 1 / Scalar(hs).squareRoot()
        for b in 0..<B {
            for h in 0..<NH {
                let bh = b * NH + h
                let p = probs + bh * N * N
                func q(_ i: Int, _ d: Int) -> Scalar { qkv[(b * N + i) * c3 + h * hs + d] }
                func k(_ i: Int, _ d: Int) -> Scalar { qkv[(b * N + i) * c3 + C + h * hs + d] }
                func v(_ i: Int, _ d: Int) -> Scalar { qkv[(b * N + i) * c3 + 2 * C + h * hs + d] }
                for i in 0..<N {
                    for j in 0..<N {
                        var s: Scalar = 0
                        for d in 0..<hs { s += q(i, d) * k(j, d) }
                        p[i * N + j] = s * scale
                    }
                    softmaxForward(p + i * N, p + i * N, rows: 1, length: N)
                    for j in 0..<N {
                        if let dropMask, let dropped { dropped[bh * N * N + i * N + j] = p[i * N + j] * dropMask[bh * N * N + i * N + j] }
                    }
                    for d in 0..<hs {
                        var s: Scalar = 0
                        for j in 0..<N {
                            let w = dropped.map { $0[bh * N * N + i * N + j] } ?? p[i * N + j]
                            s += w * v(j, d)
                        }
                        out[(b * N + i) * C + h * hs + d] = s
                    }
                }
            }
        }
    }

    public func attentionBackward(_ dQKV: UnsafeMutablePointer<Scalar>, _ dScores: UnsafeMutablePointer<Scalar>,
                                  _ dOut: UnsafePointer<Scalar>, _ dProbs: UnsafePointer<Scalar>?,
                                  _ qkv: UnsafePointer<Scalar>, _ probs: UnsafePointer<Scalar>, batch B: Int,
                                  tokens N: Int, channels C: Int, heads NH: Int, dropMask: UnsafePointer<Scalar>?,
                                  dropped: UnsafePointer<Scalar>?) {
        precondition((dropMask == nil) == (dropped == nil), "attention dropout needs both a mask and a buffer")
        let hs = C / NH, c3 = 3 * C
        let scale = 1 / Scalar(hs).squareRoot()
        for b in 0..<B {
            for h in 0..<NH {
                let bh = b * NH + h, base = bh * N * N
                func at(_ i: Int, _ part: Int, _ d: Int) -> Int { (b * N + i) * c3 + part * C + h * hs + d }
                let ds = dScores + base
                // dP[i, j] = (Σ_d dOut[i, d]·v[j, d])·mask (+ dProbs);  dV[j, d] += Σ_i P̃[i, j]·dOut[i, d]
                for i in 0..<N {
                    for j in 0..<N {
                        var s: Scalar = 0
                        for d in 0..<hs { s += dOut[(b * N + i) * C + h * hs + d] * qkv[at(j, 2, d)] }
                        if let dropMask { s *= dropMask[base + i * N + j] }
                        ds[i * N + j] = s + (dProbs?[base + i * N + j] ?? 0)
                        let w = dropped?[base + i * N + j] ?? probs[base + i * N + j]
                        for d in 0..<hs { dQKV[at(j, 2, d)] += w * dOut[(b * N + i) * C + h * hs + d] }
                    }
                }
                // dS = scale·P ⊙ (dP − rowsum(dP ⊙ P));  dQ += dS·K;  dK += dSᵀ·Q
                for i in 0..<N {
                    var dot: Scalar = 0
                    for j in 0..<N { dot += probs[base + i * N + j] * ds[i * N + j] }
                    for j in 0..<N { ds[i * N + j] = scale * probs[base + i * N + j] * (ds[i * N + j] - dot) }
                    for j in 0..<N {
                        for d in 0..<hs {
                            dQKV[at(i, 0, d)] += ds[i * N + j] * qkv[at(j, 1, d)]
                            dQKV[at(j, 1, d)] += ds[i * N + j] * qkv[at(i, 0, d)]
                        }
                    }
                }
            }
        }
    }

    public func softmaxForward(_ out: UnsafeMutablePointer<Scalar>, _ x: UnsafePointer<Scalar>, rows: Int,
                               length L: Int) {
        for r in 0..<rows {
            var mx = -Scalar.infinity
            for j in 0..<L { mx = max(mx, x[r * L + j]) }
            var sum: Scalar = 0
            for j in 0..<L { let e = Scalar.exp(x[r * L + j] - mx); out[r * L + j] = e; sum += e }
            for j in 0..<L { out[r * L + j] /= sum }
        }
    }

    public func softmaxBackward(_ dX: UnsafeMutablePointer<Scalar>, _ dOut: UnsafePointer<Scalar>,
                                _ y: UnsafePointer<Scalar>, rows: Int, length L: Int) {
        for r in 0..<rows {
            var dot: Scalar = 0
            for j in 0..<L { dot += y[r * L + j] * dOut[r * L + j] }
            for j in 0..<L { dX[r * L + j] += y[r * L + j] * (dOut[r * L + j] - dot) }
        }
    }

    public func geluForward(_ out: UnsafeMutablePointer<Scalar>, _ x: UnsafePointer<Scalar>, count: Int) {
        for i in 0..<count { out[i] = x[i] * Scalar(0.5) * (1 + Scalar.erf(x[i] / Scalar(2).squareRoot())) }
    }

    public func geluBackward(_ dX: UnsafeMutablePointer<Scalar>, _ dOut: UnsafePointer<Scalar>,
                             _ x: UnsafePointer<Scalar>, count: Int) {
        for i in 0..<count {
            let v = x[i]
            let cdf = Scalar(0.5) * (1 + Scalar.erf(v / Scalar(2).squareRoot()))
            let pdf = Scalar.exp(-v * v / 2) / (2 * Scalar.pi).squareRoot()
            dX[i] += dOut[i] * (cdf + v * pdf)
        }
    }

    public func residualForward(_ out: UnsafeMutablePointer<Scalar>, _ a: UnsafePointer<Scalar>,
                                _ x: UnsafePointer<Scalar>, _ gamma: UnsafePointer<Scalar>?, rows: Int,
                                channels c: Int) {
        for r in 0..<rows { for i in 0..<c { out[r * c + i] = a[r * c + i] + (gamma?[i] ?? 1) * x[r * c + i] } }
    }

    public func residualBackward(_ dA: UnsafeMutablePointer<Scalar>?, _ dX: UnsafeMutablePointer<Scalar>?,
                                 _ dGamma: UnsafeMutablePointer<Scalar>?, _ dOut: UnsafePointer<Scalar>,
                                 _ x: UnsafePointer<Scalar>, _ gamma: UnsafePointer<Scalar>?, rows: Int,
                                 channels c: Int) {
        for r in 0..<rows {
            for i in 0..<c {
                let g = dOut[r * c + i]
                dA?[r * c + i] += g
                dX?[r * c + i] += (gamma?[i] ?? 1) * g
                dGamma?[i] += g * x[r * c + i]
            }
        }
    }

    public func patchEmbedForward(_ out: UnsafeMutablePointer<Scalar>, _ cols: UnsafeMutablePointer<Scalar>,
                                  _ x: UnsafePointer<Scalar>, _ weight: UnsafePointer<Scalar>,
                                  _ bias: UnsafePointer<Scalar>?, batch B: Int, inChannels CI: Int, height H: Int,
                                  width W: Int, patch P: Int, channels C: Int) {
        let gw = W / P, np = (H / P) * gw, k = CI * P * P
        for b in 0..<B {
            for p in 0..<np {
                let gy = p / gw, gx = p % gw
                for ci in 0..<CI { for ky in 0..<P { for kx in 0..<P {
                    cols[(b * np + p) * k + (ci * P + ky) * P + kx] = x[((b * CI + ci) * H + gy * P + ky) * W + gx * P + kx]
                } } }
            }
        }
        linearForward(out, cols, weight, bias, rows: B * np, inFeatures: k, outFeatures: C)
    }

    public func patchEmbedBackward(_ dX: UnsafeMutablePointer<Scalar>?, _ dWeight: UnsafeMutablePointer<Scalar>?,
                                   _ dBias: UnsafeMutablePointer<Scalar>?, _ dCols: UnsafeMutablePointer<Scalar>,
                                   _ dOut: UnsafePointer<Scalar>, _ cols: UnsafePointer<Scalar>,
                                   _ weight: UnsafePointer<Scalar>, batch B: Int, inChannels CI: Int, height H: Int,
                                   width W: Int, patch P: Int, channels C: Int) {
        let gw = W / P, np = (H / P) * gw, k = CI * P * P
        linearBackward(nil, dWeight, dBias, dOut, cols, weight, rows: B * np, inFeatures: k, outFeatures: C)
        guard let dX else { return }
        zero(dCols, count: B * np * k)
        linearBackward(dCols, nil, nil, dOut, cols, weight, rows: B * np, inFeatures: k, outFeatures: C)
        for b in 0..<B {
            for p in 0..<np {
                let gy = p / gw, gx = p % gw
                for ci in 0..<CI { for ky in 0..<P { for kx in 0..<P {
                    dX[((b * CI + ci) * H + gy * P + ky) * W + gx * P + kx] += dCols[(b * np + p) * k + (ci * P + ky) * P + kx]
                } } }
            }
        }
    }

    public func tokenEmbedForward(_ out: UnsafeMutablePointer<Scalar>, _ patches: UnsafePointer<Scalar>,
                                  _ cls: UnsafePointer<Scalar>, _ reg: UnsafePointer<Scalar>?,
                                  _ pos: UnsafePointer<Scalar>, batch B: Int, patches np: Int, registers R: Int,
                                  channels C: Int, noEmbedClass: Bool) {
        let n = 1 + R + np
        for b in 0..<B {
            for t in 0..<n {
                for i in 0..<C {
                    let v = t == 0 ? cls[i] : t <= R ? reg![(t - 1) * C + i] : patches[(b * np + t - 1 - R) * C + i]
                    let e: Scalar = noEmbedClass ? (t <= R ? 0 : pos[(t - 1 - R) * C + i]) : pos[t * C + i]
                    out[(b * n + t) * C + i] = v + e
                }
            }
        }
    }

    public func tokenEmbedBackward(_ dPatches: UnsafeMutablePointer<Scalar>?, _ dCls: UnsafeMutablePointer<Scalar>?,
                                   _ dReg: UnsafeMutablePointer<Scalar>?, _ dPos: UnsafeMutablePointer<Scalar>?,
                                   _ dOut: UnsafePointer<Scalar>, batch B: Int, patches np: Int, registers R: Int,
                                   channels C: Int, noEmbedClass: Bool) {
        let n = 1 + R + np
        for b in 0..<B {
            for t in 0..<n {
                for i in 0..<C {
                    let g = dOut[(b * n + t) * C + i]
                    if t == 0 { dCls?[i] += g } else if t <= R { dReg?[(t - 1) * C + i] += g } else {
                        dPatches?[(b * np + t - 1 - R) * C + i] += g
                    }
                    if noEmbedClass { if t > R { dPos?[(t - 1 - R) * C + i] += g } } else { dPos?[t * C + i] += g }
                }
            }
        }
    }

    public func inputNormalizationForward(_ out: UnsafeMutablePointer<Scalar>, _ x: UnsafePointer<Scalar>,
                                          batch: Int, pixels: Int, mean: [Double], std: [Double]) {
        let ci = mean.count
        for plane in 0..<(batch * ci) {
            for i in 0..<pixels {
                out[plane * pixels + i] = (x[plane * pixels + i] - Scalar(mean[plane % ci])) / Scalar(std[plane % ci])
            }
        }
    }

    public func inputNormalizationBackward(_ dX: UnsafeMutablePointer<Scalar>, _ dOut: UnsafePointer<Scalar>,
                                           batch: Int, pixels: Int, std: [Double]) {
        let ci = std.count
        for plane in 0..<(batch * ci) {
            for i in 0..<pixels { dX[plane * pixels + i] += dOut[plane * pixels + i] / Scalar(std[plane % ci]) }
        }
    }

    public func dropoutMask(_ mask: UnsafeMutablePointer<Scalar>, count: Int, p: Double,
                            using rng: inout SeededRNG) {
        // The same draws as every backend (one uniform per element when p > 0), so results are comparable.
        for i in 0..<count { mask[i] = p > 0 && rng.uniform() < p ? 0 : Scalar(1 / (1 - p)) }
    }

    public func dropoutForward(_ out: UnsafeMutablePointer<Scalar>, _ mask: UnsafePointer<Scalar>,
                               _ x: UnsafePointer<Scalar>, count: Int) {
        for i in 0..<count { out[i] = x[i] * mask[i] }
    }

    public func dropoutBackward(_ dX: UnsafeMutablePointer<Scalar>, _ dOut: UnsafePointer<Scalar>,
                                _ mask: UnsafePointer<Scalar>, count: Int) {
        for i in 0..<count { dX[i] += dOut[i] * mask[i] }
    }

    // MARK: convolutional layers (direct loops: no im2col, no GEMM)

    public func conv2dForward(_ out: UnsafeMutablePointer<Scalar>, _ cols: UnsafeMutablePointer<Scalar>,
                              _ x: UnsafePointer<Scalar>, _ weight: UnsafePointer<Scalar>,
                              _ bias: UnsafePointer<Scalar>?, batch: Int, inChannels CI: Int, height H: Int,
                              width W: Int, outChannels OC: Int, kernel K: Int, stride S: Int, padding Pd: Int) {
        let OH = (H + 2 * Pd - K) / S + 1, OW = (W + 2 * Pd - K) / S + 1
        for b in 0..<batch {
            for o in 0..<OC {
                for oy in 0..<OH {
                    for ox in 0..<OW {
                        var s: Scalar = bias?[o] ?? 0
                        for ci in 0..<CI {
                            for ky in 0..<K {
                                let iy = oy * S - Pd + ky
                                if iy < 0 || iy >= H { continue }
                                for kx in 0..<K {
                                    let ix = ox * S - Pd + kx
                                    if ix < 0 || ix >= W { continue }
                                    s += x[((b * CI + ci) * H + iy) * W + ix] * weight[((o * CI + ci) * K + ky) * K + kx]
                                }
                            }
                        }
                        out[((b * OC + o) * OH + oy) * OW + ox] = s
                    }
                }
            }
        }
    }

    public func conv2dBackward(_ dX: UnsafeMutablePointer<Scalar>?, _ dWeight: UnsafeMutablePointer<Scalar>?,
                               _ dBias: UnsafeMutablePointer<Scalar>?, _ cols: UnsafeMutablePointer<Scalar>,
                               _ dCols: UnsafeMutablePointer<Scalar>, _ dOut: UnsafePointer<Scalar>,
                               _ x: UnsafePointer<Scalar>, _ weight: UnsafePointer<Scalar>, batch: Int,
                               inChannels CI: Int, height H: Int, width W: Int, outChannels OC: Int, kernel K: Int,
                               stride S: Int, padding Pd: Int) {
        let OH = (H + 2 * Pd - K) / S + 1, OW = (W + 2 * Pd - K) / S + 1
        for b in 0..<batch {
            for o in 0..<OC {
                for oy in 0..<OH {
                    for ox in 0..<OW {
                        let g = dOut[((b * OC + o) * OH + oy) * OW + ox]
                        if let dBias { dBias[o] += g }
                        for ci in 0..<CI {
                            for ky in 0..<K {
                                let iy = oy * S - Pd + ky
                                if iy < 0 || iy >= H { continue }
                                for kx in 0..<K {
                                    let ix = ox * S - Pd + kx
                                    if ix < 0 || ix >= W { continue }
                                    let xi = ((b * CI + ci) * H + iy) * W + ix, wi = ((o * CI + ci) * K + ky) * K + kx
                                    if let dX { dX[xi] += g * weight[wi] }
                                    if let dWeight { dWeight[wi] += g * x[xi] }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    public func groupNormForward(_ out: UnsafeMutablePointer<Scalar>, _ mean: UnsafeMutablePointer<Scalar>,
                                 _ rstd: UnsafeMutablePointer<Scalar>, _ x: UnsafePointer<Scalar>,
                                 _ weight: UnsafePointer<Scalar>, _ bias: UnsafePointer<Scalar>, batch: Int,
                                 channels C: Int, groups G: Int, pixels HW: Int, eps: Scalar) {
        let cg = C / G, n = cg * HW
        for bg in 0..<(batch * G) {
            var s: Scalar = 0
            for i in 0..<n { s += x[bg * n + i] }
            let m = s / Scalar(n)
            var v: Scalar = 0
            for i in 0..<n { v += (x[bg * n + i] - m) * (x[bg * n + i] - m) }
            let rs = 1 / (v / Scalar(n) + eps).squareRoot()
            for i in 0..<n {
                let c = (bg % G) * cg + i / HW
                out[bg * n + i] = (x[bg * n + i] - m) * rs * weight[c] + bias[c]
            }
            mean[bg] = m; rstd[bg] = rs
        }
    }

    public func groupNormBackward(_ dX: UnsafeMutablePointer<Scalar>?, _ dWeight: UnsafeMutablePointer<Scalar>?,
                                  _ dBias: UnsafeMutablePointer<Scalar>?, _ dOut: UnsafePointer<Scalar>,
                                  _ x: UnsafePointer<Scalar>, _ weight: UnsafePointer<Scalar>,
                                  _ mean: UnsafePointer<Scalar>, _ rstd: UnsafePointer<Scalar>, batch: Int,
                                  channels C: Int, groups G: Int, pixels HW: Int) {
        let cg = C / G, n = cg * HW
        for bg in 0..<(batch * G) {
            let m = mean[bg], rs = rstd[bg]
            var gMean: Scalar = 0, gxMean: Scalar = 0
            for i in 0..<n {
                let c = (bg % G) * cg + i / HW
                let xh = (x[bg * n + i] - m) * rs, g = dOut[bg * n + i]
                gMean += g * weight[c]; gxMean += g * weight[c] * xh
                if let dWeight { dWeight[c] += g * xh }
                if let dBias { dBias[c] += g }
            }
            gMean /= Scalar(n); gxMean /= Scalar(n)
            if let dX {
                for i in 0..<n {
                    let c = (bg % G) * cg + i / HW
                    let xh = (x[bg * n + i] - m) * rs
                    dX[bg * n + i] += rs * (dOut[bg * n + i] * weight[c] - gMean - xh * gxMean)
                }
            }
        }
    }

    public func siluForward(_ out: UnsafeMutablePointer<Scalar>, _ x: UnsafePointer<Scalar>, count: Int) {
        for i in 0..<count { out[i] = x[i] / (1 + Scalar(Foundation.exp(-Double(x[i])))) }
    }

    public func siluBackward(_ dX: UnsafeMutablePointer<Scalar>, _ dOut: UnsafePointer<Scalar>,
                             _ x: UnsafePointer<Scalar>, count: Int) {
        for i in 0..<count {
            let s = 1 / (1 + Scalar(Foundation.exp(-Double(x[i]))))
            dX[i] += dOut[i] * (s + x[i] * s * (1 - s))
        }
    }

    public func upsampleNearest2xForward(_ out: UnsafeMutablePointer<Scalar>, _ x: UnsafePointer<Scalar>,
                                         planes: Int, height H: Int, width W: Int) {
        for r in 0..<planes {
            for y in 0..<(2 * H) { for xx in 0..<(2 * W) { out[(r * 2 * H + y) * 2 * W + xx] = x[(r * H + y / 2) * W + xx / 2] } }
        }
    }

    public func upsampleNearest2xBackward(_ dX: UnsafeMutablePointer<Scalar>, _ dOut: UnsafePointer<Scalar>,
                                          planes: Int, height H: Int, width W: Int) {
        for r in 0..<planes {
            for y in 0..<(2 * H) { for xx in 0..<(2 * W) { dX[(r * H + y / 2) * W + xx / 2] += dOut[(r * 2 * H + y) * 2 * W + xx] } }
        }
    }

    public func transposeForward(_ out: UnsafeMutablePointer<Scalar>, _ x: UnsafePointer<Scalar>, batch: Int,
                                 rows: Int, cols: Int) {
        for b in 0..<batch { for i in 0..<rows { for j in 0..<cols { out[(b * cols + j) * rows + i] = x[(b * rows + i) * cols + j] } } }
    }

    public func transposeBackward(_ dX: UnsafeMutablePointer<Scalar>, _ dOut: UnsafePointer<Scalar>, batch: Int,
                                  rows: Int, cols: Int) {
        for b in 0..<batch { for i in 0..<rows { for j in 0..<cols { dX[(b * rows + i) * cols + j] += dOut[(b * cols + j) * rows + i] } } }
    }

    public func channelAddForward(_ out: UnsafeMutablePointer<Scalar>, _ x: UnsafePointer<Scalar>,
                                  _ t: UnsafePointer<Scalar>, batch: Int, channels C: Int, pixels HW: Int) {
        for bc in 0..<(batch * C) { for p in 0..<HW { out[bc * HW + p] = x[bc * HW + p] + t[bc] } }
    }

    public func channelAddBackward(_ dX: UnsafeMutablePointer<Scalar>?, _ dT: UnsafeMutablePointer<Scalar>?,
                                   _ dOut: UnsafePointer<Scalar>, batch: Int, channels C: Int, pixels HW: Int) {
        for bc in 0..<(batch * C) {
            for p in 0..<HW {
                if let dX { dX[bc * HW + p] += dOut[bc * HW + p] }
                if let dT { dT[bc] += dOut[bc * HW + p] }
            }
        }
    }

    public func addInto2D(_ dst: UnsafeMutablePointer<Scalar>, dstStride: Int, _ src: UnsafePointer<Scalar>,
                          srcStride: Int, rows: Int, columns: Int) {
        for r in 0..<rows { for j in 0..<columns { dst[r * dstStride + j] += src[r * srcStride + j] } }
    }

    public func timestepEmbedding(_ out: UnsafeMutablePointer<Scalar>, timesteps: [Double], dim D: Int,
                                  flipSinToCos: Bool, downscaleFreqShift: Double) {
        let half = D / 2
        for (b, t) in timesteps.enumerated() {
            for i in 0..<half {
                let a = t * Foundation.exp(-Foundation.log(10000.0) * Double(i) / (Double(half) - downscaleFreqShift))
                let (first, second) = flipSinToCos ? (Foundation.cos(a), Foundation.sin(a)) : (Foundation.sin(a), Foundation.cos(a))
                out[b * D + i] = Scalar(first); out[b * D + half + i] = Scalar(second)
            }
            if D % 2 == 1 { out[b * D + D - 1] = 0 }
        }
    }

    // MARK: losses and optimizer

    public func patchBCEForward(_ logits: UnsafePointer<Scalar>, _ labels: UnsafePointer<Scalar>, batch: Int,
                                patches: Int) -> Double {
        var total = 0.0
        for i in 0..<(batch * patches) {
            let x = Double(logits[i]), y = Double(labels[i])
            total += max(x, 0) - x * y + Double.log(1 + Double.exp(-abs(x)))
        }
        return total / Double(batch)
    }

    public func patchBCEBackward(_ dLogits: UnsafeMutablePointer<Scalar>, _ logits: UnsafePointer<Scalar>,
                                 _ labels: UnsafePointer<Scalar>, batch: Int, patches: Int, weight: Double) {
        for i in 0..<(batch * patches) {
            dLogits[i] += Scalar(weight) / Scalar(batch) * (1 / (1 + Scalar.exp(-logits[i])) - labels[i])
        }
    }

    public func attentionKLForward(_ probs: UnsafePointer<Scalar>, batch: Int, heads: Int, tokens N: Int,
                                   prefix s: Int) -> Double {
        let np = N - s, u = 1 / Double(np)
        var total = 0.0
        for bh in 0..<(batch * heads) {
            for i in s..<N { for j in s..<N {
                total += u * (Double.log(u) - Double.log(Double(probs[(bh * N + i) * N + j]) + AttentionKL.logEpsilon))
            } }
        }
        return total / Double(batch * heads * np * np)
    }

    public func attentionKLBackward(_ dProbs: UnsafeMutablePointer<Scalar>, _ probs: UnsafePointer<Scalar>,
                                    batch: Int, heads: Int, tokens N: Int, prefix s: Int, weight: Double) {
        let np = N - s
        let coef = -weight / Double(np) / Double(batch * heads * np * np)
        for bh in 0..<(batch * heads) {
            for i in s..<N { for j in s..<N {
                let k = (bh * N + i) * N + j
                dProbs[k] += Scalar(coef) / (probs[k] + Scalar(AttentionKL.logEpsilon))
            } }
        }
    }

    public func adamWUpdate(_ params: UnsafeMutablePointer<Scalar>, _ m: UnsafeMutablePointer<Scalar>,
                            _ v: UnsafeMutablePointer<Scalar>, _ grads: UnsafePointer<Scalar>, count: Int, lr: Double,
                            beta1: Double, beta2: Double, eps: Double, weightDecay: Double, step: Int) {
        let c1 = 1 / (1 - Foundation.pow(beta1, Double(step))), c2 = 1 / (1 - Foundation.pow(beta2, Double(step)))
        for i in 0..<count {
            let g = grads[i]
            m[i] = Scalar(beta1) * m[i] + Scalar(1 - beta1) * g
            v[i] = Scalar(beta2) * v[i] + Scalar(1 - beta2) * g * g
            let mh = m[i] * Scalar(c1), vh = v[i] * Scalar(c2)
            params[i] = params[i] * Scalar(1 - lr * weightDecay) - Scalar(lr) * mh / (vh.squareRoot() + Scalar(eps))
        }
    }
}
