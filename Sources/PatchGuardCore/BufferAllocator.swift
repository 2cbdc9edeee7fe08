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

/// Host memory, 64-byte aligned. Buffers of at least ``lazyThreshold`` bytes are anonymous `mmap` mappings: the
/// kernel hands out zero pages on first touch, so a buffer's pages join the resident set only when written (an
/// activation arena sized for training costs a forward-only pass nothing for the blocks it never writes), and
/// `munmap` returns them to the system at once. Smaller buffers come from the heap, zeroed by `memset`. Each
/// buffer is preceded by a header (one page for mappings, 64 bytes otherwise) that records how it was made.
public final class HostAllocator: BufferAllocator, @unchecked Sendable {
    public static let shared = HostAllocator()
    public init() {}

    /// Byte size from which buffers are mapped instead of allocated on the heap.
    public static let lazyThreshold = 1 << 20
    static let page = Int(sysconf(Int32(_SC_PAGESIZE)))
    static let heapHeader = 64
    static let mappedMagic: UInt64 = 0x7067_6d6d_6170_6564, heapMagic: UInt64 = 0x7067_6865_6170_6f6b

    public func allocate<T: NNScalar>(_ type: T.Type, count: Int) -> UnsafeMutablePointer<T> {
        let bytes = max(count, 1) * MemoryLayout<T>.stride
        if bytes >= Self.lazyThreshold {
            let total = Self.page + (bytes + Self.page - 1) / Self.page * Self.page
            guard let base = mmap(nil, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
                  base != MAP_FAILED else {
                fatalError("HostAllocator: out of memory mapping \(total) bytes (errno \(errno))")
            }
            base.storeBytes(of: Self.mappedMagic, as: UInt64.self)
            base.storeBytes(of: UInt64(total), toByteOffset: 8, as: UInt64.self)
            return (base + Self.page).bindMemory(to: T.self, capacity: bytes / MemoryLayout<T>.stride)
        }
        let base = UnsafeMutableRawPointer.allocate(byteCount: Self.heapHeader + bytes, alignment: 64)
        base.storeBytes(of: Self.heapMagic, as: UInt64.self)
        memset(base + Self.heapHeader, 0, bytes)
        return (base + Self.heapHeader).bindMemory(to: T.self, capacity: max(count, 1))
    }

    public func deallocate<T: NNScalar>(_ pointer: UnsafeMutablePointer<T>) {
        let p = UnsafeMutableRawPointer(pointer)
        // A heap buffer's header is the 64 bytes before it; a mapping's is the page before it (whose bytes 64 before
        // the buffer are zero, so the heap test never reads outside either kind's own memory).
        if (p - Self.heapHeader).load(as: UInt64.self) == Self.heapMagic {
            (p - Self.heapHeader).deallocate()
            return
        }
        let base = p - Self.page
        precondition(Int(bitPattern: p) % Self.page == 0 && base.load(as: UInt64.self) == Self.mappedMagic,
                     "HostAllocator: pointer not from this allocator")
        munmap(base, Int(base.load(fromByteOffset: 8, as: UInt64.self)))
    }
}
