"""Import timm on a CPU-only torch, working around a CUDA-only torchvision wheel.

timm imports ``torchvision`` unconditionally (``timm.layers.create_norm`` needs
``torchvision.ops.misc.FrozenBatchNorm2d``). On Linux, PyPI only hosts the CUDA build of
torchvision; with the CPU torch wheel its compiled ``_C`` extension cannot be loaded
(``libcudart.so`` / ``libtorch_cuda.so`` missing). torchvision's pure-Python parts still work,
except that ``torchvision/_meta_registrations.py`` registers fake kernels for the ops
``torchvision::nms`` and ``torchvision::qnms`` unconditionally, which fails when ``_C`` did not
define them.

``import_timm()`` checks whether torchvision's ``_C`` loads; only if it does not, it defines the
schemas of those two ops (no kernels: calling them would raise) so the import succeeds. None of
the ViT code used by our tools touches torchvision ops. With a matching CPU torchvision
installed, nothing is patched.
"""

import glob
import importlib.util
import os

import torch

# Kept alive for the life of the process: dropping the Library object would deregister the ops.
_SHIM_LIB = None


def _torchvision_ops_loadable() -> bool:
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return True  # not installed: let the real import error surface
    pkg_dir = list(spec.submodule_search_locations)[0]
    libs = glob.glob(os.path.join(pkg_dir, "_C*.so"))
    if not libs:
        return False
    try:
        torch.ops.load_library(libs[0])
        return True
    except (OSError, RuntimeError):
        return False


def install_torchvision_shim():
    """Define the two torchvision op schemas if (and only if) torchvision's ``_C`` cannot load. Needed before
    importing anything that imports torchvision: timm, and diffusers' U-Net (``import_diffusers``)."""
    global _SHIM_LIB
    if _SHIM_LIB is None and not _torchvision_ops_loadable():
        _SHIM_LIB = torch.library.Library("torchvision", "DEF")
        _SHIM_LIB.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _SHIM_LIB.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")


def import_timm():
    """Return the ``timm`` module, applying the torchvision shim if (and only if) needed."""
    install_torchvision_shim()
    import timm  # noqa: E402

    return timm


def import_diffusers():
    """Return the ``diffusers`` module (its U-Net imports torchvision too), with the same shim."""
    install_torchvision_shim()
    import diffusers  # noqa: E402

    return diffusers


def torchvision_shimmed() -> bool:
    """Whether ``import_timm`` had to apply the shim (recorded in fixture metadata)."""
    return _SHIM_LIB is not None
