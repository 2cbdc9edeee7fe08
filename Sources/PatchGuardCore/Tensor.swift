#if canImport(Glibc)
import Glibc
#else
import Foundation
#endif

/// A dense row-major tensor that owns its memory (64-byte aligned).
///
/// Kernels take raw pointers and sizes (llm.c style); `Tensor` is the owner and carries the shape. Arenas hand out
/// non-owning ``TensorView``s into one allocation.
public final class Tensor<T: NNScalar>: @unchecked Sendable {
    public private(set) var shape: [Int]
    public let capacity: Int
    public let data: UnsafeMutablePointer<T>
    /// Where `data` came from (and goes back to in `deinit`).
    public let allocator: any BufferAllocator

    /// A zero-filled tensor of `shape`, allocated by `allocator` (host memory by default).
    public init(shape: [Int], allocator: any BufferAllocator = HostAllocator.shared) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in \(shape)")
        self.shape = shape
        self.capacity = shape.reduce(1, *)
        self.allocator = allocator
        data = allocator.allocate(T.self, count: capacity)
    }

    public convenience init(shape: [Int], values: [T]) {
        precondition(values.count == shape.reduce(1, *), "\(values.count) values for shape \(shape)")
        self.init(shape: shape)
        values.withUnsafeBufferPointer { data.update(from: $0.baseAddress!, count: values.count) }
    }

    public convenience init(shape: [Int], repeating value: T) {
        self.init(shape: shape)
        data.update(repeating: value, count: capacity)
    }

    deinit { allocator.deallocate(data) }

    public var count: Int { shape.reduce(1, *) }
    public var buffer: UnsafeMutableBufferPointer<T> { UnsafeMutableBufferPointer(start: data, count: count) }
    public var array: [T] { Array(buffer) }
    public var view: TensorView<T> { TensorView(data, shape: shape) }

    /// Changes the shape in place; the element count must stay within the allocation.
    public func reshape(_ newShape: [Int]) {
        precondition(newShape.reduce(1, *) <= capacity, "reshape \(shape) → \(newShape) exceeds capacity \(capacity)")
        shape = newShape
    }

    public subscript(i: Int) -> T {
        get { data[i] }
        set { data[i] = newValue }
    }

    /// Sets every element to +0 with one memset (all-zero bits are +0 for every `NNScalar`). Unlike
    /// `update(repeating:)` this stays fast when called from unspecialised generic code.
    public func zero() { memset(data, 0, count * MemoryLayout<T>.stride) }

    public func copy() -> Tensor<T> {
        let t = Tensor(shape: shape)
        t.data.update(from: data, count: count)
        return t
    }

    /// Element-wise conversion to another scalar type (Float ↔ Double for checks).
    public func converted<U: NNScalar>(to: U.Type = U.self) -> Tensor<U> {
        let t = Tensor<U>(shape: shape)
        for i in 0..<count { t.data[i] = U(data[i]) }
        return t
    }
}

/// A non-owning window (pointer + shape) into a ``Tensor`` or an ``Arena``.
public struct TensorView<T: NNScalar>: @unchecked Sendable {
    public let data: UnsafeMutablePointer<T>
    public let shape: [Int]
    public init(_ data: UnsafeMutablePointer<T>, shape: [Int]) { self.data = data; self.shape = shape }
    public var count: Int { shape.reduce(1, *) }
    public var buffer: UnsafeMutableBufferPointer<T> { UnsafeMutableBufferPointer(start: data, count: count) }
    /// Sets every element to +0 (one memset; see ``Tensor/zero()``).
    public func zero() { memset(data, 0, count * MemoryLayout<T>.stride) }
}
