import Foundation
import PatchGuardCore
import PatchGuardMethod

// What `patchguard predict` writes into its run directory (README, "Use a trained model").
//
// predictions.csv — one row per input file, in input order, RFC 4180 quoting, header:
//
//   index, path, width, height, score, normalized_score, anomalous, threshold, overlay,
//   attack_goal, attacked_score, attacked_normalized_score, attacked_anomalous, attacked_image, attacked_overlay,
//   error
//
//   index                 0-based position in the input list
//   path                  the input file as found (folders expanded)
//   width, height         the file's own size in pixels
//   score                 image score: mean of the top-k patch logits at the model's input size (eval.top_k)
//   normalized_score      ScoreCalibration's u(score) in (0, 1); > 0.5 exactly when anomalous
//   anomalous             true when score > threshold, else false
//   threshold             the threshold used (the checkpoint's, or --threshold)
//   overlay               heat-map overlay PNG, relative to the run directory (overlays/NNNN_<stem>.png)
//   attack_goal           with --attack: "anomalous" (a normal decision attacked to look anomalous) or "normal"
//   attacked_*            with --attack: the attacked image's score, normalised score and decision, the attacked
//                         image (attacked/NNNN_<stem>.png) and its overlay (attacked/NNNN_<stem>_overlay.png)
//   error                 empty, or why the file could not be predicted (then every score column is empty)
//
// predictions.json — the same rows under "predictions" (null where the CSV is empty; "attack" null without
// --attack), plus the settings: {"format": "patchguard-predictions-v1", "checkpoint", "image_size", "top_k",
// "threshold", "threshold_source": "checkpoint" | "--threshold", "threshold_fpr" | null, "validation_images" |
// null, "normalization": {"center", "scale"}, "attack": {"name", "norm", "epsilon", "steps", "alpha", "target"}
// | null, "count", "anomalous", "normal", "failed", "flipped" | null, "predictions": […]}.

/// The attacked version of one prediction.
public struct AttackedPrediction: Codable, Equatable, Sendable {
    /// `"anomalous"` (the clean decision was normal) or `"normal"`.
    public var goal: String
    public var score: Double
    public var normalizedScore: Double
    public var anomalous: Bool
    public var image: String
    public var overlay: String

    enum CodingKeys: String, CodingKey {
        case goal, score, normalizedScore = "normalized_score", anomalous, image, overlay
    }
}

/// One input file's prediction (or its error).
public struct Prediction: Codable, Equatable, Sendable {
    public var index: Int
    public var path: String
    public var width: Int?
    public var height: Int?
    public var score: Double?
    public var normalizedScore: Double?
    public var anomalous: Bool?
    public var overlay: String?
    public var attacked: AttackedPrediction?
    public var error: String?

    enum CodingKeys: String, CodingKey {
        case index, path, width, height, score, normalizedScore = "normalized_score", anomalous, overlay
        case attacked = "attack", error
    }

    public init(index: Int, path: String, width: Int? = nil, height: Int? = nil, score: Double? = nil,
                normalizedScore: Double? = nil, anomalous: Bool? = nil, overlay: String? = nil,
                attacked: AttackedPrediction? = nil, error: String? = nil) {
        self.index = index; self.path = path; self.width = width; self.height = height; self.score = score
        self.normalizedScore = normalizedScore; self.anomalous = anomalous; self.overlay = overlay
        self.attacked = attacked; self.error = error
    }

    /// Every key, `null` where there is no value.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(index, forKey: .index); try c.encode(path, forKey: .path)
        try c.encode(width, forKey: .width); try c.encode(height, forKey: .height)
        try c.encode(score, forKey: .score); try c.encode(normalizedScore, forKey: .normalizedScore)
        try c.encode(anomalous, forKey: .anomalous); try c.encode(overlay, forKey: .overlay)
        try c.encode(attacked, forKey: .attacked); try c.encode(error, forKey: .error)
    }
}

/// Everything `predictions.json` holds (see the file header).
public struct PredictionReport: Codable, Equatable, Sendable {
    public struct Normalization: Codable, Equatable, Sendable {
        public var center: Double
        public var scale: Double
    }
    public struct AttackSettings: Codable, Equatable, Sendable {
        public var name: String, norm: String, epsilon: Double, steps: Int, alpha: Double, target: String
    }

    public var format = "patchguard-predictions-v1"
    public var checkpoint: String
    public var imageSize: Int
    public var topK: Int
    public var threshold: Double
    /// `"checkpoint"` or `"--threshold"`.
    public var thresholdSource: String
    public var thresholdFPR: Double?
    public var validationImages: Int?
    public var normalization: Normalization
    public var attack: AttackSettings?
    public var predictions: [Prediction]

    public var count: Int { predictions.count }
    public var anomalous: Int { predictions.filter { $0.anomalous == true }.count }
    public var normal: Int { predictions.filter { $0.anomalous == false }.count }
    public var failed: Int { predictions.filter { $0.error != nil }.count }
    /// With an attack: how many decisions the attack turned around.
    public var flipped: Int? {
        attack == nil ? nil : predictions.filter { p in p.attacked.map { $0.anomalous != p.anomalous } ?? false }.count
    }

    enum CodingKeys: String, CodingKey {
        case format, checkpoint, imageSize = "image_size", topK = "top_k", threshold
        case thresholdSource = "threshold_source", thresholdFPR = "threshold_fpr"
        case validationImages = "validation_images", normalization, attack, predictions
        case count, anomalous, normal, failed, flipped
    }

    public init(checkpoint: String, imageSize: Int, topK: Int, threshold: Double, thresholdSource: String,
                thresholdFPR: Double?, validationImages: Int?, normalization: Normalization,
                attack: AttackSettings?, predictions: [Prediction]) {
        self.checkpoint = checkpoint; self.imageSize = imageSize; self.topK = topK; self.threshold = threshold
        self.thresholdSource = thresholdSource; self.thresholdFPR = thresholdFPR
        self.validationImages = validationImages; self.normalization = normalization; self.attack = attack
        self.predictions = predictions
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(checkpoint: try c.decode(String.self, forKey: .checkpoint),
                  imageSize: try c.decode(Int.self, forKey: .imageSize), topK: try c.decode(Int.self, forKey: .topK),
                  threshold: try c.decode(Double.self, forKey: .threshold),
                  thresholdSource: try c.decode(String.self, forKey: .thresholdSource),
                  thresholdFPR: try c.decodeIfPresent(Double.self, forKey: .thresholdFPR),
                  validationImages: try c.decodeIfPresent(Int.self, forKey: .validationImages),
                  normalization: try c.decode(Normalization.self, forKey: .normalization),
                  attack: try c.decodeIfPresent(AttackSettings.self, forKey: .attack),
                  predictions: try c.decode([Prediction].self, forKey: .predictions))
        format = try c.decode(String.self, forKey: .format)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(format, forKey: .format); try c.encode(checkpoint, forKey: .checkpoint)
        try c.encode(imageSize, forKey: .imageSize); try c.encode(topK, forKey: .topK)
        try c.encode(threshold, forKey: .threshold); try c.encode(thresholdSource, forKey: .thresholdSource)
        try c.encode(thresholdFPR, forKey: .thresholdFPR); try c.encode(validationImages, forKey: .validationImages)
        try c.encode(normalization, forKey: .normalization); try c.encode(attack, forKey: .attack)
        try c.encode(count, forKey: .count); try c.encode(anomalous, forKey: .anomalous)
        try c.encode(normal, forKey: .normal); try c.encode(failed, forKey: .failed)
        try c.encode(flipped, forKey: .flipped); try c.encode(predictions, forKey: .predictions)
    }

    public static let jsonFile = "predictions.json", csvFile = "predictions.csv"

    /// The exit status of `patchguard predict`: 0 when every file was predicted, 3 (the status of an I/O error)
    /// when any could not be read or decoded — after every other file was predicted and both reports written, so a
    /// script notices the failure and still finds the results.
    public var exitStatus: Int32 { failed > 0 ? 3 : 0 }

    /// Pretty-printed, key-sorted JSON with a final newline.
    public func jsonData() throws -> Data {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        var data = try e.encode(self)
        data.append(0x0A)
        return data
    }

    public static let csvColumns = ["index", "path", "width", "height", "score", "normalized_score", "anomalous",
                                    "threshold", "overlay", "attack_goal", "attacked_score",
                                    "attacked_normalized_score", "attacked_anomalous", "attacked_image",
                                    "attacked_overlay", "error"]

    /// The CSV text (see the file header).
    public func csv() -> String {
        // A value that is a Float (scores, a calibrated threshold) in its shortest round-tripping Float form.
        func number(_ v: Double?) -> String {
            guard let v else { return "" }
            return Double(Float(v)) == v ? "\(Float(v))" : "\(v)"
        }
        func field(_ s: String) -> String {
            s.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" })
                ? "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : s
        }
        var lines = [Self.csvColumns.joined(separator: ",")]
        for p in predictions {
            let ok = p.error == nil
            let a = p.attacked
            let cells: [String] = [
                "\(p.index)", p.path, p.width.map(String.init) ?? "", p.height.map(String.init) ?? "",
                number(p.score), number(p.normalizedScore), p.anomalous.map { "\($0)" } ?? "",
                ok ? number(threshold) : "", p.overlay ?? "",
                a?.goal ?? "", number(a?.score), number(a?.normalizedScore), a.map { "\($0.anomalous)" } ?? "",
                a?.image ?? "", a?.overlay ?? "", p.error ?? "",
            ]
            lines.append(cells.map(field).joined(separator: ","))
        }
        return lines.joined(separator: "\r\n") + "\r\n"
    }

    /// The summary table on screen.
    public func table() -> String {
        var source = thresholdSource == "checkpoint" ? "stored in the checkpoint" : "from --threshold"
        if thresholdSource == "checkpoint", let fpr = thresholdFPR, let n = validationImages {
            source += ", FPR target \(ScoreCalibration.percent(fpr)) on \(n) validation normals"
        }
        var header = ["images", "anomalous", "normal", "failed", "threshold"]
        var row = ["\(count)", "\(anomalous)", "\(normal)", "\(failed)", String(format: "%.4g (%@)", threshold, source)]
        if let attack, let flipped {
            header.append("attack")
            row.append("\(attack.name.uppercased())-\(attack.steps) \(attack.norm) ε=\(EvaluationReport.formatBudget(attack.epsilon, norm: attack.norm == "l2" ? .l2 : .linf)): "
                       + "\(flipped) of \(count - failed) decisions flipped")
        }
        return MarkdownTable.render(header: header, rows: [row])
    }
}
