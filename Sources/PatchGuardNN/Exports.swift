// The networks are written against the kernel protocol; callers of PatchGuardNN see the kernels too.
@_exported import PatchGuardKernels
