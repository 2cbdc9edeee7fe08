/// One allocation holding many named tensors (parameters, gradients, optimizer moments, activations).
///
/// Zeroing is one memset, an optimizer is one loop over `storage`, a checkpoint is one write. Views are laid out
/// in the order they were declared; each starts on a 16-element boundary.
public final class Arena<T: NNScalar>: @unchecked Sendable {
    public struct Entry: Sendable {
        public let name: String
        public let shape: [Int]
        public let offset: Int
        public var count: Int { shape.reduce(1, *) }
    }

    public private(set) var entries: [Entry] = []
    private var index: [String: Int] = [:]
    public private(set) var storage: Tensor<T>

    /// Declares the layout; memory is allocated once, zero-filled, by `allocator` (the model's backend; host memory
    /// by default).
    public init(layout: [(name: String, shape: [Int])], allocator: any BufferAllocator = HostAllocator.shared) {
        var offset = 0
        for (name, shape) in layout {
            precondition(index[name] == nil, "duplicate arena entry \(name)")
            index[name] = entries.count
            entries.append(Entry(name: name, shape: shape, offset: offset))
            offset += (shape.reduce(1, *) + 15) / 16 * 16
        }
        storage = Tensor(shape: [offset], allocator: allocator)
    }

    /// An arena with the same layout (e.g. gradients or AdamW moments for a parameter arena).
    public convenience init(sameLayoutAs other: Arena<some NNScalar>,
                            allocator: any BufferAllocator = HostAllocator.shared) {
        self.init(layout: other.entries.map { ($0.name, $0.shape) }, allocator: allocator)
    }

    public var totalCount: Int { storage.count }

    public func contains(_ name: String) -> Bool { index[name] != nil }

    public func entry(_ name: String) -> Entry {
        guard let i = index[name] else { preconditionFailure("no arena entry named \(name)") }
        return entries[i]
    }

    public subscript(_ name: String) -> TensorView<T> {
        let e = entry(name)
        return TensorView(storage.data + e.offset, shape: e.shape)
    }

    public func pointer(_ name: String) -> UnsafeMutablePointer<T> { storage.data + entry(name).offset }

    public func zero() { storage.zero() }

}
