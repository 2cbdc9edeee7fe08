import PatchGuardCore
import PatchGuardNN

/// One-shot DDPM denoising and its anomaly map (AdvRAD), with the input gradient — the maths of
/// ``DiffusionDetector``, generic over the scalar so that it is gradient-checked in Double.
///
/// Images live in [0,1]; the U-Net works in [−1,1] (`u = 2x − 1`, as DDPM trains). For each image, with noise ε:
/// ```
/// u_t = √ᾱ·(2x − 1) + √(1−ᾱ)·ε                      t = t* (diffusers 0-based index)
/// û   = (u_t − √(1−ᾱ)·ε_θ(u_t, t*)) / √ᾱ
/// r   = (û + 1)/2 − x                                 the reconstruction error in [0,1] units
/// map = MultiscaleError(r)                            (B, S, S)
/// ```
/// Backward from `dMap`: `dr = MultiscaleErrorᵀ(dMap)`; `dû = dr/2`; `dε̂ = −(√(1−ᾱ)/√ᾱ)·dû`;
/// `du_t = dû/√ᾱ + U-Netᵀ(dε̂)`; `dx = −dr + 2√ᾱ·du_t`.
public final class DiffusionReconstruction<T: NNScalar> {
    public let unet: UNet2D<T>
    public let schedule: DDPMSchedule
    public let tStar: Int
    public let multiscale: MultiscaleError
    let side: Int, channels: Int
    /// (maxBatch, C, S, S) each: the noised input u_t, the residual r; (maxBatch, C, S, S) scratch for the
    /// U-Net's input gradient and dr.
    let ut: Tensor<T>, r: Tensor<T>, dUt: Tensor<T>, dR: Tensor<T>, dEps: Tensor<T>
    public private(set) var batch = 0

    public init(unet: UNet2D<T>, schedule: DDPMSchedule, tStar: Int) throws {
        guard (0..<schedule.steps).contains(tStar) else {
            throw PatchGuardError.invalidArgument("diffusion detector: t* = \(tStar) outside 0..<\(schedule.steps)")
        }
        self.unet = unet; self.schedule = schedule; self.tStar = tStar
        side = unet.config.sampleSize; channels = unet.config.inChannels
        multiscale = try MultiscaleError(side: side, channels: channels,
                                         factors: [1, 2, 4, 8].filter { unet.config.sampleSize % $0 == 0 })
        let shape = [unet.maxBatch, channels, side, side]
        ut = Tensor(shape: shape); r = Tensor(shape: shape); dUt = Tensor(shape: shape); dR = Tensor(shape: shape)
        dEps = Tensor(shape: shape)
    }

    /// maps (B, S, S) for images (B, C, S, S) in [0,1] and noise (B, C, S, S), B ≤ the U-Net's maxBatch.
    public func forward(_ maps: UnsafeMutablePointer<T>, images x: UnsafePointer<T>, noise eps: UnsafePointer<T>,
                        batch B: Int) throws {
        let n = B * channels * side * side
        let (a, s) = schedule.coefficients(tStar)
        let sa = T(a), sn = T(s)
        for i in 0..<n { ut[i] = sa * (2 * x[i] - 1) + sn * eps[i] }
        try unet.forward(images: ut.data, timesteps: [Double](repeating: Double(tStar), count: B))
        let e = unet.output.data
        for i in 0..<n {
            let uHat = (ut[i] - sn * e[i]) / sa
            r[i] = (uHat + 1) / 2 - x[i]
        }
        multiscale.forward(maps, r.data, batch: B)
        batch = B
    }

    /// `dImages (B, C, S, S) = ∂(Σ dMaps ⊙ maps)/∂images` (overwritten) at the last ``forward(_:images:noise:batch:)``.
    public func backward(dImages: UnsafeMutablePointer<T>, dMaps: UnsafePointer<T>) throws {
        let B = batch, n = B * channels * side * side
        let (a, s) = schedule.coefficients(tStar)
        let sa = T(a), sn = T(s)
        dR.zero()
        multiscale.backward(dR.data, dMaps, r.data, batch: B)
        for i in 0..<n { dEps[i] = -(sn / sa) * dR[i] / 2 }
        dUt.zero()
        try unet.backward(dOutput: dEps.data, computeParameterGradients: false, dImages: dUt.data)
        for i in 0..<n {
            let du = dR[i] / 2 / sa + dUt[i]
            dImages[i] = -dR[i] + 2 * sa * du
        }
    }
}

/// The DDPM training loss on one batch: `t ~ U{0…T−1}`, `ε ~ N(0, I)` per image,
/// `L = mean((ε_θ(√ᾱ_t·u + √(1−ᾱ_t)·ε, t) − ε)²)` over every element (`F.mse_loss`), `u = 2x − 1`.
public enum DDPMLoss {
    /// Forward + backward: gradients are *added* into `unet.gradients` (zero them first); returns L.
    /// `scratch` holds (B, C, S, S) u_t and then dε̂; `noise` (B, C, S, S) is drawn from `rng` unless given.
    public static func step<T: NNScalar>(_ unet: UNet2D<T>, schedule: DDPMSchedule, images x: UnsafePointer<T>,
                                         batch B: Int, scratch: UnsafeMutablePointer<T>,
                                         noise: UnsafeMutablePointer<T>, timesteps: [Int]) throws -> Double {
        let c = unet.config, per = c.inChannels * c.sampleSize * c.sampleSize, n = B * per
        precondition(timesteps.count == B, "DDPMLoss: one timestep per image")
        for b in 0..<B {
            let (a, s) = schedule.coefficients(timesteps[b])
            let sa = T(a), sn = T(s)
            for i in (b * per)..<((b + 1) * per) { scratch[i] = sa * (2 * x[i] - 1) + sn * noise[i] }
        }
        try unet.forward(images: scratch, timesteps: timesteps.map(Double.init))
        let e = unet.output.data
        var loss = 0.0
        for i in 0..<n {
            let d = e[i] - noise[i]
            loss += Double(d * d)
            scratch[i] = 2 * d / T(n)
        }
        try unet.backward(dOutput: scratch, computeParameterGradients: true, dImages: nil)
        return loss / Double(n)
    }
}
