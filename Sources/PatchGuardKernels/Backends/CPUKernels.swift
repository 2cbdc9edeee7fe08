#if canImport(Glibc)
import Glibc
#else
import Foundation
#endif
import PatchGuardCore

/// The CPU backend: each requirement is the `@inlinable` op body (OpenBLAS GEMMs, vectorised loops on
/// ``parallelFor(_:minChunk:_:)``), with the numerics the project has always had.
///
/// Specialisation (STYLE.md "a missed specialisation costs 10–100×"): the shared bodies live in this protocol
/// extension and each scalar has its own concrete final class (``CPUKernelsFloat``, ``CPUKernelsDouble``) in this
/// module, so the compiler specialises every witness for `Float`/`Double` here; callers in other modules reach the
/// specialised code through the witness table of `any Kernels<T>`, never the generic body.
public protocol CPUKernelsBase: Kernels {}

public final class CPUKernelsFloat: CPUKernelsBase, @unchecked Sendable {
    public typealias Scalar = Float
    public static let shared = CPUKernelsFloat()
    public init() {}
}

public final class CPUKernelsDouble: CPUKernelsBase, @unchecked Sendable {
    public typealias Scalar = Double
    public static let shared = CPUKernelsDouble()
    public init() {}
}

extension CPUKernelsBase {
    public var name: String { "cpu" }
    public var allocator: any BufferAllocator { HostAllocator.shared }

    // MARK: buffers

    public func zero(_ x: UnsafeMutablePointer<Scalar>, count: Int) {
        if count > 0 { memset(x, 0, count * MemoryLayout<Scalar>.stride) }
    }

    public func fill(_ x: UnsafeMutablePointer<Scalar>, value: Scalar, count: Int) {
        for i in 0..<count { x[i] = value }
    }

    public func copy(_ dst: UnsafeMutablePointer<Scalar>, _ src: UnsafePointer<Scalar>, count: Int) {
        if count > 0 { memcpy(dst, src, count * MemoryLayout<Scalar>.stride) }
    }

    public func addInto(_ dst: UnsafeMutablePointer<Scalar>, _ src: UnsafePointer<Scalar>, count: Int) {
        let chunk = 8192
        parallelFor((count + chunk - 1) / chunk) { ci in
            let lo = ci * chunk, hi = min(count, lo + chunk)
            for i in lo..<hi { dst[i] += src[i] }
        }
    }

    public func copy2D(_ dst: UnsafeMutablePointer<Scalar>, dstStride: Int, _ src: UnsafePointer<Scalar>,
                       srcStride: Int, rows: Int, columns: Int) {
        parallelFor(rows, minChunk: 64) { r in
            memcpy(dst + r * dstStride, src + r * srcStride, columns * MemoryLayout<Scalar>.stride)
        }
    }

    public func broadcastAdd(_ out: UnsafeMutablePointer<Scalar>, _ x: UnsafePointer<Scalar>,
                             _ y: UnsafePointer<Scalar>, batch: Int, count: Int) {
        let chunk = 4096
        parallelFor(batch * ((count + chunk - 1) / chunk)) { job in
            let perImage = (count + chunk - 1) / chunk
            let b = job / perImage, lo = (job % perImage) * chunk, hi = min(count, lo + chunk)
            let o = out + b * count, xi = x + b * count
            for i in lo..<hi { o[i] = xi[i] + y[i] }
        }
    }

    public func batchSumInto(_ dst: UnsafeMutablePointer<Scalar>, _ src: UnsafePointer<Scalar>, batch: Int,
                             count: Int) {
        let chunk = 4096
        parallelFor((count + chunk - 1) / chunk) { ci in
            let lo = ci * chunk, hi = min(count, lo + chunk)
            for b in 0..<batch {
                let s = src + b * count
                for i in lo..<hi { dst[i] += s[i] }
            }
        }
    }

    // MARK: layers

    public func linearForward(_ out: UnsafeMutablePointer<Scalar>, _ x: UnsafePointer<Scalar>,
                              _ weight: UnsafePointer<Scalar>, _ bias: UnsafePointer<Scalar>?, rows: Int,
                              inFeatures: Int, outFeatures: Int) {
        Linear.forward(out, x, weight, bias, rows: rows, inFeatures: inFeatures, outFeatures: outFeatures)
    }

    public func linearBackward(_ dX: UnsafeMutablePointer<Scalar>?, _ dWeight: UnsafeMutablePointer<Scalar>?,
                               _ dBias: UnsafeMutablePointer<Scalar>?, _ dOut: UnsafePointer<Scalar>,
                               _ x: UnsafePointer<Scalar>, _ weight: UnsafePointer<Scalar>, rows: Int,
                               inFeatures: Int, outFeatures: Int) {
        Linear.backward(dX, dWeight, dBias, dOut, x, weight, rows: rows, inFeatures: inFeatures,
                        outFeatures: outFeatures)
    }

    public func layerNormForward(_ out: UnsafeMutablePointer<Scalar>, _ mean: UnsafeMutablePointer<Scalar>,
                                 _ rstd: UnsafeMutablePointer<Scalar>, _ x: UnsafePointer<Scalar>,
                                 _ weight: UnsafePointer<Scalar>, _ bias: UnsafePointer<Scalar>, rows: Int,
                                 channels: Int, eps: Scalar) {
        LayerNorm.forward(out, mean, rstd, x, weight, bias, rows: rows, channels: channels, eps: eps)
    }

    public func layerNormBackward(_ dX: UnsafeMutablePointer<Scalar>?, _ dWeight: UnsafeMutablePointer<Scalar>?,
                                  _ dBias: UnsafeMutablePointer<Scalar>?, _ dOut: UnsafePointer<Scalar>,
                                  _ x: UnsafePointer<Scalar>, _ weight: UnsafePointer<Scalar>,
                                  _ mean: UnsafePointer<Scalar>, _ rstd: UnsafePointer<Scalar>, rows: Int,
                                  channels: Int) {
        LayerNorm.backward(dX, dWeight, dBias, dOut, x, weight, mean, rstd, rows: rows, channels: channels)
    }

    public func layerNormStridedForward(_ out: UnsafeMutablePointer<Scalar>, _ mean: UnsafeMutablePointer<Scalar>,
                                        _ rstd: UnsafeMutablePointer<Scalar>, _ x: UnsafePointer<Scalar>,
                                        _ weight: UnsafePointer<Scalar>, _ bias: UnsafePointer<Scalar>, batch: Int,
                                        rows: Int, inputBatchStride: Int, channels C: Int, eps: Scalar) {
        for b in 0..<batch {
            LayerNorm.forward(out + b * rows * C, mean + b * rows, rstd + b * rows, x + b * inputBatchStride,
                              weight, bias, rows: rows, channels: C, eps: eps)
        }
    }

    public func layerNormStridedBackward(_ dX: UnsafeMutablePointer<Scalar>?,
                                         _ dWeight: UnsafeMutablePointer<Scalar>?,
                                         _ dBias: UnsafeMutablePointer<Scalar>?, _ dOut: UnsafePointer<Scalar>,
                                         _ x: UnsafePointer<Scalar>, _ weight: UnsafePointer<Scalar>,
                                         _ mean: UnsafePointer<Scalar>, _ rstd: UnsafePointer<Scalar>, batch: Int,
                                         rows: Int, inputBatchStride: Int, channels C: Int) {
        for b in 0..<batch {
            LayerNorm.backward(dX.map { $0 + b * inputBatchStride }, dWeight, dBias, dOut + b * rows * C,
                               x + b * inputBatchStride, weight, mean + b * rows, rstd + b * rows,
                               rows: rows, channels: C)
        }
    }

    public func attentionForward(_ out: UnsafeMutablePointer<Scalar>, _ probs: UnsafeMutablePointer<Scalar>,
                                 _ qkv: UnsafePointer<Scalar>, batch: Int, tokens: Int, channels: Int, heads: Int,
                                 dropMask: UnsafePointer<Scalar>?, dropped: UnsafeMutablePointer<Scalar>?) {
        Attention.forward(out, probs, qkv, batch: batch, tokens: tokens, channels: channels, heads: heads,
                          dropMask: dropMask, dropped: dropped)
    }

    public func attentionBackward(_ dQKV: UnsafeMutablePointer<Scalar>, _ dScores: UnsafeMutablePointer<Scalar>,
                                  _ dOut: UnsafePointer<Scalar>, _ dProbs: UnsafePointer<Scalar>?,
                                  _ qkv: UnsafePointer<Scalar>, _ probs: UnsafePointer<Scalar>, batch: Int,
                                  tokens: Int, channels: Int, heads: Int, dropMask: UnsafePointer<Scalar>?,
                                  dropped: UnsafePointer<Scalar>?) {
        Attention.backward(dQKV, dScores, dOut, dProbs, qkv, probs, batch: batch, tokens: tokens, channels: channels,
                           heads: heads, dropMask: dropMask, dropped: dropped)
    }

    public func softmaxForward(_ out: UnsafeMutablePointer<Scalar>, _ x: UnsafePointer<Scalar>, rows: Int,
                               length: Int) {
        Softmax.forward(out, x, rows: rows, length: length)
    }

    public func softmaxBackward(_ dX: UnsafeMutablePointer<Scalar>, _ dOut: UnsafePointer<Scalar>,
                                _ y: UnsafePointer<Scalar>, rows: Int, length: Int) {
        Softmax.backward(dX, dOut, y, rows: rows, length: length)
    }

    public func geluForward(_ out: UnsafeMutablePointer<Scalar>, _ x: UnsafePointer<Scalar>, count: Int) {
        GELU.forward(out, x, count: count)
    }

    public func geluBackward(_ dX: UnsafeMutablePointer<Scalar>, _ dOut: UnsafePointer<Scalar>,
                             _ x: UnsafePointer<Scalar>, count: Int) {
        GELU.backward(dX, dOut, x, count: count)
    }

    public func residualForward(_ out: UnsafeMutablePointer<Scalar>, _ a: UnsafePointer<Scalar>,
                                _ x: UnsafePointer<Scalar>, _ gamma: UnsafePointer<Scalar>?, rows: Int,
                                channels: Int) {
        Residual.forward(out, a, x, gamma, rows: rows, channels: channels)
    }

    public func residualBackward(_ dA: UnsafeMutablePointer<Scalar>?, _ dX: UnsafeMutablePointer<Scalar>?,
                                 _ dGamma: UnsafeMutablePointer<Scalar>?, _ dOut: UnsafePointer<Scalar>,
                                 _ x: UnsafePointer<Scalar>, _ gamma: UnsafePointer<Scalar>?, rows: Int,
                                 channels: Int) {
        Residual.backward(dA, dX, dGamma, dOut, x, gamma, rows: rows, channels: channels)
    }

    public func patchEmbedForward(_ out: UnsafeMutablePointer<Scalar>, _ cols: UnsafeMutablePointer<Scalar>,
                                  _ x: UnsafePointer<Scalar>, _ weight: UnsafePointer<Scalar>,
                                  _ bias: UnsafePointer<Scalar>?, batch: Int, inChannels: Int, height: Int,
                                  width: Int, patch: Int, channels: Int) {
        PatchEmbed.forward(out, cols, x, weight, bias, batch: batch, inChannels: inChannels, height: height,
                           width: width, patch: patch, channels: channels)
    }

    public func patchEmbedBackward(_ dX: UnsafeMutablePointer<Scalar>?, _ dWeight: UnsafeMutablePointer<Scalar>?,
                                   _ dBias: UnsafeMutablePointer<Scalar>?, _ dCols: UnsafeMutablePointer<Scalar>,
                                   _ dOut: UnsafePointer<Scalar>, _ cols: UnsafePointer<Scalar>,
                                   _ weight: UnsafePointer<Scalar>, batch: Int, inChannels: Int, height: Int,
                                   width: Int, patch: Int, channels: Int) {
        PatchEmbed.backward(dX, dWeight, dBias, dCols, dOut, cols, weight, batch: batch, inChannels: inChannels,
                            height: height, width: width, patch: patch, channels: channels)
    }

    public func tokenEmbedForward(_ out: UnsafeMutablePointer<Scalar>, _ patches: UnsafePointer<Scalar>,
                                  _ cls: UnsafePointer<Scalar>, _ reg: UnsafePointer<Scalar>?,
                                  _ pos: UnsafePointer<Scalar>, batch: Int, patches np: Int, registers: Int,
                                  channels: Int, noEmbedClass: Bool) {
        TokenEmbed.forward(out, patches, cls, reg, pos, batch: batch, patches: np, registers: registers,
                           channels: channels, noEmbedClass: noEmbedClass)
    }

    public func tokenEmbedBackward(_ dPatches: UnsafeMutablePointer<Scalar>?, _ dCls: UnsafeMutablePointer<Scalar>?,
                                   _ dReg: UnsafeMutablePointer<Scalar>?, _ dPos: UnsafeMutablePointer<Scalar>?,
                                   _ dOut: UnsafePointer<Scalar>, batch: Int, patches np: Int, registers: Int,
                                   channels: Int, noEmbedClass: Bool) {
        TokenEmbed.backward(dPatches, dCls, dReg, dPos, dOut, batch: batch, patches: np, registers: registers,
                            channels: channels, noEmbedClass: noEmbedClass)
    }

    public func inputNormalizationForward(_ out: UnsafeMutablePointer<Scalar>, _ x: UnsafePointer<Scalar>,
                                          batch: Int, pixels: Int, mean: [Double], std: [Double]) {
        InputNormalization.forward(out, x, batch: batch, pixels: pixels, mean: mean, std: std)
    }

    public func inputNormalizationBackward(_ dX: UnsafeMutablePointer<Scalar>, _ dOut: UnsafePointer<Scalar>,
                                           batch: Int, pixels: Int, std: [Double]) {
        InputNormalization.backward(dX, dOut, batch: batch, pixels: pixels, std: std)
    }

    public func dropoutMask(_ mask: UnsafeMutablePointer<Scalar>, count: Int, p: Double,
                            using rng: inout SeededRNG) {
        Dropout.drawMask(mask, count: count, p: p, using: &rng)
    }

    public func dropoutForward(_ out: UnsafeMutablePointer<Scalar>, _ mask: UnsafePointer<Scalar>,
                               _ x: UnsafePointer<Scalar>, count: Int) {
        Dropout.forward(out, mask, x, count: count)
    }

    public func dropoutBackward(_ dX: UnsafeMutablePointer<Scalar>, _ dOut: UnsafePointer<Scalar>,
                                _ mask: UnsafePointer<Scalar>, count: Int) {
        Dropout.backward(dX, dOut, mask, count: count)
    }

    // MARK: convolutional layers

    public func conv2dForward(_ out: UnsafeMutablePointer<Scalar>, _ cols: UnsafeMutablePointer<Scalar>,
                              _ x: UnsafePointer<Scalar>, _ weight: UnsafePointer<Scalar>,
                              _ bias: UnsafePointer<Scalar>?, batch: Int, inChannels: Int, height: Int, width: Int,
                              outChannels: Int, kernel: Int, stride: Int, padding: Int) {
        Conv2d.forward(out, cols, x, weight, bias, batch: batch, inChannels: inChannels, height: height, width: width,
                       outChannels: outChannels, kernel: kernel, stride: stride, padding: padding)
    }

    public func conv2dBackward(_ dX: UnsafeMutablePointer<Scalar>?, _ dWeight: UnsafeMutablePointer<Scalar>?,
                               _ dBias: UnsafeMutablePointer<Scalar>?, _ cols: UnsafeMutablePointer<Scalar>,
                               _ dCols: UnsafeMutablePointer<Scalar>, _ dOut: UnsafePointer<Scalar>,
                               _ x: UnsafePointer<Scalar>, _ weight: UnsafePointer<Scalar>, batch: Int,
                               inChannels: Int, height: Int, width: Int, outChannels: Int, kernel: Int, stride: Int,
                               padding: Int) {
        Conv2d.backward(dX, dWeight, dBias, cols, dCols, dOut, x, weight, batch: batch, inChannels: inChannels,
                        height: height, width: width, outChannels: outChannels, kernel: kernel, stride: stride,
                        padding: padding)
    }

    public func groupNormForward(_ out: UnsafeMutablePointer<Scalar>, _ mean: UnsafeMutablePointer<Scalar>,
                                 _ rstd: UnsafeMutablePointer<Scalar>, _ x: UnsafePointer<Scalar>,
                                 _ weight: UnsafePointer<Scalar>, _ bias: UnsafePointer<Scalar>, batch: Int,
                                 channels: Int, groups: Int, pixels: Int, eps: Scalar) {
        GroupNorm.forward(out, mean, rstd, x, weight, bias, batch: batch, channels: channels, groups: groups,
                          pixels: pixels, eps: eps)
    }

    public func groupNormBackward(_ dX: UnsafeMutablePointer<Scalar>?, _ dWeight: UnsafeMutablePointer<Scalar>?,
                                  _ dBias: UnsafeMutablePointer<Scalar>?, _ dOut: UnsafePointer<Scalar>,
                                  _ x: UnsafePointer<Scalar>, _ weight: UnsafePointer<Scalar>,
                                  _ mean: UnsafePointer<Scalar>, _ rstd: UnsafePointer<Scalar>, batch: Int,
                                  channels: Int, groups: Int, pixels: Int) {
        GroupNorm.backward(dX, dWeight, dBias, dOut, x, weight, mean, rstd, batch: batch, channels: channels,
                           groups: groups, pixels: pixels)
    }

    public func siluForward(_ out: UnsafeMutablePointer<Scalar>, _ x: UnsafePointer<Scalar>, count: Int) {
        SiLU.forward(out, x, count: count)
    }

    public func siluBackward(_ dX: UnsafeMutablePointer<Scalar>, _ dOut: UnsafePointer<Scalar>,
                             _ x: UnsafePointer<Scalar>, count: Int) {
        SiLU.backward(dX, dOut, x, count: count)
    }

    public func upsampleNearest2xForward(_ out: UnsafeMutablePointer<Scalar>, _ x: UnsafePointer<Scalar>,
                                         planes: Int, height: Int, width: Int) {
        UpsampleNearest2x.forward(out, x, planes: planes, height: height, width: width)
    }

    public func upsampleNearest2xBackward(_ dX: UnsafeMutablePointer<Scalar>, _ dOut: UnsafePointer<Scalar>,
                                          planes: Int, height: Int, width: Int) {
        UpsampleNearest2x.backward(dX, dOut, planes: planes, height: height, width: width)
    }

    public func transposeForward(_ out: UnsafeMutablePointer<Scalar>, _ x: UnsafePointer<Scalar>, batch: Int,
                                 rows: Int, cols: Int) {
        Transpose.forward(out, x, batch: batch, rows: rows, cols: cols)
    }

    public func transposeBackward(_ dX: UnsafeMutablePointer<Scalar>, _ dOut: UnsafePointer<Scalar>, batch: Int,
                                  rows: Int, cols: Int) {
        Transpose.backward(dX, dOut, batch: batch, rows: rows, cols: cols)
    }

    public func channelAddForward(_ out: UnsafeMutablePointer<Scalar>, _ x: UnsafePointer<Scalar>,
                                  _ t: UnsafePointer<Scalar>, batch: Int, channels: Int, pixels: Int) {
        ChannelAdd.forward(out, x, t, batch: batch, channels: channels, pixels: pixels)
    }

    public func channelAddBackward(_ dX: UnsafeMutablePointer<Scalar>?, _ dT: UnsafeMutablePointer<Scalar>?,
                                   _ dOut: UnsafePointer<Scalar>, batch: Int, channels: Int, pixels: Int) {
        ChannelAdd.backward(dX, dT, dOut, batch: batch, channels: channels, pixels: pixels)
    }

    public func addInto2D(_ dst: UnsafeMutablePointer<Scalar>, dstStride: Int, _ src: UnsafePointer<Scalar>,
                          srcStride: Int, rows: Int, columns: Int) {
        parallelFor(rows, minChunk: max(1, 16384 / max(1, columns))) { r in
            let d = dst + r * dstStride, s = src + r * srcStride
            for j in 0..<columns { d[j] += s[j] }
        }
    }

    public func timestepEmbedding(_ out: UnsafeMutablePointer<Scalar>, timesteps: [Double], dim: Int,
                                  flipSinToCos: Bool, downscaleFreqShift: Double) {
        TimestepEmbedding.forward(out, timesteps: timesteps, dim: dim, flipSinToCos: flipSinToCos,
                                  downscaleFreqShift: downscaleFreqShift)
    }

    // MARK: losses and optimizer

    public func patchBCEForward(_ logits: UnsafePointer<Scalar>, _ labels: UnsafePointer<Scalar>, batch: Int,
                                patches: Int) -> Double {
        PatchBCE.forward(logits, labels, batch: batch, patches: patches)
    }

    public func patchBCEBackward(_ dLogits: UnsafeMutablePointer<Scalar>, _ logits: UnsafePointer<Scalar>,
                                 _ labels: UnsafePointer<Scalar>, batch: Int, patches: Int, weight: Double) {
        PatchBCE.backward(dLogits, logits, labels, batch: batch, patches: patches, weight: Scalar(weight))
    }

    public func attentionKLForward(_ probs: UnsafePointer<Scalar>, batch: Int, heads: Int, tokens: Int,
                                   prefix: Int) -> Double {
        AttentionKL.forward(probs, batch: batch, heads: heads, tokens: tokens, prefix: prefix)
    }

    public func attentionKLBackward(_ dProbs: UnsafeMutablePointer<Scalar>, _ probs: UnsafePointer<Scalar>,
                                    batch: Int, heads: Int, tokens: Int, prefix: Int, weight: Double) {
        AttentionKL.backward(dProbs, probs, batch: batch, heads: heads, tokens: tokens, prefix: prefix, weight: weight)
    }

    public func adamWUpdate(_ params: UnsafeMutablePointer<Scalar>, _ m: UnsafeMutablePointer<Scalar>,
                            _ v: UnsafeMutablePointer<Scalar>, _ grads: UnsafePointer<Scalar>, count: Int, lr: Double,
                            beta1: Double, beta2: Double, eps: Double, weightDecay: Double, step: Int) {
        AdamWUpdate.apply(params, m, v, grads, count: count, lr: lr, beta1: beta1, beta2: beta2, eps: eps,
                          weightDecay: weightDecay, step: step)
    }
}
