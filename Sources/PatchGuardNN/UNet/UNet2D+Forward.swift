import PatchGuardCore

extension UNet2D {
    /// Runs the model on `batch` images at the given timesteps (one per image; integers in DDPM, any real works).
    ///
    /// - Parameters:
    ///   - images: (B, in, H, H) — whatever the caller trains on (the DDPM job feeds x_t in [−1, 1]).
    ///   - timesteps: B values.
    /// The output is ``output``.
    @_specialize(exported: true, where T == Float)
    @_specialize(exported: true, where T == Double)
    public func forward(images: UnsafePointer<T>, timesteps: [Double]) throws {
        let B = timesteps.count
        guard (1...maxBatch).contains(B) else {
            throw PatchGuardError.invalidArgument("UNet2D forward: batch \(B) outside 1...\(maxBatch)")
        }
        batch = B
        let k = kernels, p = params, a = acts, te = plan.timeDim, c0 = plan.c0

        k.timestepEmbedding(a.timeProj, timesteps: timesteps, dim: c0, flipSinToCos: config.flipSinToCos,
                            downscaleFreqShift: config.freqShift)
        k.linearForward(a.timeLinear1, a.timeProj, p.timeLinear1.weight, p.timeLinear1.bias, rows: B, inFeatures: c0,
                        outFeatures: te)
        k.siluForward(a.timeAct, a.timeLinear1, count: B * te)
        k.linearForward(a.emb, a.timeAct, p.timeLinear2.weight, p.timeLinear2.bias, rows: B, inFeatures: te,
                        outFeatures: te)
        k.siluForward(a.embAct, a.emb, count: B * te)
        k.copy(a.input, images, count: B * plan.convIn.inC * plan.side * plan.side)
        conv(a.convIn, a.input, p.convIn, plan.convIn)

        var h = UnsafePointer(a.convIn)
        var skips: [UnsafePointer<T>] = [h]
        for (i, d) in plan.down.enumerated() {
            let bp = p.down[i], ba = a.down[i]
            for j in d.resnets.indices {
                resnetForward(ba.resnets[j], bp.resnets[j], d.resnets[j], x: h)
                h = UnsafePointer(ba.resnets[j].out)
                if j < d.attentions.count {
                    attentionForward(ba.attentions[j], bp.attentions[j], d.attentions[j], x: h)
                    h = UnsafePointer(ba.attentions[j].out)
                }
                skips.append(h)
            }
            if let ds = d.downsample, let w = bp.downsample, let out = ba.downsample {
                conv(out, h, w, ds)
                h = UnsafePointer(out)
                skips.append(h)
            }
        }

        resnetForward(a.midResnets[0], p.midResnets[0], plan.midResnets[0], x: h)
        h = UnsafePointer(a.midResnets[0].out)
        if let spec = plan.midAttention, let ap = p.midAttention, let aa = a.midAttention {
            attentionForward(aa, ap, spec, x: h)
            h = UnsafePointer(aa.out)
        }
        resnetForward(a.midResnets[1], p.midResnets[1], plan.midResnets[1], x: h)
        h = UnsafePointer(a.midResnets[1].out)

        for (i, u) in plan.up.enumerated() {
            let bp = p.up[i], ba = a.up[i]
            for j in u.resnets.indices {
                let r = u.resnets[j], skip = skips.removeLast(), n = r.side * r.side
                let hC = r.inC - u.skipChannels[j]
                // cat = torch.cat([h, skip], dim=1)
                k.copy2D(ba.cats[j], dstStride: r.inC * n, h, srcStride: hC * n, rows: B, columns: hC * n)
                k.copy2D(ba.cats[j] + hC * n, dstStride: r.inC * n, skip, srcStride: u.skipChannels[j] * n, rows: B,
                         columns: u.skipChannels[j] * n)
                resnetForward(ba.resnets[j], bp.resnets[j], r, x: ba.cats[j])
                h = UnsafePointer(ba.resnets[j].out)
                if j < u.attentions.count {
                    attentionForward(ba.attentions[j], bp.attentions[j], u.attentions[j], x: h)
                    h = UnsafePointer(ba.attentions[j].out)
                }
            }
            if let us = u.upsample, let w = bp.upsample, let upsampled = ba.upsampled, let out = ba.upsample {
                k.upsampleNearest2xForward(upsampled, h, planes: B * us.inC, height: us.side / 2, width: us.side / 2)
                conv(out, upsampled, w, us)
                h = UnsafePointer(out)
            }
        }

        let n = plan.side * plan.side
        k.groupNormForward(a.normOut, a.normOutMean, a.normOutRstd, h, p.convNormOut.weight, p.convNormOut.bias,
                           batch: B, channels: c0, groups: G, pixels: n, eps: eps)
        k.siluForward(a.actOut, a.normOut, count: B * c0 * n)
        conv(a.output, a.actOut, p.convOut, plan.convOut)
    }

    /// `ResnetBlock2D.forward(x, emb)` (time_embedding_norm "default", output_scale_factor 1).
    func resnetForward(_ a: UNetResnetActivations<T>, _ p: UNetResnetParameters<T>, _ s: UNetResnetSpec,
                       x: UnsafePointer<T>) {
        let k = kernels, B = batch, n = s.side * s.side
        k.groupNormForward(a.norm1, a.norm1Mean, a.norm1Rstd, x, p.norm1.weight, p.norm1.bias, batch: B,
                           channels: s.inC, groups: G, pixels: n, eps: eps)
        k.siluForward(a.act1, a.norm1, count: B * s.inC * n)
        k.conv2dForward(a.conv1, cols, a.act1, p.conv1.weight, p.conv1.bias, batch: B, inChannels: s.inC,
                        height: s.side, width: s.side, outChannels: s.outC, kernel: 3, stride: 1, padding: 1)
        k.linearForward(a.temb, acts.embAct, p.timeEmbProj.weight, p.timeEmbProj.bias, rows: B,
                        inFeatures: plan.timeDim, outFeatures: s.outC)
        k.channelAddForward(a.hidden, a.conv1, a.temb, batch: B, channels: s.outC, pixels: n)
        k.groupNormForward(a.norm2, a.norm2Mean, a.norm2Rstd, a.hidden, p.norm2.weight, p.norm2.bias, batch: B,
                           channels: s.outC, groups: G, pixels: n, eps: eps)
        k.siluForward(a.act2, a.norm2, count: B * s.outC * n)
        k.conv2dForward(a.conv2, cols, a.act2, p.conv2.weight, p.conv2.bias, batch: B, inChannels: s.outC,
                        height: s.side, width: s.side, outChannels: s.outC, kernel: 3, stride: 1, padding: 1)
        var skip = x
        if let sc = p.convShortcut, let shortcut = a.shortcut {
            k.conv2dForward(shortcut, cols, x, sc.weight, sc.bias, batch: B, inChannels: s.inC, height: s.side,
                            width: s.side, outChannels: s.outC, kernel: 1, stride: 1, padding: 0)
            skip = UnsafePointer(shortcut)
        }
        k.residualForward(a.out, skip, a.conv2, nil, rows: B * s.outC, channels: n)
    }

    /// diffusers `Attention` on a (B, C, HW) map: group norm, q/k/v on the (B, HW, C) tokens, multi-head
    /// attention (the ViT's op, on q | k | v packed per token), `to_out.0`, back to (B, C, HW), plus the residual.
    func attentionForward(_ a: UNetAttentionActivations<T>, _ p: UNetAttentionParameters<T>, _ s: UNetAttentionSpec,
                          x: UnsafePointer<T>) {
        let k = kernels, B = batch, n = s.side * s.side, c = s.channels, rows = B * n
        k.groupNormForward(a.norm, a.normMean, a.normRstd, x, p.groupNorm.weight, p.groupNorm.bias, batch: B,
                           channels: c, groups: G, pixels: n, eps: eps)
        k.transposeForward(a.tokens, a.norm, batch: B, rows: c, cols: n)
        k.linearForward(a.q, a.tokens, p.toQ.weight, p.toQ.bias, rows: rows, inFeatures: c, outFeatures: c)
        k.linearForward(a.k, a.tokens, p.toK.weight, p.toK.bias, rows: rows, inFeatures: c, outFeatures: c)
        k.linearForward(a.v, a.tokens, p.toV.weight, p.toV.bias, rows: rows, inFeatures: c, outFeatures: c)
        k.copy2D(a.qkv, dstStride: 3 * c, a.q, srcStride: c, rows: rows, columns: c)
        k.copy2D(a.qkv + c, dstStride: 3 * c, a.k, srcStride: c, rows: rows, columns: c)
        k.copy2D(a.qkv + 2 * c, dstStride: 3 * c, a.v, srcStride: c, rows: rows, columns: c)
        k.attentionForward(a.attn, a.probs, a.qkv, batch: B, tokens: n, channels: c, heads: s.heads, dropMask: nil,
                           dropped: nil)
        k.linearForward(a.proj, a.attn, p.toOut.weight, p.toOut.bias, rows: rows, inFeatures: c, outFeatures: c)
        k.transposeForward(a.projMap, a.proj, batch: B, rows: n, cols: c)
        k.residualForward(a.out, x, a.projMap, nil, rows: B * c, channels: n)
    }

    /// A plan convolution on the current batch.
    func conv(_ out: UnsafeMutablePointer<T>, _ x: UnsafePointer<T>, _ p: UNetAffine<T>, _ s: UNetConvSpec) {
        kernels.conv2dForward(out, cols, x, p.weight, p.bias, batch: batch, inChannels: s.inC, height: s.side,
                              width: s.side, outChannels: s.outC, kernel: s.kernel, stride: s.stride,
                              padding: s.padding)
    }
}
