
/// Pixel neighbourhood used to join mask pixels into regions.
public enum Connectivity: Int, Sendable, Codable {
    /// Edge neighbours only (up, down, left, right).
    case four = 4
    /// Edge and corner neighbours: the default, as in MVTec's `scipy.ndimage.label(structure=ones(3,3))` and
    /// anomalib's OpenCV-based labelling.
    case eight = 8
}

/// Labels the connected regions of a binary `height × width` mask (row-major, `mask[i] != 0` is foreground).
///
/// Returns one label per pixel (`0` background, `1…count` regions, numbered in raster order of their first pixel)
/// and the region count. Iterative flood fill with an explicit stack: O(H·W), no recursion.
public func connectedComponents(mask: [UInt8], width: Int, height: Int,
                                connectivity: Connectivity = .eight) throws -> (labels: [Int32], count: Int) {
    guard width > 0, height > 0, mask.count == width * height else {
        throw PatchGuardError.invalidArgument("connected components: \(mask.count) values for \(height)×\(width)")
    }
    var labels = [Int32](repeating: 0, count: mask.count)
    var count: Int32 = 0
    var stack = [Int]()
    let offsets: [(Int, Int)] = connectivity == .eight
        ? [(-1, -1), (0, -1), (1, -1), (-1, 0), (1, 0), (-1, 1), (0, 1), (1, 1)]
        : [(0, -1), (-1, 0), (1, 0), (0, 1)]
    for start in 0..<mask.count where mask[start] != 0 && labels[start] == 0 {
        count += 1
        labels[start] = count
        stack.append(start)
        while let p = stack.popLast() {
            let y = p / width, x = p - y * width
            for (dx, dy) in offsets {
                let nx = x + dx, ny = y + dy
                guard nx >= 0, nx < width, ny >= 0, ny < height else { continue }
                let q = ny * width + nx
                if mask[q] != 0 && labels[q] == 0 {
                    labels[q] = count
                    stack.append(q)
                }
            }
        }
    }
    return (labels, Int(count))
}
