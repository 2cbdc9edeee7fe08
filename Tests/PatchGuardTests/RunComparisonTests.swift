import Foundation
import Testing
import PatchGuardCore
import PatchGuardMethod
@testable import PatchGuardJobs

/// `patchguard compare`: runs' metrics.json side by side.
@Suite struct RunComparisonTests {
    func temporaryDirectory(_ name: String) -> String {
        let dir = NSTemporaryDirectory() + "pg-compare-\(name)-\(UUID().uuidString)"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    static func report(clean: Double, topK: Double?, patches: Double, worst: Double,
                       epsilon: Double = 8.0 / 255) -> EvaluationReport {
        var attacks = [AttackReport(attack: AttackSpec(epsilon: epsilon, steps: 10, target: .patches), seconds: 1,
                                    metrics: MetricSet(imageAUROC: 0.1, pixelAUROC: patches))]
        if let topK {
            attacks.insert(AttackReport(attack: AttackSpec(epsilon: epsilon, steps: 10, target: .imageTopK), seconds: 1,
                                        metrics: MetricSet(imageAUROC: topK, pixelAUROC: 0.2)), at: 0)
        }
        return EvaluationReport(
            category: "widget", images: 3, normalImages: 1, anomalousImages: 2, imageSize: 16, patchSize: 4,
            batchSize: 1, scoring: ScoringConfig(), auproFPRLimit: 0.3, seconds: 1, cleanSeconds: 1,
            clean: MetricSet(imageAUROC: clean, pixelAUROC: 0.97), attacks: attacks, notes: [],
            worstCase: [WorstCaseReport(norm: .linf, epsilon: epsilon, attacks: ["a", "b"],
                                        metrics: MetricSet(imageAUROC: worst, pixelAUROC: worst / 2))])
    }

    @Test func readsRunsAndPicksTheRightAttacks() throws {
        let root = temporaryDirectory("compare")
        let a = root + "/clean-run", b = root + "/robust-run"
        for (dir, r) in [(a, Self.report(clean: 0.99, topK: 0.12, patches: 0.33, worst: 0.05)),
                         (b, Self.report(clean: 0.97, topK: 0.81, patches: 0.91, worst: 0.77))] {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            try AtomicFile.write(try r.jsonData(), to: dir + "/metrics.json")
        }
        let comparison = try RunComparison.load(runs: [a, b], names: ["clean-trained", "robust-trained"])
        let lines = comparison.table().split(separator: "\n").map(String.init)
        #expect(lines.count == 8)                         // header, rule, 6 rows
        #expect(Set(lines.map(\.count)).count == 1)       // padded columns
        #expect(lines[0].contains("clean-trained") && lines[0].contains("robust-trained"))
        #expect(lines[2].contains("clean image AUROC") && lines[2].contains("0.9900") && lines[2].contains("0.9700"))
        // The image-score row is the image_topk attack's image AUROC, not the patch attack's.
        #expect(lines[4].contains("PGD-10 image_topk") && lines[4].contains("8/255"))
        #expect(lines[4].contains("0.1200") && lines[4].contains("0.8100") && !lines[4].contains("0.1000"))
        // The patch-attack row is its pixel AUROC.
        #expect(lines[5].contains("0.3300") && lines[5].contains("0.9100"))
        #expect(lines[6].contains("worst-case image AUROC L∞ 8/255") && lines[6].contains("0.7700"))
        try comparison.write(to: root + "/compare.md")
        let md = try String(contentsOfFile: root + "/compare.md", encoding: .utf8)
        #expect(md.contains("clean-trained") && md.contains(comparison.table()))
        // Default names are the folder names.
        #expect(try RunComparison.load(runs: [a, b]).table().contains("robust-run"))
    }

    @Test func missingAttackIsNotApplicableAndDifferentBudgetsAreNamed() throws {
        let comparison = RunComparison(columns: [
            .init(name: "x", report: Self.report(clean: 0.9, topK: nil, patches: 0.5, worst: 0.4)),
            .init(name: "y", report: Self.report(clean: 0.9, topK: 0.6, patches: 0.5, worst: 0.4, epsilon: 2.0 / 255)),
        ])
        let rows = comparison.table().split(separator: "\n").map(String.init)
        #expect(rows[4].contains("n/a") && rows[4].contains("0.6000"))
        // x's patch attack is at 8/255, y's at 2/255: y's cell names its own attack.
        #expect(rows[5].contains("0.5000 (PGD-10 ε=2/255)"))
    }

    @Test func oneRowPerImageAttackAndBudgetMatchedByBudget() throws {
        func twoBudgets(_ small: Double, _ large: Double, reversed: Bool) -> EvaluationReport {
            var r = Self.report(clean: 0.9, topK: nil, patches: 0.5, worst: 0.4)
            var image = [(2.0 / 255, small), (8.0 / 255, large)].map { e, v in
                AttackReport(attack: AttackSpec(epsilon: e, steps: 10, target: .imageTopK), seconds: 1,
                             metrics: MetricSet(imageAUROC: v, pixelAUROC: 0.2))
            }
            var worst = [(2.0 / 255, small - 0.01), (8.0 / 255, large - 0.01)].map { e, v in
                WorstCaseReport(norm: .linf, epsilon: e, attacks: ["a"], metrics: MetricSet(imageAUROC: v, pixelAUROC: 0.3))
            }
            if reversed { image.reverse(); worst.reverse() }
            r.attacks = image + r.attacks
            r.worstCase = worst
            return r
        }
        let comparison = RunComparison(columns: [.init(name: "x", report: twoBudgets(0.11, 0.01, reversed: false)),
                                                 .init(name: "y", report: twoBudgets(0.62, 0.33, reversed: true))])
        let rows = comparison.table().split(separator: "\n").map(String.init)
        #expect(rows.count == 2 + 2 + 2 + 1 + 4)
        #expect(rows[4].contains("image_topk ε=2/255") && rows[4].contains("0.1100") && rows[4].contains("0.6200"))
        #expect(rows[5].contains("image_topk ε=8/255") && rows[5].contains("0.0100") && rows[5].contains("0.3300"))
        #expect(!rows[4].contains("(") && !rows[5].contains("("))   // same budgets: no attack named in a cell
        #expect(rows[7].contains("worst-case image AUROC L∞ 2/255") && rows[7].contains("0.1000") && rows[7].contains("0.6100"))
        #expect(rows[9].contains("worst-case image AUROC L∞ 8/255") && rows[9].contains("0.0000") && rows[9].contains("0.3200"))
    }

    @Test func missingMetricsIsAnIOError() {
        #expect(throws: PatchGuardError.self) { try RunComparison.load(runs: [temporaryDirectory("nometrics")]) }
        #expect(throws: PatchGuardError.self) { try RunComparison.load(runs: []) }
        #expect(throws: PatchGuardError.self) { try RunComparison.load(runs: ["a", "b"], names: ["one"]) }
    }
}
