"""What the cloud would answer, for the offline render and the tests: stable ids and plausible outputs.

Every id and ARN is derived from the resource's name, never random, so two renders are byte-identical.
"""

from __future__ import annotations

from typing import Any

import pulumi

ACCOUNT_ID = "123456789012"


class RenderMocks(pulumi.runtime.Mocks):
    def __init__(self, region: str) -> None:
        self.region = region

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        state = dict(args.inputs)
        name = args.name
        state.setdefault("arn", f"arn:aws:mock:{self.region}:{ACCOUNT_ID}:{args.typ.split(':')[-1].lower()}/{name}")
        if args.typ == "aws:eks/cluster:Cluster":
            state["endpoint"] = f"https://{name}.gr7.{self.region}.eks.amazonaws.com"
            state["certificateAuthority"] = {"data": "LS0tLS1CRUdJTi1NT0NLLUNB"}
            # EKS creates the cluster security group and reports its id.
            state["vpcConfig"] = {**state.get("vpcConfig", {}), "clusterSecurityGroupId": f"sg-{name}"}
            state["identities"] = [
                {"oidcs": [{"issuer": f"https://oidc.eks.{self.region}.amazonaws.com/id/{name.upper()}"}]}
            ]
        elif args.typ == "aws:ec2/launchTemplate:LaunchTemplate":
            state["latestVersion"] = 1
        elif args.typ == "aws:iam/role:Role":
            state.setdefault("name", name)
        return f"{name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        if args.token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            return {
                "names": [f"{self.region}{zone}" for zone in "abc"],
                "zoneIds": [f"use1-az{i}" for i in (1, 2, 4)],
            }, []
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {
                "accountId": ACCOUNT_ID,
                "arn": f"arn:aws:iam::{ACCOUNT_ID}:user/render",
                "userId": "render",
            }, []
        if args.token == "aws:index/getPartition:getPartition":
            return {"partition": "aws", "dnsSuffix": "amazonaws.com"}, []
        if args.token == "aws:index/getRegion:getRegion":
            return {"name": self.region, "region": self.region}, []
        return {}, []
