"""The stack's network: a VPC with a public and a private subnet in each of two availability zones, an
internet gateway, and either a NAT gateway (jobs reach S3/ECR/logs through it) or, with ``nat=False``, VPC
endpoints (S3 gateway; ECR API, ECR Docker and CloudWatch Logs interfaces) that also avoid NAT data charges.
Jobs run in the private subnets, in a security group that allows egress only.

Every resource is tagged ``genobatch:stack=<name>`` and ``genobatch:part=<part>`` and found again by those
tags, so ``up`` is idempotent and ``down`` deletes only what ``up`` made.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

STACK_TAG = "genobatch:stack"
PART_TAG = "genobatch:part"
VPC_CIDR = "10.20.0.0/16"
SUBNETS = {  # part -> (CIDR, availability zone index, public?)
    "public-a": ("10.20.0.0/20", 0, True),
    "public-b": ("10.20.16.0/20", 1, True),
    "private-a": ("10.20.128.0/18", 0, False),
    "private-b": ("10.20.192.0/18", 1, False),
}
INTERFACE_ENDPOINTS = ("ecr.api", "ecr.dkr", "logs")

Report = Callable[[str, str, str], None]  # (kind, name, what happened)


def tags(stack: str, part: str) -> list[dict[str, str]]:
    return [
        {"Key": STACK_TAG, "Value": stack},
        {"Key": PART_TAG, "Value": part},
        {"Key": "Name", "Value": f"genobatch-{stack}-{part}"},
    ]


def tag_spec(kind: str, stack: str, part: str) -> list[dict[str, Any]]:
    return [{"ResourceType": kind, "Tags": tags(stack, part)}]


def by_tag(stack: str, part: str | None = None) -> list[dict[str, Any]]:
    filters = [{"Name": f"tag:{STACK_TAG}", "Values": [stack]}]
    if part is not None:
        filters.append({"Name": f"tag:{PART_TAG}", "Values": [part]})
    return filters


def has_tags(resource: dict[str, Any], stack: str, part: str) -> bool:
    found = {t["Key"]: t["Value"] for t in resource.get("Tags", [])}
    return found.get(STACK_TAG) == stack and found.get(PART_TAG) == part


def part_of(resource: dict[str, Any]) -> str:
    return next((t["Value"] for t in resource.get("Tags", []) if t["Key"] == PART_TAG), "")


class Network:
    def __init__(self, ec2: Any, stack: str, region: str, report: Report) -> None:
        self.ec2, self.stack, self.region, self.report = ec2, stack, region, report

    # --- lookups ----------------------------------------------------------------------------------------------
    def vpc_id(self) -> str | None:
        vpcs = self.ec2.describe_vpcs(Filters=by_tag(self.stack, "vpc"))["Vpcs"]
        return vpcs[0]["VpcId"] if vpcs else None

    def subnets(self) -> dict[str, str]:
        found = self.ec2.describe_subnets(Filters=by_tag(self.stack))["Subnets"]
        return {part_of(s): s["SubnetId"] for s in found}

    def private_subnets(self) -> list[str]:
        subnets = self.subnets()
        return [subnets[p] for p in ("private-a", "private-b") if p in subnets]

    def job_security_group(self) -> str | None:
        groups = self.ec2.describe_security_groups(Filters=by_tag(self.stack, "jobs"))["SecurityGroups"]
        return groups[0]["GroupId"] if groups else None

    def _one(self, describe: str, key: str, part: str, id_key: str) -> str | None:
        # DescribeNatGateways names its filter parameter "Filter" (every other EC2 call: "Filters")
        parameter = "Filter" if describe == "describe_nat_gateways" else "Filters"
        items = getattr(self.ec2, describe)(**{parameter: by_tag(self.stack, part)})[key]
        items = [i for i in items if has_tags(i, self.stack, part)]  # the filter's answer, checked
        live = [i for i in items if i.get("State") not in ("deleted", "deleting", "failed")]
        return live[0][id_key] if live else None

    # --- up ---------------------------------------------------------------------------------------------------
    def up(self, nat: bool) -> None:
        vpc = self.vpc_id()
        if vpc is None:
            vpc = self.ec2.create_vpc(CidrBlock=VPC_CIDR, TagSpecifications=tag_spec("vpc", self.stack, "vpc"))["Vpc"][
                "VpcId"
            ]
            self.ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
            self.ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsSupport={"Value": True})
            self.report("vpc", vpc, "created")
        else:
            self.report("vpc", vpc, "exists")
        zones = [z["ZoneName"] for z in self.ec2.describe_availability_zones()["AvailabilityZones"]][:2]
        subnets = self.subnets()
        for part, (cidr, zone, public) in SUBNETS.items():
            if part in subnets:
                self.report("subnet", f"{part} {subnets[part]}", "exists")
                continue
            subnet = self.ec2.create_subnet(
                VpcId=vpc,
                CidrBlock=cidr,
                AvailabilityZone=zones[zone % len(zones)],
                TagSpecifications=tag_spec("subnet", self.stack, part),
            )["Subnet"]["SubnetId"]
            if public:
                self.ec2.modify_subnet_attribute(SubnetId=subnet, MapPublicIpOnLaunch={"Value": True})
            subnets[part] = subnet
            self.report("subnet", f"{part} {subnet}", "created")
        igw = self._internet_gateway(vpc)
        public_rt = self._route_table(vpc, "public-routes", [subnets["public-a"], subnets["public-b"]])
        self._route(public_rt, igw, "GatewayId")
        private_rt = self._route_table(vpc, "private-routes", [subnets["private-a"], subnets["private-b"]])
        if nat:
            self._route(private_rt, self._nat_gateway(subnets["public-a"]), "NatGatewayId")
        else:
            self._endpoints(vpc, private_rt, [subnets["private-a"], subnets["private-b"]])
        self._security_group(vpc)

    def _internet_gateway(self, vpc: str) -> str:
        found = self.ec2.describe_internet_gateways(Filters=by_tag(self.stack, "igw"))["InternetGateways"]
        if found:
            self.report("internet-gateway", found[0]["InternetGatewayId"], "exists")
            return str(found[0]["InternetGatewayId"])
        igw = self.ec2.create_internet_gateway(TagSpecifications=tag_spec("internet-gateway", self.stack, "igw"))[
            "InternetGateway"
        ]["InternetGatewayId"]
        self.ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)
        self.report("internet-gateway", igw, "created")
        return str(igw)

    def _route_table(self, vpc: str, part: str, subnets: list[str]) -> str:
        found = self.ec2.describe_route_tables(Filters=by_tag(self.stack, part))["RouteTables"]
        if found:
            self.report("route-table", f"{part} {found[0]['RouteTableId']}", "exists")
            return str(found[0]["RouteTableId"])
        table = self.ec2.create_route_table(VpcId=vpc, TagSpecifications=tag_spec("route-table", self.stack, part))[
            "RouteTable"
        ]["RouteTableId"]
        for subnet in subnets:
            self.ec2.associate_route_table(RouteTableId=table, SubnetId=subnet)
        self.report("route-table", f"{part} {table}", "created")
        return str(table)

    def _route(self, table: str, target: str, kind: str) -> None:
        routes = self.ec2.describe_route_tables(RouteTableIds=[table])["RouteTables"][0]["Routes"]
        if any(r.get("DestinationCidrBlock") == "0.0.0.0/0" for r in routes):
            return
        self.ec2.create_route(RouteTableId=table, DestinationCidrBlock="0.0.0.0/0", **{kind: target})

    def _nat_gateway(self, public_subnet: str) -> str:
        existing = self._one("describe_nat_gateways", "NatGateways", "nat", "NatGatewayId")
        if existing:
            self.report("nat-gateway", existing, "exists")
            return existing
        eip = self.ec2.allocate_address(Domain="vpc", TagSpecifications=tag_spec("elastic-ip", self.stack, "nat-ip"))
        nat = self.ec2.create_nat_gateway(
            SubnetId=public_subnet,
            AllocationId=eip["AllocationId"],
            TagSpecifications=tag_spec("natgateway", self.stack, "nat"),
        )["NatGateway"]["NatGatewayId"]
        self.report("nat-gateway", nat, "created")
        return str(nat)

    def _endpoints(self, vpc: str, private_rt: str, private_subnets: list[str]) -> None:
        existing = {part_of(e) for e in self._endpoint_list()}
        if "s3-endpoint" not in existing:
            self.ec2.create_vpc_endpoint(
                VpcId=vpc,
                ServiceName=f"com.amazonaws.{self.region}.s3",
                VpcEndpointType="Gateway",
                RouteTableIds=[private_rt],
                TagSpecifications=tag_spec("vpc-endpoint", self.stack, "s3-endpoint"),
            )
        self.report("vpc-endpoint", "s3 (gateway)", "exists" if "s3-endpoint" in existing else "created")
        group = self._endpoint_security_group(vpc)
        for service in INTERFACE_ENDPOINTS:
            part = f"{service.replace('.', '-')}-endpoint"
            if part not in existing:
                self.ec2.create_vpc_endpoint(
                    VpcId=vpc,
                    ServiceName=f"com.amazonaws.{self.region}.{service}",
                    VpcEndpointType="Interface",
                    SubnetIds=private_subnets,
                    SecurityGroupIds=[group],
                    PrivateDnsEnabled=True,
                    TagSpecifications=tag_spec("vpc-endpoint", self.stack, part),
                )
            self.report("vpc-endpoint", f"{service} (interface)", "exists" if part in existing else "created")

    def _endpoint_list(self) -> list[dict[str, Any]]:
        found = self.ec2.describe_vpc_endpoints(Filters=by_tag(self.stack))["VpcEndpoints"]
        return [e for e in found if e.get("State", "").lower() not in ("deleted", "deleting")]

    def _security_group(self, vpc: str) -> str:
        existing = self.job_security_group()
        if existing:
            self.report("security-group", f"jobs {existing}", "exists")
            return existing
        group = self.ec2.create_security_group(
            GroupName=f"genobatch-{self.stack}-jobs",
            Description="genobatch jobs: no inbound traffic, all outbound",
            VpcId=vpc,
            TagSpecifications=tag_spec("security-group", self.stack, "jobs"),
        )["GroupId"]
        self.report("security-group", f"jobs {group}", "created")
        return str(group)

    def _endpoint_security_group(self, vpc: str) -> str:
        found = self.ec2.describe_security_groups(Filters=by_tag(self.stack, "endpoints"))["SecurityGroups"]
        if found:
            return str(found[0]["GroupId"])
        group = self.ec2.create_security_group(
            GroupName=f"genobatch-{self.stack}-endpoints",
            Description="genobatch VPC endpoints: HTTPS from inside the VPC",
            VpcId=vpc,
            TagSpecifications=tag_spec("security-group", self.stack, "endpoints"),
        )["GroupId"]
        self.ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=[_https_from(VPC_CIDR)])
        return str(group)

    # --- down -------------------------------------------------------------------------------------------------
    def down(self) -> None:
        endpoints = self._endpoint_list()
        if endpoints:
            self.ec2.delete_vpc_endpoints(VpcEndpointIds=[e["VpcEndpointId"] for e in endpoints])
            self.report("vpc-endpoint", f"{len(endpoints)} endpoint(s)", "deleted")
        nat = self._one("describe_nat_gateways", "NatGateways", "nat", "NatGatewayId")
        if nat:
            self.ec2.delete_nat_gateway(NatGatewayId=nat)
            _wait(lambda: self._one("describe_nat_gateways", "NatGateways", "nat", "NatGatewayId") is None)
            self.report("nat-gateway", nat, "deleted")
        for address in self.ec2.describe_addresses(Filters=by_tag(self.stack))["Addresses"]:
            self.ec2.release_address(AllocationId=address["AllocationId"])
            self.report("elastic-ip", address["AllocationId"], "deleted")
        for igw in self.ec2.describe_internet_gateways(Filters=by_tag(self.stack))["InternetGateways"]:
            for attachment in igw.get("Attachments", []):
                self.ec2.detach_internet_gateway(InternetGatewayId=igw["InternetGatewayId"], VpcId=attachment["VpcId"])
            self.ec2.delete_internet_gateway(InternetGatewayId=igw["InternetGatewayId"])
            self.report("internet-gateway", igw["InternetGatewayId"], "deleted")
        for table in self.ec2.describe_route_tables(Filters=by_tag(self.stack))["RouteTables"]:
            for association in table.get("Associations", []):
                if not association.get("Main"):
                    self.ec2.disassociate_route_table(AssociationId=association["RouteTableAssociationId"])
            self.ec2.delete_route_table(RouteTableId=table["RouteTableId"])
            self.report("route-table", table["RouteTableId"], "deleted")
        for subnet in self.ec2.describe_subnets(Filters=by_tag(self.stack))["Subnets"]:
            self.ec2.delete_subnet(SubnetId=subnet["SubnetId"])
            self.report("subnet", subnet["SubnetId"], "deleted")
        for group in self.ec2.describe_security_groups(Filters=by_tag(self.stack))["SecurityGroups"]:
            self.ec2.delete_security_group(GroupId=group["GroupId"])
            self.report("security-group", group["GroupId"], "deleted")
        vpc = self.vpc_id()
        if vpc:
            self.ec2.delete_vpc(VpcId=vpc)
            self.report("vpc", vpc, "deleted")

    def leftovers(self) -> list[str]:
        """Anything still tagged with this stack (after ``down``: should be nothing)."""
        found = []
        for describe, key, id_key in (
            ("describe_vpcs", "Vpcs", "VpcId"),
            ("describe_subnets", "Subnets", "SubnetId"),
            ("describe_route_tables", "RouteTables", "RouteTableId"),
            ("describe_internet_gateways", "InternetGateways", "InternetGatewayId"),
            ("describe_security_groups", "SecurityGroups", "GroupId"),
            ("describe_addresses", "Addresses", "AllocationId"),
        ):
            found += [item[id_key] for item in getattr(self.ec2, describe)(Filters=by_tag(self.stack))[key]]
        nat = self._one("describe_nat_gateways", "NatGateways", "nat", "NatGatewayId")
        found += [nat] if nat else []
        found += [e["VpcEndpointId"] for e in self._endpoint_list()]
        return found


def _https_from(cidr: str) -> dict[str, Any]:
    return {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "IpRanges": [{"CidrIp": cidr}]}


def _wait(done: Callable[[], bool], timeout: float = 600, every: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError("an AWS resource did not reach the expected state in time")
        time.sleep(every)
