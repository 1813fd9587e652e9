"""The one GPU table: NVIDIA GPU feature discovery (GFD) product names, short aliases, memory and MIG profiles.

The dev cluster labels its simulated nodes from it, the estimator takes the memory budget from it, and the renderer
builds node affinity from it, so a product name means the same thing everywhere.

Sources: GFD writes ``nvidia.com/gpu.product`` as NVML's product name with spaces replaced by dashes and
``nvidia.com/gpu.memory`` as NVML's total memory in MiB (NVIDIA/gpu-feature-discovery, ``internal/lm/resource.go``).
The MiB figures are the totals ``nvidia-smi`` prints for each board; ``torch.cuda.mem_get_info`` reports the same
total, which is what vLLM multiplies by ``gpu_memory_utilization``. MIG profile names come from NVIDIA's MIG user
guide ("Supported MIG Profiles").
"""

from __future__ import annotations

from dataclasses import dataclass

GIB = 1024**3
MIB = 1024**2


#: Extended resource prefix of MIG slices under the GPU operator's ``mixed`` strategy: ``nvidia.com/mig-3g.40gb``.
MIG_RESOURCE_PREFIX = "nvidia.com/mig-"


def mig_resource(profile: str) -> str:
    return MIG_RESOURCE_PREFIX + profile


@dataclass(frozen=True)
class MigProfile:
    """One MIG slice, e.g. ``1g.10gb``: GFD exposes it as the resource ``nvidia.com/mig-1g.10gb``."""

    name: str
    memory_mib: int


@dataclass(frozen=True)
class GPUProduct:
    """A GPU board as GFD names it."""

    #: Exact ``nvidia.com/gpu.product`` label value.
    product: str
    #: Short names a user may write instead (``H100-80GB``); matched case-insensitively.
    aliases: tuple[str, ...]
    #: Total device memory in MiB, the ``nvidia.com/gpu.memory`` label value.
    memory_mib: int
    #: CUDA compute capability; fp8 weights and KV cache need >= 8.9 in vLLM.
    compute_capability: tuple[int, int]
    #: GFD ``nvidia.com/gpu.family``.
    family: str
    mig_profiles: tuple[MigProfile, ...] = ()
    #: Total memory as ``torch.cuda.mem_get_info()`` reports it (what vLLM multiplies by ``gpu_memory_utilization``),
    #: in MiB, where a vLLM log shows it ("total_gpu_memory (X GiB)" / "GPU 0 has a total capacity of X GiB");
    #: ``None`` = use ``memory_mib``. Added for the estimator.
    cuda_total_mib: int | None = None

    @property
    def cuda_memory_bytes(self) -> int:
        """The device total vLLM's memory profiler sees."""
        return (self.cuda_total_mib or self.memory_mib) * MIB

    @property
    def memory_bytes(self) -> int:
        return self.memory_mib * MIB

    @property
    def memory_gib(self) -> float:
        return self.memory_mib / 1024

    @property
    def short_name(self) -> str:
        return self.aliases[0]

    def supports_fp8(self) -> bool:
        return self.compute_capability >= (8, 9)

    def mig(self, name: str) -> MigProfile:
        """The MIG profile ``name`` of this product; ``UnknownGPUError`` names the ones it has."""
        found = next((m for m in self.mig_profiles if m.name == name), None)
        if found is None:
            names = ", ".join(m.name for m in self.mig_profiles) or "none (it has no MIG)"
            raise UnknownGPUError(f"{name!r} is not a MIG profile of {self.product}; use one of: {names}")
        return found


def _mig(*profiles: tuple[str, int]) -> tuple[MigProfile, ...]:
    return tuple(MigProfile(n, m) for n, m in profiles)


GPU_PRODUCTS: tuple[GPUProduct, ...] = (
    GPUProduct("Tesla-T4", ("T4",), 15360, (7, 5), "turing", cuda_total_mib=15095),
    # 22.03 GiB as torch.cuda.mem_get_info() reports it (PyTorch's OOM message on an L4: "GPU 0 has a total capacity
    # of 22.03 GiB", three public reports found by the code index), about the 450-600 MiB below nvidia-smi's total
    # that every other board here shows; the vLLM 0.9.0.1 L4 log in tests/data/calibration fits it
    GPUProduct("NVIDIA-L4", ("L4",), 23034, (8, 9), "ada-lovelace", cuda_total_mib=22559),
    GPUProduct("NVIDIA-A10G", ("A10G",), 23028, (8, 6), "ampere", cuda_total_mib=22620),
    GPUProduct("NVIDIA-A10", ("A10",), 23028, (8, 6), "ampere", cuda_total_mib=22620),
    # "Free memory on device (43.93/44.42 GiB)": vLLM 0.10.2, 8 x L40S (tim-roethig/ai-platform, tests/data/calibration)
    GPUProduct("NVIDIA-L40S", ("L40S",), 46068, (8, 9), "ada-lovelace", cuda_total_mib=45486),
    GPUProduct(
        "NVIDIA-A100-SXM4-40GB",
        ("A100-40GB", "A100-SXM4-40GB"),
        40960,
        (8, 0),
        "ampere",
        _mig(("1g.5gb", 4864), ("2g.10gb", 9984), ("3g.20gb", 19968), ("4g.20gb", 19968), ("7g.40gb", 40192)),
        cuda_total_mib=40325,  # "total_gpu_memory (39.38GiB)", vllm-project/vllm#16570
    ),
    GPUProduct(
        "NVIDIA-A100-SXM4-80GB",
        ("A100-80GB", "A100-SXM4-80GB", "A100"),
        81920,
        (8, 0),
        "ampere",
        _mig(("1g.10gb", 9728), ("2g.20gb", 19968), ("3g.40gb", 40192), ("4g.40gb", 40192), ("7g.80gb", 80384)),
        cuda_total_mib=81050,  # "total_gpu_memory=79.15GiB"
    ),
    GPUProduct(
        "NVIDIA-H100-80GB-HBM3",
        ("H100-80GB", "H100-SXM", "H100"),
        81559,
        (9, 0),
        "hopper",
        _mig(
            ("1g.10gb", 9984),
            ("1g.20gb", 19968),
            ("2g.20gb", 19968),
            ("3g.40gb", 40192),
            ("4g.40gb", 40192),
            ("7g.80gb", 80384),
        ),
        cuda_total_mib=81090,  # "total_gpu_memory (79.19GiB)"
    ),
    GPUProduct("NVIDIA-H100-NVL", ("H100-NVL",), 95830, (9, 0), "hopper"),
    GPUProduct("NVIDIA-GeForce-RTX-3090", ("RTX-3090", "3090"), 24576, (8, 6), "ampere", cuda_total_mib=24258),
    GPUProduct("NVIDIA-GeForce-RTX-4090", ("RTX-4090", "4090"), 24564, (8, 9), "ada-lovelace", cuda_total_mib=24207),
    GPUProduct("NVIDIA-RTX-A6000", ("A6000", "RTX-A6000"), 49140, (8, 6), "ampere", cuda_total_mib=48670),
    GPUProduct("NVIDIA-L20", ("L20",), 46068, (8, 9), "ada-lovelace", cuda_total_mib=45596),
    GPUProduct(
        "NVIDIA-H200",
        ("H200", "H200-141GB"),
        143771,
        (9, 0),
        "hopper",
        _mig(
            ("1g.18gb", 16384),
            ("1g.35gb", 32768),
            ("2g.35gb", 32768),
            ("3g.71gb", 65536),
            ("4g.71gb", 65536),
            ("7g.141gb", 132096),
        ),
        # torch.cuda.mem_get_info() total on an H200 is 139.81 GiB (nvidia-smi's 143,771 MiB less what the driver
        # keeps): vLLM 0.10.2 logs "Free memory on device (139.21/139.81 GiB) on startup. Desired GPU memory
        # utilization is (0.9, 125.83 GiB)" (vllm-0.10.2 v1/worker/gpu_worker.py ``determine_available_memory``),
        # and PyTorch's OOM message says "GPU 0 has a total capacity of 139.81 GiB" on the same board. The 12 H200
        # records in tests/data/calibration fit this total (docs/estimator.md section 8).
        cuda_total_mib=143165,
    ),
)

_BY_NAME: dict[str, GPUProduct] = {}
for _p in GPU_PRODUCTS:
    for _n in (_p.product, *_p.aliases):
        _BY_NAME[_n.lower()] = _p


class UnknownGPUError(ValueError):
    """Raised for a product name that is neither a GFD name nor an alias in the table."""


def known_names() -> list[str]:
    return [p.short_name for p in GPU_PRODUCTS]


def lookup(name: str) -> GPUProduct:
    """Find a product by its GFD name or alias (case-insensitive)."""
    try:
        return _BY_NAME[name.strip().lower()]
    except KeyError:
        raise UnknownGPUError(
            f"unknown GPU product {name!r}; use a GFD product name or one of: {', '.join(known_names())}"
        ) from None


def products_with_memory_at_least(memory_mib: int) -> list[GPUProduct]:
    """Products whose whole-board memory is at least ``memory_mib`` (for node affinity by minimum memory)."""
    return [p for p in GPU_PRODUCTS if p.memory_mib >= memory_mib]


def node_labels(product: GPUProduct, count: int) -> dict[str, str]:
    """The GFD labels a node with ``count`` boards of ``product`` carries."""
    return {
        "nvidia.com/gpu.present": "true",
        "nvidia.com/gpu.product": product.product,
        "nvidia.com/gpu.memory": str(product.memory_mib),
        "nvidia.com/gpu.count": str(count),
        "nvidia.com/gpu.family": product.family,
        "nvidia.com/gpu.compute.major": str(product.compute_capability[0]),
        "nvidia.com/gpu.compute.minor": str(product.compute_capability[1]),
    }
