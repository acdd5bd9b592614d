"""A VPC with public and private subnets over 2-3 AZs and NAT, or an existing VPC by id."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

import pulumi
import pulumi_aws.ec2 as ec2
from pulumi_aws import get_availability_zones_output


@dataclass(frozen=True)
class NetworkArgs:
    cluster_name: str
    vpc_cidr: str = "10.0.0.0/16"
    availability_zones: int = 2
    nat_gateways: str = "single"  # "single" | "per_az"
    existing_vpc_id: str | None = None
    existing_private_subnet_ids: list[str] = field(default_factory=list)
    existing_public_subnet_ids: list[str] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)


def subnet_cidrs(vpc_cidr: str, zones: int) -> tuple[list[str], list[str]]:
    """Eight equal blocks: private subnets take the first `zones`, public ones start at block 4.

    Private subnets hold the nodes and pods (the VPC CNI gives every pod a VPC address), so they get as much room as
    public ones, which only hold load balancers and NAT gateways; blocks 3 and 7 stay free for growth.
    """
    blocks = list(ipaddress.IPv4Network(vpc_cidr).subnets(prefixlen_diff=3))
    return [str(blocks[i]) for i in range(zones)], [str(blocks[4 + i]) for i in range(zones)]


class Network(pulumi.ComponentResource):
    vpc_id: pulumi.Output[str]
    private_subnet_ids: pulumi.Output[list[str]]
    public_subnet_ids: pulumi.Output[list[str]]

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llm-serving:index:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        if args.existing_vpc_id is not None:
            self.vpc_id = pulumi.Output.from_input(args.existing_vpc_id)
            self.private_subnet_ids = pulumi.Output.from_input(list(args.existing_private_subnet_ids))
            self.public_subnet_ids = pulumi.Output.from_input(list(args.existing_public_subnet_ids))
            self._register()
            return

        zones = get_availability_zones_output(state="available", opts=pulumi.InvokeOutputOptions(parent=self))
        cluster_tag = {f"kubernetes.io/cluster/{args.cluster_name}": "shared"}
        vpc = ec2.Vpc(
            f"{name}-vpc",
            cidr_block=args.vpc_cidr,
            enable_dns_hostnames=True,
            enable_dns_support=True,
            tags={**args.tags, "Name": f"{name}-vpc"},
            opts=child,
        )
        # Flow logs are left to the account's central logging; an empty default security group closes the VPC's
        # permissive default (CKV2_AWS_12).
        ec2.DefaultSecurityGroup(f"{name}-default-sg", vpc_id=vpc.id, tags=args.tags, opts=child)
        gateway = ec2.InternetGateway(
            f"{name}-igw", vpc_id=vpc.id, tags={**args.tags, "Name": f"{name}-igw"}, opts=child
        )
        public_routes = ec2.RouteTable(
            f"{name}-public-rt",
            vpc_id=vpc.id,
            routes=[ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", gateway_id=gateway.id)],
            tags={**args.tags, "Name": f"{name}-public"},
            opts=child,
        )
        private_cidrs, public_cidrs = subnet_cidrs(args.vpc_cidr, args.availability_zones)
        public_subnets: list[ec2.Subnet] = []
        private_subnets: list[ec2.Subnet] = []
        nat_ids: list[pulumi.Output[str]] = []
        for index in range(args.availability_zones):
            zone = zones.names[index]
            suffix = "abc"[index]
            public = ec2.Subnet(
                f"{name}-public-{suffix}",
                vpc_id=vpc.id,
                cidr_block=public_cidrs[index],
                availability_zone=zone,
                # Load balancers and NAT get public addresses explicitly; instances never do.
                map_public_ip_on_launch=False,
                tags={
                    **args.tags,
                    **cluster_tag,
                    "Name": f"{name}-public-{suffix}",
                    "kubernetes.io/role/elb": "1",
                },
                opts=child,
            )
            ec2.RouteTableAssociation(
                f"{name}-public-{suffix}-rta",
                subnet_id=public.id,
                route_table_id=public_routes.id,
                opts=child,
            )
            public_subnets.append(public)
            if index == 0 or args.nat_gateways == "per_az":
                address = ec2.Eip(f"{name}-nat-{suffix}-eip", domain="vpc", tags=args.tags, opts=child)
                nat = ec2.NatGateway(
                    f"{name}-nat-{suffix}",
                    subnet_id=public.id,
                    allocation_id=address.id,
                    tags={**args.tags, "Name": f"{name}-nat-{suffix}"},
                    opts=pulumi.ResourceOptions(parent=self, depends_on=[gateway]),
                )
                nat_ids.append(nat.id)
            private = ec2.Subnet(
                f"{name}-private-{suffix}",
                vpc_id=vpc.id,
                cidr_block=private_cidrs[index],
                availability_zone=zone,
                tags={
                    **args.tags,
                    **cluster_tag,
                    "Name": f"{name}-private-{suffix}",
                    "kubernetes.io/role/internal-elb": "1",
                },
                opts=child,
            )
            private_routes = ec2.RouteTable(
                f"{name}-private-{suffix}-rt",
                vpc_id=vpc.id,
                routes=[ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", nat_gateway_id=nat_ids[-1])],
                tags={**args.tags, "Name": f"{name}-private-{suffix}"},
                opts=child,
            )
            ec2.RouteTableAssociation(
                f"{name}-private-{suffix}-rta",
                subnet_id=private.id,
                route_table_id=private_routes.id,
                opts=child,
            )
            private_subnets.append(private)

        self.vpc_id = vpc.id
        self.private_subnet_ids = pulumi.Output.all(*[subnet.id for subnet in private_subnets])
        self.public_subnet_ids = pulumi.Output.all(*[subnet.id for subnet in public_subnets])
        self._register()

    def _register(self) -> None:
        self.register_outputs(
            {
                "vpc_id": self.vpc_id,
                "private_subnet_ids": self.private_subnet_ids,
                "public_subnet_ids": self.public_subnet_ids,
            }
        )
