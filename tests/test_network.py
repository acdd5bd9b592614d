"""The network component under the Pulumi mocks: subnets per AZ, NAT layout, tags load balancers need."""

from __future__ import annotations

import ipaddress

from tests.conftest import one, rendered, resources_of


def test_prod_spreads_private_and_public_subnets_over_three_zones_with_a_nat_each() -> None:
    result = rendered("prod")
    subnets = [record.inputs for record in resources_of(result, "aws:ec2/subnet:Subnet")]
    private = [subnet for subnet in subnets if "kubernetes.io/role/internal-elb" in subnet["tags"]]
    public = [subnet for subnet in subnets if "kubernetes.io/role/elb" in subnet["tags"]]
    assert sorted(subnet["availabilityZone"] for subnet in private) == ["us-east-1a", "us-east-1b", "us-east-1c"]
    assert sorted(subnet["availabilityZone"] for subnet in public) == ["us-east-1a", "us-east-1b", "us-east-1c"]
    assert len(resources_of(result, "aws:ec2/natGateway:NatGateway")) == 3
    assert not any(subnet.get("mapPublicIpOnLaunch") for subnet in subnets)


def test_subnets_lie_inside_the_vpc_and_do_not_overlap() -> None:
    result = rendered("prod")
    vpc = ipaddress.IPv4Network(one(result, "aws:ec2/vpc:Vpc")["cidrBlock"])
    blocks = [ipaddress.IPv4Network(r.inputs["cidrBlock"]) for r in resources_of(result, "aws:ec2/subnet:Subnet")]
    assert all(block.subnet_of(vpc) for block in blocks)
    assert not any(a.overlaps(b) for i, a in enumerate(blocks) for b in blocks[i + 1 :])


def test_dev_uses_two_zones_and_a_single_nat_that_every_private_route_table_points_at() -> None:
    result = rendered("dev")
    assert len(resources_of(result, "aws:ec2/subnet:Subnet")) == 4
    assert len(resources_of(result, "aws:ec2/natGateway:NatGateway")) == 1
    private_tables = [r.inputs for r in resources_of(result, "aws:ec2/routeTable:RouteTable") if "private" in r.name]
    assert len(private_tables) == 2
    assert {table["routes"][0]["natGatewayId"] for table in private_tables} == {"llm-serving-dev-nat-a-id"}


def test_subnets_carry_the_cluster_tag_the_aws_load_balancer_controller_looks_for() -> None:
    for record in resources_of(rendered("staging"), "aws:ec2/subnet:Subnet"):
        assert record.inputs["tags"]["kubernetes.io/cluster/llm-serving-staging"] == "shared"
