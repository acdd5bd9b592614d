"""The pure builders behind the Network and Cluster components, called directly with hand-worked expectations."""

from __future__ import annotations

from components.cluster import ClusterArgs, gp3_parameters, vpc_config
from components.network import NetworkArgs, ZoneLayout, subnet_tags, zone_layouts
from tests.plain import plain


def test_zone_layouts_cut_the_vpc_in_eighths_and_put_nat_in_the_first_zone_or_every_zone() -> None:
    # 10.0.0.0/16 in eight /19 blocks: 10.0.0.0, .32.0, .64.0, .96.0 | .128.0, .160.0, ...
    single = zone_layouts(NetworkArgs(cluster_name="c", availability_zones=3, nat_gateways="single"))
    assert single == [
        ZoneLayout("a", "10.0.0.0/19", "10.0.128.0/19", True),
        ZoneLayout("b", "10.0.32.0/19", "10.0.160.0/19", False),
        ZoneLayout("c", "10.0.64.0/19", "10.0.192.0/19", False),
    ]
    per_az = zone_layouts(NetworkArgs(cluster_name="c", availability_zones=2, nat_gateways="per_az"))
    assert [layout.has_nat for layout in per_az] == [True, True]


def test_subnet_tags_name_the_cluster_and_the_load_balancer_role_of_the_tier() -> None:
    args = NetworkArgs(cluster_name="llm-prod", tags={"team": "ml"})
    assert subnet_tags(args, "net-public-a", "public") == {
        "team": "ml",
        "kubernetes.io/cluster/llm-prod": "shared",
        "Name": "net-public-a",
        "kubernetes.io/role/elb": "1",
    }
    assert subnet_tags(args, "net-private-a", "private")["kubernetes.io/role/internal-elb"] == "1"


def cluster_args(**changes: object) -> ClusterArgs:
    values: dict[str, object] = {
        "region": "us-east-1",
        "kubernetes_version": "1.33",
        "vpc_id": "vpc-1",
        "private_subnet_ids": ["subnet-a"],
        "system_instance_types": ["m7i.large"],
        "system_min_size": 1,
        "system_desired_size": 2,
        "system_max_size": 3,
    }
    return ClusterArgs(**(values | changes))  # type: ignore[arg-type]


def test_public_access_cidrs_only_with_a_public_endpoint() -> None:
    private = plain(vpc_config(cluster_args(public_access_cidrs=["203.0.113.0/24"])))
    assert private == {"subnetIds": ["subnet-a"], "endpointPrivateAccess": True, "endpointPublicAccess": False}
    public = plain(vpc_config(cluster_args(endpoint_public_access=True, public_access_cidrs=["203.0.113.0/24"])))
    assert public["publicAccessCidrs"] == ["203.0.113.0/24"]


def test_gp3_parameters_carry_throughput_and_iops_only_when_set() -> None:
    base = {"type": "gp3", "encrypted": "true", "fsType": "ext4"}
    assert gp3_parameters(cluster_args()) == base
    assert gp3_parameters(cluster_args(volume_throughput_mibps=500, volume_iops=6000)) == {
        **base,
        "throughput": "500",
        "iops": "6000",
    }
