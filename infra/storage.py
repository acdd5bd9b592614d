"""The EBS gp3 performance the platform provisions for model weights, shared by the planner and the volumes.

One figure drives three places, so that the start-up budget matches the disks that are actually created: the
planner's weight read rate (infra/capacity.py `STARTUP_READ_BYTES_PER_SECOND`), the `gp3` StorageClass that model
cache PVCs use (components/cluster.py) and the GPU nodes' launch-template root volume, where an emptyDir cache lives.
"""

from __future__ import annotations

# gp3 limits, from the Amazon EBS User Guide, "General Purpose SSD volumes"
# (https://docs.aws.amazon.com/ebs/latest/userguide/general-purpose.html): every gp3 volume gets a baseline of
# 3,000 IOPS and 125 MiB/s; IOPS go up to 16,000 and at most 500 IOPS per GiB; throughput goes up to 1,000 MiB/s
# and at most 0.25 MiB/s per provisioned IOPS. (AWS raised the gp3 ceilings in 2025 for new volumes; the older,
# lower ones are kept here because they hold everywhere.) The EBS CSI driver takes `iops` and `throughput` as
# StorageClass parameters; without `throughput` it creates 125 MiB/s volumes
# (kubernetes-sigs/aws-ebs-csi-driver docs/parameters.md).
GP3_BASELINE_IOPS = 3000
GP3_BASELINE_THROUGHPUT_MIBPS = 125
GP3_MAX_IOPS = 16000
GP3_MAX_THROUGHPUT_MIBPS = 1000
GP3_MAX_MIBPS_PER_IOPS = 0.25
GP3_MAX_IOPS_PER_GIB = 500

# What weights are read at: twice gp3's baseline, for $0.04 per extra MiB/s-month (us-east-1), i.e. $5 a month per
# volume. 3,000 IOPS (the free baseline) allows up to 750 MiB/s, so no extra IOPS are bought.
WEIGHT_VOLUME_THROUGHPUT_MIBPS = 250
WEIGHT_VOLUME_IOPS = GP3_BASELINE_IOPS


def gp3_problems(throughput_mibps: int, iops: int, size_gib: int | None = None) -> list[str]:
    """What AWS would refuse in a gp3 volume request (checked here so a preview cannot pass what `up` rejects)."""
    problems: list[str] = []
    if not GP3_BASELINE_THROUGHPUT_MIBPS <= throughput_mibps <= GP3_MAX_THROUGHPUT_MIBPS:
        problems.append(
            f"throughput {throughput_mibps} MiB/s is outside gp3's "
            f"{GP3_BASELINE_THROUGHPUT_MIBPS}-{GP3_MAX_THROUGHPUT_MIBPS} MiB/s"
        )
    if not GP3_BASELINE_IOPS <= iops <= GP3_MAX_IOPS:
        problems.append(f"iops {iops} is outside gp3's {GP3_BASELINE_IOPS}-{GP3_MAX_IOPS}")
    if throughput_mibps > iops * GP3_MAX_MIBPS_PER_IOPS:
        problems.append(
            f"throughput {throughput_mibps} MiB/s needs at least {throughput_mibps / GP3_MAX_MIBPS_PER_IOPS:.0f} "
            f"IOPS (gp3 allows {GP3_MAX_MIBPS_PER_IOPS} MiB/s per IOPS), got {iops}"
        )
    if size_gib is not None and iops > size_gib * GP3_MAX_IOPS_PER_GIB:
        problems.append(f"iops {iops} exceed {GP3_MAX_IOPS_PER_GIB} per GiB of a {size_gib} GiB volume")
    return problems
