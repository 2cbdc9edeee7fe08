#if canImport(Glibc)
import Glibc
#else
import Foundation
#endif

/// Where a backend's buffers come from (tinygrad's `Allocator`): ``Tensor`` and ``Arena`` take one, so parameters,
/// gradients and activations live wherever the model's kernels can read them. Every buffer is zero-filled and
/// 64-byte aligned. The host allocator is the default; a device backend brings its own.
public protocol BufferAllocator: AnyObject, Sendable {
    /// `count` zero-filled elements (at least one is allocated, so the pointer is never dangling).
    func allocate<T: NNScalar>(_ type: T.Type, count: Int) -> UnsafeMutablePointer<T>
    /// Frees a pointer returned by ``allocate(_:count:)``.
    func deallocate<T: NNScalar>(_ pointer: UnsafeMutablePointer<T>)
}

/// Host memory (`UnsafeMutableRawPointer.allocate`, 64-byte aligned).
public final class HostAllocator: BufferAllocator, @unchecked Sendable {
    public static let shared = HostAllocator()
    public init() {}

    public func allocate<T: NNScalar>(_ type: T.Type, count: Int) -> UnsafeMutablePointer<T> {
        let n = max(count, 1)
        let raw = UnsafeMutableRawPointer.allocate(byteCount: n * MemoryLayout<T>.stride, alignment: 64)
        memset(raw, 0, n * MemoryLayout<T>.stride)
        return raw.bindMemory(to: T.self, capacity: n)
    }

    public func deallocate<T: NNScalar>(_ pointer: UnsafeMutablePointer<T>) {
        UnsafeMutableRawPointer(pointer).deallocate()
    }
}
