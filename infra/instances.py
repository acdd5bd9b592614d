"""EC2 instance types the platform can run on: GPU nodes for vLLM, CPU nodes for system pods.

Prices are on-demand Linux prices in us-east-1, in USD per hour. This code has no live access to AWS, so
each figure is "as listed on the AWS EC2 On-Demand pricing page, us-east-1" in the month named next to it,
from the engineer's best knowledge; re-check them before quoting a budget. Hardware figures (vCPUs, memory,
GPUs, local NVMe) come from the AWS EC2 instance-types pages (accelerated computing / general purpose /
compute optimized).

GPU memory is the usable figure that PyTorch (and therefore vLLM's memory profiler, "total_gpu_memory") sees,
not the marketing number: a 24 GB A10G shows 23028 MiB in nvidia-smi and ~22.07 GiB to PyTorch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

GpuModel = Literal["T4", "A10G", "L4", "L40S", "A100-40GB", "A100-80GB", "H100-80GB", "H200-141GB"]


@dataclass(frozen=True)
class GpuSpec:
    """One GPU model as vLLM sees it."""

    model: GpuModel
    # What torch.cuda.mem_get_info() reports as total; vLLM multiplies this by gpu_memory_utilization.
    usable_memory_gib: float
    # CUDA compute capability, e.g. 8.6; vLLM's quantization gates compare against it (as 86).
    compute_capability: float


# Usable memory per GPU, each with where the figure was seen:
GPU_SPECS: dict[GpuModel, GpuSpec] = {
    # Colab/EC2 T4 OOM messages: "14.74 GiB total capacity" (nvidia-smi 15360 MiB).
    "T4": GpuSpec("T4", 14.74, 7.5),
    # vLLM log on a 24 GB A10 (same 23028 MiB as A10G): "total_gpu_memory (22.07GiB)" — oracle-samples/
    # oci-data-science-ai-samples ai-quick-actions/troubleshooting-tips.md.
    "A10G": GpuSpec("A10G", 22.07, 8.6),
    # nvidia-smi shows 23034 MiB for L4 (modal-labs/modal-client#2797), 6 MiB more than A10G: same usable
    # figure.
    "L4": GpuSpec("L4", 22.07, 8.9),
    # vLLM logs on 46068 MiB cards (L40S/A40): "total_gpu_memory (44.39GiB)".
    "L40S": GpuSpec("L40S", 44.39, 8.9),
    # vLLM log on 4x A100-40GB: "total_gpu_memory (39.38GiB)" — vllm-project/vllm#16570.
    "A100-40GB": GpuSpec("A100-40GB", 39.38, 8.0),
    # vLLM logs on A100 80GB (nvidia-smi 81920 MiB) report "total_gpu_memory" of 79.15-79.33 GiB. No catalog
    # row uses it yet (p4de.24xlarge would); kept for custom instance types and the planner's checks.
    "A100-80GB": GpuSpec("A100-80GB", 79.15, 8.0),
    # vLLM logs on H100 80GB HBM3 (nvidia-smi 81559 MiB): "total_gpu_memory (79.11GiB)".
    "H100-80GB": GpuSpec("H100-80GB", 79.11, 9.0),
    # vLLM log on 8 x H200 (nvidia-smi 143771 MiB): "total_gpu_memory (139.81GiB) x gpu_memory_utilization (0.85)"
    # (a public offline-install notes file found by searching GitHub for that line). Hopper, like H100: 9.0.
    "H200-141GB": GpuSpec("H200-141GB", 139.81, 9.0),
}


@dataclass(frozen=True)
class InstanceType:
    """One EC2 instance type. GPU fields are None/0 for CPU-only types."""

    name: str
    vcpus: int
    memory_gib: float
    gpu: GpuSpec | None
    gpu_count: int
    # Instance-store NVMe in GB (0 = EBS only); where model weights can be cached without an EBS volume.
    local_nvme_gb: int
    on_demand_usd_per_hour: float

    @property
    def gpu_model(self) -> GpuModel | None:
        return self.gpu.model if self.gpu else None

    @property
    def gpu_memory_gib(self) -> float:
        """Usable memory of one GPU in GiB (0.0 for CPU types)."""
        return self.gpu.usable_memory_gib if self.gpu else 0.0

    @property
    def compute_capability(self) -> float | None:
        return self.gpu.compute_capability if self.gpu else None


def _gpu(name: str, vcpus: int, mem: float, gpu: GpuModel, count: int, nvme: int, price: float) -> InstanceType:
    return InstanceType(name, vcpus, mem, GPU_SPECS[gpu], count, nvme, price)


def _cpu(name: str, vcpus: int, mem: float, price: float) -> InstanceType:
    return InstanceType(name, vcpus, mem, None, 0, 0, price)


_ROWS: tuple[InstanceType, ...] = (
    # G4dn (NVIDIA T4): as listed on the AWS EC2 On-Demand pricing page, us-east-1, May 2025.
    _gpu("g4dn.xlarge", 4, 16, "T4", 1, 125, 0.526),
    _gpu("g4dn.12xlarge", 48, 192, "T4", 4, 900, 3.912),
    # G5 (NVIDIA A10G 24 GB): as listed on the AWS EC2 On-Demand pricing page, us-east-1, May 2025.
    _gpu("g5.xlarge", 4, 16, "A10G", 1, 250, 1.006),
    _gpu("g5.2xlarge", 8, 32, "A10G", 1, 450, 1.212),
    _gpu("g5.4xlarge", 16, 64, "A10G", 1, 600, 1.624),
    _gpu("g5.12xlarge", 48, 192, "A10G", 4, 3800, 5.672),
    _gpu("g5.48xlarge", 192, 768, "A10G", 8, 7600, 16.288),
    # G6 (NVIDIA L4 24 GB): as listed on the AWS EC2 On-Demand pricing page, us-east-1, May 2025.
    _gpu("g6.xlarge", 4, 16, "L4", 1, 250, 0.8048),
    _gpu("g6.2xlarge", 8, 32, "L4", 1, 450, 0.9776),
    _gpu("g6.12xlarge", 48, 192, "L4", 4, 3760, 4.6016),
    # G6e (NVIDIA L40S 48 GB): as listed on the AWS EC2 On-Demand pricing page, us-east-1, May 2025.
    _gpu("g6e.xlarge", 4, 32, "L40S", 1, 250, 1.861),
    _gpu("g6e.2xlarge", 8, 64, "L40S", 1, 450, 2.24208),
    _gpu("g6e.12xlarge", 48, 384, "L40S", 4, 3800, 10.49264),
    _gpu("g6e.48xlarge", 192, 1536, "L40S", 8, 7600, 30.13118),
    # P4d / P5: as listed on the AWS EC2 On-Demand pricing page, us-east-1, June 2025, after AWS cut
    # P4/P5 on-demand prices that month (before: p4d.24xlarge $32.7726, p5.48xlarge $98.32).
    _gpu("p4d.24xlarge", 96, 1152, "A100-40GB", 8, 8000, 21.96),
    _gpu("p5.48xlarge", 192, 2048, "H100-80GB", 8, 30400, 55.04),
    # P5en (8 x NVIDIA H200 141 GB, 8 x 3840 GB NVMe): AWS EC2 P5 instance page; $63.296 on demand in us-east-1 as
    # dstack's AWS offer listing printed it in August 2026 (dstackai/dstack#4110). p5e.48xlarge (same GPUs) has no
    # published On-Demand rate (Capacity Blocks and reservations only), so it is not a row: a plan could not cost it.
    _gpu("p5en.48xlarge", 192, 2048, "H200-141GB", 8, 30720, 63.296),
    # System-node CPU types: as listed on the AWS EC2 On-Demand pricing page, us-east-1, May 2025.
    _cpu("m6i.large", 2, 8, 0.096),
    _cpu("m6i.xlarge", 4, 16, 0.192),
    _cpu("m7i.large", 2, 8, 0.1008),
    _cpu("m7i.xlarge", 4, 16, 0.2016),
    _cpu("c6i.xlarge", 4, 8, 0.17),
)

INSTANCE_TYPES: dict[str, InstanceType] = {row.name: row for row in _ROWS}
GPU_INSTANCE_TYPES: tuple[str, ...] = tuple(row.name for row in _ROWS if row.gpu_count > 0)
CPU_INSTANCE_TYPES: tuple[str, ...] = tuple(row.name for row in _ROWS if row.gpu_count == 0)

# Cost estimates for SPOT capacity assume this fraction off the on-demand price. AWS advertises "up to 90%";
# GPU spot prices in us-east-1 have mostly sat 55-70% below on-demand, and they move and get reclaimed, so
# we budget with a conservative 50%. A plan's SPOT cost is an estimate, never a quote.
SPOT_DISCOUNT = 0.50


def lookup(instance_type: str) -> InstanceType:
    """The catalog row for an instance type; KeyError naming the known types otherwise."""
    try:
        return INSTANCE_TYPES[instance_type]
    except KeyError:
        raise KeyError(
            f"unknown instance type {instance_type!r}; known types: {', '.join(sorted(INSTANCE_TYPES))}"
        ) from None
