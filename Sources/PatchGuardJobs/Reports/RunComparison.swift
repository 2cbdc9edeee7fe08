import Foundation
import PatchGuardCore
import PatchGuardMethod

/// Several evaluated runs side by side (`patchguard compare RUN_A RUN_B …`): one column per run, one row per
/// figure, read from each run's `metrics.json` (``EvaluationReport``), so the runs must have been evaluated first.
///
/// Rows, each `n/a` where a run lacks it:
/// - clean image AUROC and clean pixel AUROC;
/// - image AUROC under each image-score attack (target `image_topk`, the exact top-k score the image AUROC ranks,
///   else `image`) of the first run that has any, one row per attack, each run's attack matched by budget (norm
///   and ε, else by position); name and ε are in the row label;
/// - pixel AUROC under the patch attack: the first attack with target `patches` (the paper's attack on the map);
/// - image and pixel AUROC of each worst-case row (per image the strongest of the attacks at that budget, clean
///   counted), matched by budget the same way.
/// The row label names the attack of the *first* run; a run whose matching attack differs (another ε or step
/// count) shows its own in brackets beside the figure, so unlike attacks are never silently compared.
public struct RunComparison: Sendable {
    public struct Column: Sendable {
        /// Shown as the column heading (default: the run folder's name).
        public var name: String
        public var report: EvaluationReport
        public init(name: String, report: EvaluationReport) { self.name = name; self.report = report }
    }

    public var columns: [Column]

    public init(columns: [Column]) { self.columns = columns }

    /// Reads `RUN/metrics.json` of each run; `names` (same count, or empty) label the columns.
    public static func load(runs: [String], names: [String] = []) throws -> RunComparison {
        guard !runs.isEmpty else { throw PatchGuardError.invalidArgument("compare needs at least one run directory") }
        guard names.isEmpty || names.count == runs.count else {
            throw PatchGuardError.invalidArgument("compare: \(names.count) names for \(runs.count) runs")
        }
        var columns: [Column] = []
        for (i, run) in runs.enumerated() {
            let path = (run as NSString).appendingPathComponent(EvaluationResult.metricsJSON)
            guard let data = FileManager.default.contents(atPath: path) else {
                throw PatchGuardError.io(path: path, reason: "no metrics.json (evaluate the run first: patchguard "
                                         + "evaluate --output \(run) or patchguard heatmaps)")
            }
            let report: EvaluationReport
            do { report = try JSONDecoder().decode(EvaluationReport.self, from: data) } catch {
                throw PatchGuardError.io(path: path, reason: "not an evaluation report (\(error))")
            }
            let name = names.isEmpty ? ((run as NSString).standardizingPath as NSString).lastPathComponent : names[i]
            columns.append(Column(name: name, report: report))
        }
        return RunComparison(columns: columns)
    }

    /// One figure of every column, or `nil` (n/a), with the attack it came from.
    struct Row {
        var label: String
        var values: [(value: Double?, attack: AttackSpec?)]
    }

    static func attack(_ report: EvaluationReport, targets: [PGDTarget]) -> AttackReport? {
        for t in targets { if let a = report.attacks.first(where: { $0.attack.target == t }) { return a } }
        return nil
    }

    /// The image-score attacks of a report (target `image_topk`, else `image`), in order.
    static func imageAttacks(_ report: EvaluationReport) -> [AttackReport] {
        let topK = report.attacks.filter { $0.attack.target == .imageTopK }
        return topK.isEmpty ? report.attacks.filter { $0.attack.target == .image } : topK
    }

    /// The element of `candidates` at the same budget as `reference` (same norm and ε), else the `index`-th one.
    static func matching<T>(_ candidates: [T], index: Int, norm: (T) -> AttackNorm, epsilon: (T) -> Double,
                            reference: (norm: AttackNorm, epsilon: Double)) -> T? {
        if let same = candidates.first(where: { norm($0) == reference.norm && epsilon($0) == reference.epsilon }) {
            return same
        }
        return index < candidates.count ? candidates[index] : nil
    }

    var rows: [Row] {
        var out = [
            Row(label: "clean image AUROC", values: columns.map { ($0.report.clean.imageAUROC, nil) }),
            Row(label: "clean pixel AUROC", values: columns.map { ($0.report.clean.pixelAUROC, nil) }),
        ]
        // One image-score row per image-score attack of the first run that has any, matched by budget.
        let imageReference = columns.map { Self.imageAttacks($0.report) }.first { !$0.isEmpty } ?? []
        if imageReference.isEmpty {
            out.append(Row(label: "image AUROC under attack (none run)", values: columns.map { _ in (nil, nil) }))
        }
        for (j, r) in imageReference.enumerated() {
            let found = columns.map {
                Self.matching(Self.imageAttacks($0.report), index: j, norm: { $0.attack.norm },
                              epsilon: { $0.attack.epsilon }, reference: (r.attack.norm, r.attack.epsilon))
            }
            out.append(Row(label: "image AUROC under \(r.attack.displayName) ε=\(r.attack.epsilonText)",
                           values: found.map { ($0?.metrics.imageAUROC, $0?.attack) }))
        }
        let patches = columns.map { Self.attack($0.report, targets: [.patches]) }
        let patchReference = patches.compactMap { $0 }.first?.attack
        out.append(Row(label: patchReference.map { "pixel AUROC under \($0.displayName) ε=\($0.epsilonText)" }
                           ?? "pixel AUROC under attack (none run)",
                       values: patches.map { ($0?.metrics.pixelAUROC, $0?.attack) }))
        // One pair of worst-case rows per budget of the first run that has any.
        let worstReference = columns.map(\.report.worstCase).first { !$0.isEmpty } ?? []
        for (j, w) in worstReference.enumerated() {
            let found = columns.map {
                Self.matching($0.report.worstCase, index: j, norm: { $0.norm }, epsilon: { $0.epsilon },
                              reference: (w.norm, w.epsilon))
            }
            let budget = "\(w.norm.display) \(EvaluationReport.formatBudget(w.epsilon, norm: w.norm))"
            out.append(Row(label: "worst-case image AUROC \(budget)", values: found.map { ($0?.metrics.imageAUROC, nil) }))
            out.append(Row(label: "worst-case pixel AUROC \(budget)", values: found.map { ($0?.metrics.pixelAUROC, nil) }))
        }
        return out
    }

    /// The table (Markdown, padded so it reads on a terminal too).
    public func table() -> String {
        let rows = self.rows
        let header = ["figure"] + columns.map(\.name)
        var cells: [[String]] = []
        for row in rows {
            let reference = row.values.compactMap(\.attack).first
            cells.append([row.label] + row.values.map { v in
                guard let value = v.value else { return "n/a" }
                var s = String(format: "%.4f", value)
                if let a = v.attack, let r = reference, a.displayName != r.displayName || a.epsilon != r.epsilon {
                    s += " (\(a.displayName) ε=\(a.epsilonText))"
                }
                return s
            })
        }
        return MarkdownTable.render(header: header, rows: cells)
    }

    /// `compare.md`: what was compared (test set, attacks) and the table.
    public func markdown() -> String {
        var s = "# Comparison\n\n"
        for c in columns {
            let r = c.report
            s += "- **\(c.name)**: \(r.category), \(r.images) test images (\(r.normalImages) normal, "
            s += "\(r.anomalousImages) anomalous) at \(r.imageSize)×\(r.imageSize)"
            s += r.detector.map { "; \($0)" } ?? ""
            s += "\n"
        }
        s += "\nAUROC: 1 = every anomalous image (pixel) scored above every normal one, 0.5 = chance. Image-score "
        s += "attack: pushes normal images' scores up and defective ones' down (L∞, within ε). Patch attack: the "
        s += "paper's attack on the pixel map (normal patches up, anomalous ones down). Worst case: per image the "
        s += "strongest attack at that budget, clean included.\n\n"
        s += table()
        return s
    }

    /// Writes ``markdown()`` atomically to `path`.
    public func write(to path: String) throws {
        try AtomicFile.write(Data(markdown().utf8), to: path)
    }
}
