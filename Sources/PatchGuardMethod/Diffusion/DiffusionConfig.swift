import PatchGuardCore
import PatchGuardNN

/// `model.kind`: which detector a job trains and evaluates.
public enum ModelKind: String, ConfigEnum {
    /// PatchGuard (ViT + attention discriminator, adversarial training): the `model`, `train`, `attack` and
    /// `synthesis` sections.
    case patchguard
    /// The DDPM diffusion detector (AdvRAD): the `diffusion` section, plus `train.epochs`, `train.batch_size`,
    /// `train.lr`, `train.lr_min_factor`, `train.weight_decay` and `train.checkpoint_every`.
    case diffusion
}

/// The `diffusion` section: the U-Net (diffusers `UNet2DModel` vocabulary; `sample_size` is `data.image_size`),
/// the DDPM schedule, training extras and detection. Keys are snake_case.
public struct DiffusionConfig: Codable, Equatable, Sendable {
    public init() {}

    /// Channels per level (diffusers `block_out_channels`).
    public var blockOutChannels = [32, 64, 64]
    public var layersPerBlock = 1
    /// Per level: attention blocks in that down level and the mirrored up level (`AttnDownBlock2D`/`AttnUpBlock2D`).
    public var attentionLevels = [false, false, true]
    public var attentionHeadDim = 8
    public var normNumGroups = 8
    /// DDPM: T and the linear β schedule.
    public var timesteps = 1000
    public var betaStart = 1e-4
    public var betaEnd = 0.02
    /// EMA of the weights used for evaluation: `ema ← d·ema + (1 − d)·θ` after every step.
    public var emaDecay = 0.999
    /// Detection: one-shot denoising from this 0-based step (the paper's reimplementation: 50 of 1000).
    public var tStar = 50
    /// Noise draws averaged per detection.
    public var noiseDraws = 1

    enum CodingKeys: String, CodingKey {
        case blockOutChannels = "block_out_channels", layersPerBlock = "layers_per_block"
        case attentionLevels = "attention_levels", attentionHeadDim = "attention_head_dim"
        case normNumGroups = "norm_num_groups", timesteps, betaStart = "beta_start", betaEnd = "beta_end"
        case emaDecay = "ema_decay", tStar = "t_star", noiseDraws = "noise_draws"
    }

    /// The U-Net for images of side `imageSize`.
    public func unet(imageSize: Int) -> UNet2DConfig {
        let attn = (0..<blockOutChannels.count).map { $0 < attentionLevels.count && attentionLevels[$0] }
        return UNet2DConfig(sampleSize: imageSize, inChannels: 3, outChannels: 3, blockOutChannels: blockOutChannels,
                            layersPerBlock: layersPerBlock,
                            downBlockTypes: attn.map { $0 ? "AttnDownBlock2D" : "DownBlock2D" },
                            upBlockTypes: attn.reversed().map { $0 ? "AttnUpBlock2D" : "UpBlock2D" },
                            attentionHeadDim: attentionHeadDim, normNumGroups: normNumGroups)
    }

    public func schedule() throws -> DDPMSchedule {
        try DDPMSchedule(steps: timesteps, betaStart: betaStart, betaEnd: betaEnd)
    }

    /// The first problem, naming its key, or nil.
    public func problem(imageSize: Int) -> String? {
        if attentionLevels.count != blockOutChannels.count {
            return "diffusion.attention_levels has \(attentionLevels.count) entries, diffusion.block_out_channels "
                + "\(blockOutChannels.count)"
        }
        do { try unet(imageSize: imageSize).validate() } catch let e as PatchGuardError {
            return "diffusion: \(e.description) (with data.image_size \(imageSize))"
        } catch { return "diffusion: \(error)" }
        if timesteps < 2 || timesteps > 100_000 { return "diffusion.timesteps must be in 2...100000, got \(timesteps)" }
        if !(betaStart > 0 && betaStart <= betaEnd && betaEnd < 1) {
            return "diffusion.beta_start/beta_end must satisfy 0 < beta_start ≤ beta_end < 1, got \(betaStart), \(betaEnd)"
        }
        if !(0..<timesteps).contains(tStar) { return "diffusion.t_star must be in 0..<\(timesteps), got \(tStar)" }
        if !(emaDecay >= 0 && emaDecay < 1) { return "diffusion.ema_decay must be in [0, 1), got \(emaDecay)" }
        if noiseDraws < 1 || noiseDraws > 1000 { return "diffusion.noise_draws must be in 1...1000, got \(noiseDraws)" }
        return nil
    }
}
