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


@dataclass(frozen=True)
class ZoneLayout:
    """One availability zone's share of the VPC: its subnets' blocks and whether it holds a NAT gateway."""

    suffix: str
    private_cidr: str
    public_cidr: str
    has_nat: bool


def zone_layouts(args: NetworkArgs) -> list[ZoneLayout]:
    """Zones a, b, c in order; the first always has a NAT gateway, the others only with `per_az`."""
    private_cidrs, public_cidrs = subnet_cidrs(args.vpc_cidr, args.availability_zones)
    return [
        ZoneLayout(
            suffix="abc"[index],
            private_cidr=private_cidrs[index],
            public_cidr=public_cidrs[index],
            has_nat=index == 0 or args.nat_gateways == "per_az",
        )
        for index in range(args.availability_zones)
    ]


def subnet_tags(args: NetworkArgs, subnet_name: str, tier: str) -> dict[str, str]:
    """Tags the AWS Load Balancer Controller discovers subnets by: the cluster tag, and the role of the tier
    (`elb` for internet-facing load balancers in public subnets, `internal-elb` in private ones)."""
    role = "kubernetes.io/role/elb" if tier == "public" else "kubernetes.io/role/internal-elb"
    return {
        **args.tags,
        f"kubernetes.io/cluster/{args.cluster_name}": "shared",
        "Name": subnet_name,
        role: "1",
        # Karpenter's EC2NodeClasses select the node subnets by this tag (components/karpenter.py DISCOVERY_TAG).
        **({"karpenter.sh/discovery": args.cluster_name} if tier == "private" else {}),
    }


class Network(pulumi.ComponentResource):
    """A new VPC (subnets, routes, NAT per `ZoneLayout`) or the ids of an existing one, passed through."""

    vpc_id: pulumi.Output[str]
    private_subnet_ids: pulumi.Output[list[str]]
    public_subnet_ids: pulumi.Output[list[str]]

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llm-serving:index:Network", name, None, opts)
        if args.existing_vpc_id is not None:
            self.vpc_id = pulumi.Output.from_input(args.existing_vpc_id)
            self.private_subnet_ids = pulumi.Output.from_input(list(args.existing_private_subnet_ids))
            self.public_subnet_ids = pulumi.Output.from_input(list(args.existing_public_subnet_ids))
            self._register()
            return

        zones = get_availability_zones_output(state="available", opts=pulumi.InvokeOutputOptions(parent=self))
        vpc, gateway, public_routes = self._vpc(name, args)
        public_subnets: list[ec2.Subnet] = []
        private_subnets: list[ec2.Subnet] = []
        nat_ids: list[pulumi.Output[str]] = []
        for index, layout in enumerate(zone_layouts(args)):
            zone = zones.names[index]
            public = self._public_subnet(name, args, layout, zone, vpc, public_routes)
            public_subnets.append(public)
            if layout.has_nat:
                nat_ids.append(self._nat(name, args, layout, public, gateway))
            # A zone without its own NAT routes through the last one made (the first zone's with `single`).
            private_subnets.append(self._private_subnet(name, args, layout, zone, vpc, nat_ids[-1]))

        self.vpc_id = vpc.id
        self.private_subnet_ids = pulumi.Output.all(*[subnet.id for subnet in private_subnets])
        self.public_subnet_ids = pulumi.Output.all(*[subnet.id for subnet in public_subnets])
        self._register()

    def _vpc(self, name: str, args: NetworkArgs) -> tuple[ec2.Vpc, ec2.InternetGateway, ec2.RouteTable]:
        """The VPC, its internet gateway and the public route table through it."""
        child = pulumi.ResourceOptions(parent=self)
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
        return vpc, gateway, public_routes

    def _public_subnet(
        self,
        name: str,
        args: NetworkArgs,
        layout: ZoneLayout,
        zone: pulumi.Input[str],
        vpc: ec2.Vpc,
        public_routes: ec2.RouteTable,
    ) -> ec2.Subnet:
        child = pulumi.ResourceOptions(parent=self)
        subnet_name = f"{name}-public-{layout.suffix}"
        public = ec2.Subnet(
            subnet_name,
            vpc_id=vpc.id,
            cidr_block=layout.public_cidr,
            availability_zone=zone,
            # Load balancers and NAT get public addresses explicitly; instances never do.
            map_public_ip_on_launch=False,
            tags=subnet_tags(args, subnet_name, "public"),
            opts=child,
        )
        ec2.RouteTableAssociation(
            f"{subnet_name}-rta", subnet_id=public.id, route_table_id=public_routes.id, opts=child
        )
        return public

    def _nat(
        self, name: str, args: NetworkArgs, layout: ZoneLayout, public: ec2.Subnet, gateway: ec2.InternetGateway
    ) -> pulumi.Output[str]:
        nat_name = f"{name}-nat-{layout.suffix}"
        address = ec2.Eip(f"{nat_name}-eip", domain="vpc", tags=args.tags, opts=pulumi.ResourceOptions(parent=self))
        nat = ec2.NatGateway(
            nat_name,
            subnet_id=public.id,
            allocation_id=address.id,
            tags={**args.tags, "Name": nat_name},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[gateway]),
        )
        return nat.id

    def _private_subnet(
        self,
        name: str,
        args: NetworkArgs,
        layout: ZoneLayout,
        zone: pulumi.Input[str],
        vpc: ec2.Vpc,
        nat_id: pulumi.Input[str],
    ) -> ec2.Subnet:
        child = pulumi.ResourceOptions(parent=self)
        subnet_name = f"{name}-private-{layout.suffix}"
        private = ec2.Subnet(
            subnet_name,
            vpc_id=vpc.id,
            cidr_block=layout.private_cidr,
            availability_zone=zone,
            tags=subnet_tags(args, subnet_name, "private"),
            opts=child,
        )
        private_routes = ec2.RouteTable(
            f"{subnet_name}-rt",
            vpc_id=vpc.id,
            routes=[ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", nat_gateway_id=nat_id)],
            tags={**args.tags, "Name": subnet_name},
            opts=child,
        )
        ec2.RouteTableAssociation(
            f"{subnet_name}-rta", subnet_id=private.id, route_table_id=private_routes.id, opts=child
        )
        return private

    def _register(self) -> None:
        self.register_outputs(
            {
                "vpc_id": self.vpc_id,
                "private_subnet_ids": self.private_subnet_ids,
                "public_subnet_ids": self.public_subnet_ids,
            }
        )
