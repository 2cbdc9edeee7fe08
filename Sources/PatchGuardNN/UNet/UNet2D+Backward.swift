import PatchGuardCore

extension UNet2D {
    /// Backward through the last ``forward(images:timesteps:)``: the forward's call list in reverse, with the same
    /// local names. Activation gradients live in a twin arena (``dActs``, same views as ``acts``) that is zeroed
    /// here once; every layer *adds* into the gradient of its input, so a skip connection's gradient is complete
    /// (the next layer's share plus the up block's concatenation's share) by the time its producer is reached.
    ///
    /// - Parameters:
    ///   - dOutput: (B, out, H, H), the gradient of the loss on ``output``.
    ///   - computeParameterGradients: false skips every parameter gradient (attacks need only `dImages`).
    ///   - dImages: (B, in, H, H) or nil; dLoss/dImages is *added* into it.
    @_specialize(exported: true, where T == Float)
    @_specialize(exported: true, where T == Double)
    public func backward(dOutput: UnsafePointer<T>, computeParameterGradients: Bool = true,
                         dImages: UnsafeMutablePointer<T>? = nil) throws {
        let B = batch
        guard B > 0 else { throw PatchGuardError.invalidArgument("UNet2D backward called before forward") }
        let k = kernels, p = params, a = acts, d = dActs, te = plan.timeDim, c0 = plan.c0, pl = plan
        let g: UNetParameters<T>? = computeParameterGradients ? grads : nil
        activationGradients.zero()
        let n = plan.side * plan.side

        // Head: ε̂ = conv_out(SiLU(conv_norm_out(h))).
        convBackward(d.actOut, g?.convOut, dOutput, a.actOut, p.convOut, plan.convOut)
        k.siluBackward(d.normOut, d.actOut, a.normOut, count: B * c0 * n)
        let L = plan.up.count
        k.groupNormBackward(d.upBlockOutput(L - 1, pl), g?.convNormOut.weight, g?.convNormOut.bias, d.normOut,
                            a.upBlockOutput(L - 1, pl), p.convNormOut.weight, a.normOutMean, a.normOutRstd, batch: B,
                            channels: c0, groups: G, pixels: n)

        // Up blocks, last first. Resnet (i, j) read cat([upInput(i, j), skip]); its input gradient splits in two.
        let dSkips = d.skips(pl)
        for (i, u) in plan.up.enumerated().reversed() {
            let bp = p.up[i], ba = a.up[i], bd = d.up[i], bg = g?.up[i]
            if let us = u.upsample, let w = bp.upsample, let upsampled = ba.upsampled, let dUpsampled = bd.upsampled,
               let dUp = bd.upsample {
                convBackward(dUpsampled, bg?.upsample, dUp, upsampled, w, us)
                k.upsampleNearest2xBackward(d.upLayerOutput(i, u.resnets.count - 1, pl), dUpsampled,
                                            planes: B * us.inC, height: us.side / 2, width: us.side / 2)
            }
            for j in u.resnets.indices.reversed() {
                let r = u.resnets[j], rn = r.side * r.side, skipC = u.skipChannels[j], hC = r.inC - skipC
                if j < u.attentions.count {
                    attentionBackward(bd.attentions[j], bg?.attentions[j], ba.attentions[j], bp.attentions[j],
                                      u.attentions[j], x: ba.resnets[j].out, dx: bd.resnets[j].out)
                }
                resnetBackward(bd.resnets[j], bg?.resnets[j], ba.resnets[j], bp.resnets[j], r, x: ba.cats[j],
                               dx: bd.cats[j])
                let dSkip = dSkips[dSkips.count - 1 - plan.upResnetIndex(i, j)]
                k.addInto2D(d.upInput(i, j, pl), dstStride: hC * rn, bd.cats[j], srcStride: r.inC * rn, rows: B,
                            columns: hC * rn)
                k.addInto2D(dSkip, dstStride: skipC * rn, bd.cats[j] + hC * rn, srcStride: r.inC * rn, rows: B,
                            columns: skipC * rn)
            }
        }

        // Mid block: resnet_1(attention(resnet_0(h))).
        let mid0 = a.midResnets[0], dMid0 = d.midResnets[0]
        if let spec = plan.midAttention, let ap = p.midAttention, let aa = a.midAttention, let ad = d.midAttention {
            resnetBackward(d.midResnets[1], g?.midResnets[1], a.midResnets[1], p.midResnets[1], plan.midResnets[1],
                           x: aa.out, dx: ad.out)
            attentionBackward(ad, g?.midAttention, aa, ap, spec, x: mid0.out, dx: dMid0.out)
        } else {
            resnetBackward(d.midResnets[1], g?.midResnets[1], a.midResnets[1], p.midResnets[1], plan.midResnets[1],
                           x: mid0.out, dx: dMid0.out)
        }
        let lastDown = plan.down.count - 1
        resnetBackward(dMid0, g?.midResnets[0], mid0, p.midResnets[0], plan.midResnets[0],
                       x: a.downBlockOutput(lastDown, pl), dx: d.downBlockOutput(lastDown, pl))

        // Down blocks, last first.
        for (i, dn) in plan.down.enumerated().reversed() {
            let bp = p.down[i], ba = a.down[i], bd = d.down[i], bg = g?.down[i]
            let lastJ = dn.resnets.count - 1
            if let ds = dn.downsample, let w = bp.downsample, let dOut = bd.downsample {
                convBackward(d.downLayerOutput(i, lastJ, pl), bg?.downsample, dOut,
                             a.downLayerOutput(i, lastJ, pl), w, ds)
            }
            for j in dn.resnets.indices.reversed() {
                let x = j == 0 ? a.downInput(i, pl) : a.downLayerOutput(i, j - 1, pl)
                let dx = j == 0 ? d.downInput(i, pl) : d.downLayerOutput(i, j - 1, pl)
                if j < dn.attentions.count {
                    attentionBackward(bd.attentions[j], bg?.attentions[j], ba.attentions[j], bp.attentions[j],
                                      dn.attentions[j], x: ba.resnets[j].out, dx: bd.resnets[j].out)
                }
                resnetBackward(bd.resnets[j], bg?.resnets[j], ba.resnets[j], bp.resnets[j], dn.resnets[j], x: x, dx: dx)
            }
        }
        convBackward(dImages, g?.convIn, d.convIn, a.input, p.convIn, plan.convIn)

        // Time embedding: emb = linear_2(SiLU(linear_1(proj))); every time_emb_proj added into d.embAct.
        if let g {
            k.siluBackward(d.emb, d.embAct, a.emb, count: B * te)
            k.linearBackward(d.timeAct, g.timeLinear2.weight, g.timeLinear2.bias, d.emb, a.timeAct,
                             p.timeLinear2.weight, rows: B, inFeatures: te, outFeatures: te)
            k.siluBackward(d.timeLinear1, d.timeAct, a.timeLinear1, count: B * te)
            k.linearBackward(nil, g.timeLinear1.weight, g.timeLinear1.bias, d.timeLinear1, a.timeProj,
                             p.timeLinear1.weight, rows: B, inFeatures: c0, outFeatures: te)
        }
    }

    /// Gradient of ``resnetForward(_:_:_:x:)``; `d` are the block's activation gradients, `g` its parameter
    /// gradients (nil: skipped), `dx` receives the input gradient.
    func resnetBackward(_ d: UNetResnetActivations<T>, _ g: UNetResnetParameters<T>?, _ a: UNetResnetActivations<T>,
                        _ p: UNetResnetParameters<T>, _ s: UNetResnetSpec, x: UnsafePointer<T>,
                        dx: UnsafeMutablePointer<T>) {
        let k = kernels, B = batch, n = s.side * s.side
        var dSkip = dx
        if let shortcut = d.shortcut { dSkip = shortcut }
        k.residualBackward(dSkip, d.conv2, nil, d.out, a.conv2, nil, rows: B * s.outC, channels: n)
        if let sc = p.convShortcut, let dShortcut = d.shortcut {
            k.conv2dBackward(dx, g?.convShortcut?.weight, g?.convShortcut?.bias, cols, dCols, dShortcut, x, sc.weight,
                             batch: B, inChannels: s.inC, height: s.side, width: s.side, outChannels: s.outC,
                             kernel: 1, stride: 1, padding: 0)
        }
        k.conv2dBackward(d.act2, g?.conv2.weight, g?.conv2.bias, cols, dCols, d.conv2, a.act2, p.conv2.weight,
                         batch: B, inChannels: s.outC, height: s.side, width: s.side, outChannels: s.outC, kernel: 3,
                         stride: 1, padding: 1)
        k.siluBackward(d.norm2, d.act2, a.norm2, count: B * s.outC * n)
        k.groupNormBackward(d.hidden, g?.norm2.weight, g?.norm2.bias, d.norm2, a.hidden, p.norm2.weight, a.norm2Mean,
                            a.norm2Rstd, batch: B, channels: s.outC, groups: G, pixels: n)
        k.channelAddBackward(d.conv1, d.temb, d.hidden, batch: B, channels: s.outC, pixels: n)
        if let g {
            k.linearBackward(dActs.embAct, g.timeEmbProj.weight, g.timeEmbProj.bias, d.temb, acts.embAct,
                             p.timeEmbProj.weight, rows: B, inFeatures: plan.timeDim, outFeatures: s.outC)
        }
        k.conv2dBackward(d.act1, g?.conv1.weight, g?.conv1.bias, cols, dCols, d.conv1, a.act1, p.conv1.weight,
                         batch: B, inChannels: s.inC, height: s.side, width: s.side, outChannels: s.outC, kernel: 3,
                         stride: 1, padding: 1)
        k.siluBackward(d.norm1, d.act1, a.norm1, count: B * s.inC * n)
        k.groupNormBackward(dx, g?.norm1.weight, g?.norm1.bias, d.norm1, x, p.norm1.weight, a.norm1Mean, a.norm1Rstd,
                            batch: B, channels: s.inC, groups: G, pixels: n)
    }

    /// Gradient of ``attentionForward(_:_:_:x:)``. `d.probs` serves as the attention op's dScores scratch.
    func attentionBackward(_ d: UNetAttentionActivations<T>, _ g: UNetAttentionParameters<T>?,
                           _ a: UNetAttentionActivations<T>, _ p: UNetAttentionParameters<T>, _ s: UNetAttentionSpec,
                           x: UnsafePointer<T>, dx: UnsafeMutablePointer<T>) {
        let k = kernels, B = batch, n = s.side * s.side, c = s.channels, rows = B * n
        k.residualBackward(dx, d.projMap, nil, d.out, a.projMap, nil, rows: B * c, channels: n)
        k.transposeBackward(d.proj, d.projMap, batch: B, rows: n, cols: c)
        k.linearBackward(d.attn, g?.toOut.weight, g?.toOut.bias, d.proj, a.attn, p.toOut.weight, rows: rows,
                         inFeatures: c, outFeatures: c)
        k.attentionBackward(d.qkv, d.probs, d.attn, nil, a.qkv, a.probs, batch: B, tokens: n, channels: c,
                            heads: s.heads, dropMask: nil, dropped: nil)
        k.addInto2D(d.q, dstStride: c, d.qkv, srcStride: 3 * c, rows: rows, columns: c)
        k.addInto2D(d.k, dstStride: c, d.qkv + c, srcStride: 3 * c, rows: rows, columns: c)
        k.addInto2D(d.v, dstStride: c, d.qkv + 2 * c, srcStride: 3 * c, rows: rows, columns: c)
        k.linearBackward(d.tokens, g?.toV.weight, g?.toV.bias, d.v, a.tokens, p.toV.weight, rows: rows, inFeatures: c,
                         outFeatures: c)
        k.linearBackward(d.tokens, g?.toK.weight, g?.toK.bias, d.k, a.tokens, p.toK.weight, rows: rows, inFeatures: c,
                         outFeatures: c)
        k.linearBackward(d.tokens, g?.toQ.weight, g?.toQ.bias, d.q, a.tokens, p.toQ.weight, rows: rows, inFeatures: c,
                         outFeatures: c)
        k.transposeBackward(d.norm, d.tokens, batch: B, rows: c, cols: n)
        k.groupNormBackward(dx, g?.groupNorm.weight, g?.groupNorm.bias, d.norm, x, p.groupNorm.weight, a.normMean,
                            a.normRstd, batch: B, channels: c, groups: G, pixels: n)
    }

    /// Gradient of a plan convolution: `dx` (nil: not wanted) and the parameter gradients `g` (nil: skipped).
    func convBackward(_ dx: UnsafeMutablePointer<T>?, _ g: UNetAffine<T>?, _ dOut: UnsafePointer<T>, _ x: UnsafePointer<T>, _ p: UNetAffine<T>, _ s: UNetConvSpec) {
        if dx == nil && g == nil { return }
        kernels.conv2dBackward(dx, g?.weight, g?.bias, cols, dCols, dOut, x, p.weight, batch: batch,
                               inChannels: s.inC, height: s.side, width: s.side, outChannels: s.outC,
                               kernel: s.kernel, stride: s.stride, padding: s.padding)
    }
}

// Where each block's input and output live (the same functions serve the activations and their gradients).
extension UNetActivations {
    /// Output of layer j of down block i: its attention's output if it has one, else its resnet's.
    func downLayerOutput(_ i: Int, _ j: Int, _ plan: UNetPlan) -> UnsafeMutablePointer<T> {
        j < down[i].attentions.count ? down[i].attentions[j].out : down[i].resnets[j].out
    }
    func downBlockOutput(_ i: Int, _ plan: UNetPlan) -> UnsafeMutablePointer<T> {
        down[i].downsample ?? downLayerOutput(i, plan.down[i].resnets.count - 1, plan)
    }
    func downInput(_ i: Int, _ plan: UNetPlan) -> UnsafeMutablePointer<T> {
        i == 0 ? convIn : downBlockOutput(i - 1, plan)
    }
    var midOutput: UnsafeMutablePointer<T> { midResnets[1].out }
    func upLayerOutput(_ i: Int, _ j: Int, _ plan: UNetPlan) -> UnsafeMutablePointer<T> {
        j < up[i].attentions.count ? up[i].attentions[j].out : up[i].resnets[j].out
    }
    func upBlockOutput(_ i: Int, _ plan: UNetPlan) -> UnsafeMutablePointer<T> {
        up[i].upsample ?? upLayerOutput(i, plan.up[i].resnets.count - 1, plan)
    }
    /// The `h` half of up resnet (i, j)'s concatenated input.
    func upInput(_ i: Int, _ j: Int, _ plan: UNetPlan) -> UnsafeMutablePointer<T> {
        if j > 0 { return upLayerOutput(i, j - 1, plan) }
        return i == 0 ? midOutput : upBlockOutput(i - 1, plan)
    }
    /// diffusers' `down_block_res_samples`, in order: conv_in, then every down layer's output and downsample.
    func skips(_ plan: UNetPlan) -> [UnsafeMutablePointer<T>] {
        var l = [convIn]
        for (i, d) in plan.down.enumerated() {
            for j in d.resnets.indices { l.append(downLayerOutput(i, j, plan)) }
            if let ds = down[i].downsample { l.append(ds) }
        }
        return l
    }
}

extension UNetPlan {
    /// Position of up resnet (i, j) in the order the up path pops skips (0 pops the last skip).
    func upResnetIndex(_ i: Int, _ j: Int) -> Int { up[..<i].reduce(0) { $0 + $1.resnets.count } + j }
}
