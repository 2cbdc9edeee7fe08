import PatchGuardCore

/// An image with `channels` planes of `height × width` Float pixels in [0, 1], stored planar (CHW), row-major —
/// the layout the model consumes (B, 3, H, W). RGB images have 3 channels, masks and gray images 1.
public struct Image: Sendable, Equatable {
    public var width: Int
    public var height: Int
    public var channels: Int
    /// `channels × height × width` values, plane after plane.
    public var pixels: [Float]

    public init(width: Int, height: Int, channels: Int, pixels: [Float]) {
        precondition(pixels.count == width * height * channels,
                     "\(pixels.count) pixels for \(channels)×\(height)×\(width)")
        self.width = width; self.height = height; self.channels = channels; self.pixels = pixels
    }

    /// A constant image.
    public init(width: Int, height: Int, channels: Int, value: Float = 0) {
        self.init(width: width, height: height, channels: channels,
                  pixels: [Float](repeating: value, count: width * height * channels))
    }

    public var planeSize: Int { width * height }

    @inlinable
    public subscript(c: Int, y: Int, x: Int) -> Float {
        get { pixels[(c * height + y) * width + x] }
        set { pixels[(c * height + y) * width + x] = newValue }
    }
}
