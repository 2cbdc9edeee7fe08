import PatchGuardCore

/// The device-neutral kernel seam: every forward/backward pair and buffer operation the networks use, for one
/// scalar type. Model code (ViT, discriminator, PatchGuard model, losses) calls only these; a new backend (CUDA,
/// bf16) is one new conforming type, not a rewrite (STYLE.md "Backends and devices", llm.c's identical call lists).
///
/// Conventions (STYLE.md): arguments in the order outputs, cache, inputs, parameters, sizes; a gradient is `d` +
/// the tensor's name; every backward *adds* into its gradient buffers (pass nil to skip one); scratch named as
/// such is overwritten. Losses return their value as `Double`. All pointers come from ``allocator`` (or, on the
/// host backends, from any host memory).
///
/// Shape legend: `B` batch, `N` tokens, `C` channels, `NH` heads, `HS = C/NH`, `R` rows, `IC`/`OC` in/out features,
/// `P` patch size, `CI` image channels, `Np` patches, `n` elements. Each op's maths is documented on its
/// implementation enum (``Linear``, ``LayerNorm``, ``Attention``, ``Softmax``, ``GELU``, ``Residual``,
/// ``PatchEmbed``, ``TokenEmbed``, ``InputNormalization``, ``Dropout``, ``PatchBCE``, ``AttentionKL``,
/// ``AdamWUpdate``).
public protocol Kernels<Scalar>: AnyObject, Sendable {
    associatedtype Scalar: NNScalar
    /// Backend name for logs and tests ("cpu", "reference").
    var name: String { get }
    /// Where this backend's buffers come from.
    var allocator: any BufferAllocator { get }

    // MARK: buffers

    /// `x[0..<n] = 0`.
    func zero(_ x: UnsafeMutablePointer<Scalar>, count: Int)
    /// `x[0..<n] = value`.
    func fill(_ x: UnsafeMutablePointer<Scalar>, value: Scalar, count: Int)
    /// `dst[0..<n] = src[0..<n]` (no overlap).
    func copy(_ dst: UnsafeMutablePointer<Scalar>, _ src: UnsafePointer<Scalar>, count: Int)
    /// `dst[i] += src[i]`.
    func addInto(_ dst: UnsafeMutablePointer<Scalar>, _ src: UnsafePointer<Scalar>, count: Int)
    /// Strided 2-D copy: `dst[r·dstStride + j] = src[r·srcStride + j]` for `r < rows`, `j < columns`
    /// (concatenating or splitting feature layers along channels).
    func copy2D(_ dst: UnsafeMutablePointer<Scalar>, dstStride: Int, _ src: UnsafePointer<Scalar>, srcStride: Int,
                rows: Int, columns: Int)
    /// `out[b, i] = x[b, i] + y[i]` for (B, n) `x`, `out` and (n) `y` (a per-position embedding added to every image).
    func broadcastAdd(_ out: UnsafeMutablePointer<Scalar>, _ x: UnsafePointer<Scalar>, _ y: UnsafePointer<Scalar>,
                      batch: Int, count: Int)
    /// `dst[i] += Σ_b src[b, i]` (b in order) for (B, n) `src`: the backward of ``broadcastAdd`` for `y`.
    func batchSumInto(_ dst: UnsafeMutablePointer<Scalar>, _ src: UnsafePointer<Scalar>, batch: Int, count: Int)

    // MARK: layers

    /// ``Linear/forward(_:_:_:_:rows:inFeatures:outFeatures:)``: out (R, OC); x (R, IC); weight (OC, IC); bias (OC).
    func linearForward(_ out: UnsafeMutablePointer<Scalar>, _ x: UnsafePointer<Scalar>, _ weight: UnsafePointer<Scalar>,
                       _ bias: UnsafePointer<Scalar>?, rows: Int, inFeatures: Int, outFeatures: Int)
    func linearBackward(_ dX: UnsafeMutablePointer<Scalar>?, _ dWeight: UnsafeMutablePointer<Scalar>?,
                        _ dBias: UnsafeMutablePointer<Scalar>?, _ dOut: UnsafePointer<Scalar>, _ x: UnsafePointer<Scalar>,
                        _ weight: UnsafePointer<Scalar>, rows: Int, inFeatures: Int, outFeatures: Int)

    /// ``LayerNorm``: out (R, C); mean, rstd (R) cache; x (R, C); weight, bias (C).
    func layerNormForward(_ out: UnsafeMutablePointer<Scalar>, _ mean: UnsafeMutablePointer<Scalar>,
                          _ rstd: UnsafeMutablePointer<Scalar>, _ x: UnsafePointer<Scalar>,
                          _ weight: UnsafePointer<Scalar>, _ bias: UnsafePointer<Scalar>,
                          rows: Int, channels: Int, eps: Scalar)
    func layerNormBackward(_ dX: UnsafeMutablePointer<Scalar>?, _ dWeight: UnsafeMutablePointer<Scalar>?,
                           _ dBias: UnsafeMutablePointer<Scalar>?, _ dOut: UnsafePointer<Scalar>,
                           _ x: UnsafePointer<Scalar>, _ weight: UnsafePointer<Scalar>, _ mean: UnsafePointer<Scalar>,
                           _ rstd: UnsafePointer<Scalar>, rows: Int, channels: Int)
    /// LayerNorm of `rows` rows of each of `batch` images read with an image stride: input row `(b, r)` is at
    /// `x + b·inputBatchStride + r·C` (e.g. the patch tokens or the class token of (B, N, C) tokens); `out`
    /// (B, rows, C) and `mean`, `rstd` (B, rows) are contiguous. Backward adds into `dX` with the same stride.
    /// Parameter gradients accumulate image by image (the order of `batch` separate calls).
    func layerNormStridedForward(_ out: UnsafeMutablePointer<Scalar>, _ mean: UnsafeMutablePointer<Scalar>,
                                 _ rstd: UnsafeMutablePointer<Scalar>, _ x: UnsafePointer<Scalar>,
                                 _ weight: UnsafePointer<Scalar>, _ bias: UnsafePointer<Scalar>,
                                 batch: Int, rows: Int, inputBatchStride: Int, channels: Int, eps: Scalar)
    func layerNormStridedBackward(_ dX: UnsafeMutablePointer<Scalar>?, _ dWeight: UnsafeMutablePointer<Scalar>?,
                                  _ dBias: UnsafeMutablePointer<Scalar>?, _ dOut: UnsafePointer<Scalar>,
                                  _ x: UnsafePointer<Scalar>, _ weight: UnsafePointer<Scalar>,
                                  _ mean: UnsafePointer<Scalar>, _ rstd: UnsafePointer<Scalar>,
                                  batch: Int, rows: Int, inputBatchStride: Int, channels: Int)

    /// ``Attention``: out (B, N, C); probs (B, NH, N, N) cache; qkv (B, N, 3C); optional attention dropout with
    /// `dropMask` and `dropped` (B, NH, N, N) (both or neither). Backward adds into dQKV; dScores is scratch;
    /// `dProbs` is an extra gradient on the probabilities.
    func attentionForward(_ out: UnsafeMutablePointer<Scalar>, _ probs: UnsafeMutablePointer<Scalar>,
                          _ qkv: UnsafePointer<Scalar>, batch: Int, tokens: Int, channels: Int, heads: Int,
                          dropMask: UnsafePointer<Scalar>?, dropped: UnsafeMutablePointer<Scalar>?)
    func attentionBackward(_ dQKV: UnsafeMutablePointer<Scalar>, _ dScores: UnsafeMutablePointer<Scalar>,
                           _ dOut: UnsafePointer<Scalar>, _ dProbs: UnsafePointer<Scalar>?,
                           _ qkv: UnsafePointer<Scalar>, _ probs: UnsafePointer<Scalar>,
                           batch: Int, tokens: Int, channels: Int, heads: Int,
                           dropMask: UnsafePointer<Scalar>?, dropped: UnsafePointer<Scalar>?)

    /// ``Softmax`` over rows: out, x (R, L); `out` may alias `x`.
    func softmaxForward(_ out: UnsafeMutablePointer<Scalar>, _ x: UnsafePointer<Scalar>, rows: Int, length: Int)
    func softmaxBackward(_ dX: UnsafeMutablePointer<Scalar>, _ dOut: UnsafePointer<Scalar>, _ y: UnsafePointer<Scalar>,
                         rows: Int, length: Int)

    /// Exact ``GELU`` on n elements.
    func geluForward(_ out: UnsafeMutablePointer<Scalar>, _ x: UnsafePointer<Scalar>, count: Int)
    func geluBackward(_ dX: UnsafeMutablePointer<Scalar>, _ dOut: UnsafePointer<Scalar>, _ x: UnsafePointer<Scalar>,
                      count: Int)

    /// ``Residual`` with optional LayerScale: out = a + γ ⊙ x; (R, C), γ (C).
    func residualForward(_ out: UnsafeMutablePointer<Scalar>, _ a: UnsafePointer<Scalar>, _ x: UnsafePointer<Scalar>,
                         _ gamma: UnsafePointer<Scalar>?, rows: Int, channels: Int)
    func residualBackward(_ dA: UnsafeMutablePointer<Scalar>?, _ dX: UnsafeMutablePointer<Scalar>?,
                          _ dGamma: UnsafeMutablePointer<Scalar>?, _ dOut: UnsafePointer<Scalar>,
                          _ x: UnsafePointer<Scalar>, _ gamma: UnsafePointer<Scalar>?, rows: Int, channels: Int)

    /// ``PatchEmbed`` (im2col + GEMM): out (B, Np, C); cols (B, Np, CI·P·P) cache; x (B, CI, H, W);
    /// weight (C, CI, P, P); bias (C). Backward: dCols scratch.
    func patchEmbedForward(_ out: UnsafeMutablePointer<Scalar>, _ cols: UnsafeMutablePointer<Scalar>,
                           _ x: UnsafePointer<Scalar>, _ weight: UnsafePointer<Scalar>, _ bias: UnsafePointer<Scalar>?,
                           batch: Int, inChannels: Int, height: Int, width: Int, patch: Int, channels: Int)
    func patchEmbedBackward(_ dX: UnsafeMutablePointer<Scalar>?, _ dWeight: UnsafeMutablePointer<Scalar>?,
                            _ dBias: UnsafeMutablePointer<Scalar>?, _ dCols: UnsafeMutablePointer<Scalar>,
                            _ dOut: UnsafePointer<Scalar>, _ cols: UnsafePointer<Scalar>,
                            _ weight: UnsafePointer<Scalar>, batch: Int, inChannels: Int, height: Int, width: Int,
                            patch: Int, channels: Int)

    /// ``TokenEmbed``: out (B, N, C) from patches (B, Np, C), cls (C), reg (R, C), pos.
    func tokenEmbedForward(_ out: UnsafeMutablePointer<Scalar>, _ patches: UnsafePointer<Scalar>,
                           _ cls: UnsafePointer<Scalar>, _ reg: UnsafePointer<Scalar>?, _ pos: UnsafePointer<Scalar>,
                           batch: Int, patches np: Int, registers: Int, channels: Int, noEmbedClass: Bool)
    func tokenEmbedBackward(_ dPatches: UnsafeMutablePointer<Scalar>?, _ dCls: UnsafeMutablePointer<Scalar>?,
                            _ dReg: UnsafeMutablePointer<Scalar>?, _ dPos: UnsafeMutablePointer<Scalar>?,
                            _ dOut: UnsafePointer<Scalar>, batch: Int, patches np: Int, registers: Int, channels: Int,
                            noEmbedClass: Bool)

    /// ``InputNormalization``: out, x (B, CI, HW); mean, std (CI).
    func inputNormalizationForward(_ out: UnsafeMutablePointer<Scalar>, _ x: UnsafePointer<Scalar>, batch: Int,
                                   pixels: Int, mean: [Double], std: [Double])
    func inputNormalizationBackward(_ dX: UnsafeMutablePointer<Scalar>, _ dOut: UnsafePointer<Scalar>, batch: Int,
                                    pixels: Int, std: [Double])

    /// ``Dropout``: a mask (n) of 0 and 1/(1−p) drawn from `rng`; out = x ⊙ mask (out may alias x); dX += dOut ⊙ mask.
    func dropoutMask(_ mask: UnsafeMutablePointer<Scalar>, count: Int, p: Double, using rng: inout SeededRNG)
    func dropoutForward(_ out: UnsafeMutablePointer<Scalar>, _ mask: UnsafePointer<Scalar>, _ x: UnsafePointer<Scalar>,
                        count: Int)
    func dropoutBackward(_ dX: UnsafeMutablePointer<Scalar>, _ dOut: UnsafePointer<Scalar>,
                         _ mask: UnsafePointer<Scalar>, count: Int)

    // MARK: convolutional layers (the diffusion U-Net)

    /// ``Conv2d`` (im2col + GEMM): out (B, OC, OH, OW); x (B, CI, H, W); weight (OC, CI, K, K); bias (OC);
    /// cols, dCols (CI·K·K, OH·OW) scratch.
    func conv2dForward(_ out: UnsafeMutablePointer<Scalar>, _ cols: UnsafeMutablePointer<Scalar>,
                       _ x: UnsafePointer<Scalar>, _ weight: UnsafePointer<Scalar>, _ bias: UnsafePointer<Scalar>?,
                       batch: Int, inChannels: Int, height: Int, width: Int, outChannels: Int, kernel: Int,
                       stride: Int, padding: Int)
    func conv2dBackward(_ dX: UnsafeMutablePointer<Scalar>?, _ dWeight: UnsafeMutablePointer<Scalar>?,
                        _ dBias: UnsafeMutablePointer<Scalar>?, _ cols: UnsafeMutablePointer<Scalar>,
                        _ dCols: UnsafeMutablePointer<Scalar>, _ dOut: UnsafePointer<Scalar>,
                        _ x: UnsafePointer<Scalar>, _ weight: UnsafePointer<Scalar>, batch: Int, inChannels: Int,
                        height: Int, width: Int, outChannels: Int, kernel: Int, stride: Int, padding: Int)

    /// ``GroupNorm``: out, x (B, C, HW); mean, rstd (B, G) cache; weight, bias (C).
    func groupNormForward(_ out: UnsafeMutablePointer<Scalar>, _ mean: UnsafeMutablePointer<Scalar>,
                          _ rstd: UnsafeMutablePointer<Scalar>, _ x: UnsafePointer<Scalar>,
                          _ weight: UnsafePointer<Scalar>, _ bias: UnsafePointer<Scalar>, batch: Int, channels: Int,
                          groups: Int, pixels: Int, eps: Scalar)
    func groupNormBackward(_ dX: UnsafeMutablePointer<Scalar>?, _ dWeight: UnsafeMutablePointer<Scalar>?,
                           _ dBias: UnsafeMutablePointer<Scalar>?, _ dOut: UnsafePointer<Scalar>,
                           _ x: UnsafePointer<Scalar>, _ weight: UnsafePointer<Scalar>, _ mean: UnsafePointer<Scalar>,
                           _ rstd: UnsafePointer<Scalar>, batch: Int, channels: Int, groups: Int, pixels: Int)

    /// ``SiLU`` on n elements.
    func siluForward(_ out: UnsafeMutablePointer<Scalar>, _ x: UnsafePointer<Scalar>, count: Int)
    func siluBackward(_ dX: UnsafeMutablePointer<Scalar>, _ dOut: UnsafePointer<Scalar>, _ x: UnsafePointer<Scalar>,
                      count: Int)

    /// ``UpsampleNearest2x``: out (R, 2H, 2W); x (R, H, W).
    func upsampleNearest2xForward(_ out: UnsafeMutablePointer<Scalar>, _ x: UnsafePointer<Scalar>, planes: Int,
                                  height: Int, width: Int)
    func upsampleNearest2xBackward(_ dX: UnsafeMutablePointer<Scalar>, _ dOut: UnsafePointer<Scalar>, planes: Int,
                                   height: Int, width: Int)

    /// ``Transpose``: out (B, cols, rows) from x (B, rows, cols); backward adds.
    func transposeForward(_ out: UnsafeMutablePointer<Scalar>, _ x: UnsafePointer<Scalar>, batch: Int, rows: Int,
                          cols: Int)
    func transposeBackward(_ dX: UnsafeMutablePointer<Scalar>, _ dOut: UnsafePointer<Scalar>, batch: Int, rows: Int,
                           cols: Int)

    /// ``ChannelAdd``: out, x (B, C, HW); t (B, C).
    func channelAddForward(_ out: UnsafeMutablePointer<Scalar>, _ x: UnsafePointer<Scalar>,
                           _ t: UnsafePointer<Scalar>, batch: Int, channels: Int, pixels: Int)
    func channelAddBackward(_ dX: UnsafeMutablePointer<Scalar>?, _ dT: UnsafeMutablePointer<Scalar>?,
                            _ dOut: UnsafePointer<Scalar>, batch: Int, channels: Int, pixels: Int)

    /// Strided 2-D accumulate, `dst[r·dstStride + j] += src[r·srcStride + j]` (the backward of a ``copy2D(_:dstStride:_:srcStride:rows:columns:)``
    /// concatenation).
    func addInto2D(_ dst: UnsafeMutablePointer<Scalar>, dstStride: Int, _ src: UnsafePointer<Scalar>, srcStride: Int,
                   rows: Int, columns: Int)

    /// ``TimestepEmbedding``: out (B, D) for B timesteps (no gradient).
    func timestepEmbedding(_ out: UnsafeMutablePointer<Scalar>, timesteps: [Double], dim: Int, flipSinToCos: Bool,
                           downscaleFreqShift: Double)

    // MARK: losses and optimizer

    /// ``PatchBCE``: logits, labels (B, Np); backward adds `weight·(σ(x) − y)/B` into dLogits.
    func patchBCEForward(_ logits: UnsafePointer<Scalar>, _ labels: UnsafePointer<Scalar>, batch: Int,
                         patches: Int) -> Double
    func patchBCEBackward(_ dLogits: UnsafeMutablePointer<Scalar>, _ logits: UnsafePointer<Scalar>,
                          _ labels: UnsafePointer<Scalar>, batch: Int, patches: Int, weight: Double)
    /// ``AttentionKL``: probs (B, NH, N, N), the first `prefix` tokens dropped; backward adds into dProbs.
    func attentionKLForward(_ probs: UnsafePointer<Scalar>, batch: Int, heads: Int, tokens: Int, prefix: Int) -> Double
    func attentionKLBackward(_ dProbs: UnsafeMutablePointer<Scalar>, _ probs: UnsafePointer<Scalar>, batch: Int,
                             heads: Int, tokens: Int, prefix: Int, weight: Double)
    /// ``AdamWUpdate``: params, m, v (n) updated in place from grads (n); `step` is the 1-based step number.
    func adamWUpdate(_ params: UnsafeMutablePointer<Scalar>, _ m: UnsafeMutablePointer<Scalar>,
                     _ v: UnsafeMutablePointer<Scalar>, _ grads: UnsafePointer<Scalar>, count: Int, lr: Double,
                     beta1: Double, beta2: Double, eps: Double, weightDecay: Double, step: Int)
}

/// The backend a job runs on, chosen once per job (mlx-swift's `Device`).
public enum Backend: String, CaseIterable, Sendable {
    /// OpenBLAS GEMMs and vectorised, `parallelFor` loops (``CPUKernelsFloat``, ``CPUKernelsDouble``).
    case cpu
    /// Plain loops, no BLAS, no threads: the numerics every backend is tested against.
    case reference

    /// The kernels of this backend for scalar `T` (Float or Double).
    public func kernels<T: NNScalar>(_ type: T.Type = T.self) -> any Kernels<T> {
        let k: AnyObject
        switch (self, T.self == Float.self) {
        case (.cpu, true): k = CPUKernelsFloat.shared
        case (.cpu, false): k = CPUKernelsDouble.shared
        case (.reference, true): k = ReferenceKernelsFloat.shared
        case (.reference, false): k = ReferenceKernelsDouble.shared
        }
        guard let typed = k as? any Kernels<T> else {
            preconditionFailure("backend \(rawValue) has no kernels for \(T.self) (Float and Double only)")
        }
        return typed
    }
}
