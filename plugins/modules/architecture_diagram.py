#!/usr/bin/python
# -*- coding: utf-8 -*-
# Draws an environment's AWS architecture from what the *_info modules found; no AWS calls.
from __future__ import annotations

DOCUMENTATION = r"""
module: architecture_diagram
short_description: Draw an AWS environment's architecture from its resources as they exist
description:
  - Draws the region, the VPCs, their availability zones, public and private subnets, the
    internet gateway, the route tables in use, the EC2 instances, the Application Load Balancer
    (with its listeners and target group) and the RDS instances, with the
    L(diagrams,https://diagrams.mingrammer.com/) library (Graphviz underneath), into a PNG and an SVG.
  - Takes the resources as the amazon.aws and community.aws C(*_info) modules return them
    (lists of dicts with snake_case keys). It makes no AWS call itself.
  - Allowed traffic is drawn as labelled edges derived from the security groups' ingress rules
    as they are, not from any intended configuration. A rule's source is the internet node for
    C(0.0.0.0/0) and C(::/0), a client node per other CIDR (admin addresses) or prefix list, or
    every drawn resource the source group is attached to; its target is every drawn resource the
    rule's group is attached to. Each edge is labelled with its ports (C(80, 443); C(udp 53);
    C(all) for every protocol) and the id of the group holding the rule. A source group attached
    to nothing drawn is shown as a node of its own. Egress rules are not drawn.
  - A subnet is public when the route table it uses (its explicit association, else the VPC's
    main table) routes to an internet gateway, whatever its tags say. Only route tables some
    drawn subnet uses are drawn.
  - Every node's label carries the resource's id (vpc-, subnet-, igw-, rtb-, i-, the load
    balancer's name and ARN suffix, the RDS identifier); security group ids are on the edges,
    or on the node of a resource whose group admits nothing. The SVG's texts are written with
    plain hyphens (Graphviz writes them as C(&#45;)), so C(grep) finds the ids, and its icons are
    embedded as data URIs, so the file stands alone.
  - The files are drawn in a temporary folder and moved into O(dest) only when their bytes
    differ from the files there. Graphviz's output is deterministic for the same input, so a
    second run over unchanged resources reports C(changed=false).
  - In check mode the files are drawn in a temporary folder and compared, nothing is written,
    and C(changed) says whether a real run would replace them.
author: ToggleMaster Deploy maintainers
requirements:
  - diagrams (Python, 0.25)
  - Graphviz's C(dot) program (Debian package C(graphviz), macOS C(brew install graphviz))
options:
  dest:
    description:
      - Folder the files are written to; made (mode 0700) when missing.
    type: path
    required: true
  name:
    description:
      - File name of the drawings, without the extension.
    type: str
    default: architecture
  formats:
    description:
      - Which files to write, each as C(<name>.<format>).
    type: list
    elements: str
    choices: [png, svg]
    default: [png, svg]
  title:
    description:
      - Title printed above the drawing.
    type: str
    default: AWS architecture
  region:
    description:
      - Region the resources are in, the label of the outermost box.
    type: str
    default: ""
  vpcs:
    description: C(vpcs) of amazon.aws.ec2_vpc_net_info.
    type: list
    elements: dict
    default: []
  subnets:
    description: C(subnets) of amazon.aws.ec2_vpc_subnet_info.
    type: list
    elements: dict
    default: []
  internet_gateways:
    description: C(internet_gateways) of amazon.aws.ec2_vpc_igw_info.
    type: list
    elements: dict
    default: []
  route_tables:
    description:
      - C(route_tables) of amazon.aws.ec2_vpc_route_table_info; all of the VPCs' tables (the main
        table decides for subnets without an association of their own).
    type: list
    elements: dict
    default: []
  security_groups:
    description: C(security_groups) of amazon.aws.ec2_security_group_info, with their rules.
    type: list
    elements: dict
    default: []
  instances:
    description: C(instances) of amazon.aws.ec2_instance_info (those to draw, for example running and pending).
    type: list
    elements: dict
    default: []
  load_balancers:
    description: C(load_balancers) of amazon.aws.elb_application_lb_info (listeners are shown when included).
    type: list
    elements: dict
    default: []
  target_groups:
    description: C(target_groups) of community.aws.elb_target_group_info; shown on the load balancer they serve.
    type: list
    elements: dict
    default: []
  db_instances:
    description: C(instances) of amazon.aws.rds_instance_info.
    type: list
    elements: dict
    default: []
notes:
  - Supports check mode (draws in a temporary folder, writes nothing).
  - Runs on the control node and needs the Python package C(diagrams) and the C(dot) program there.
"""

EXAMPLES = r"""
- name: Networks are read
  amazon.aws.ec2_vpc_net_info:
    filters: {"tag:Project": togglemaster, "tag:Environment": staging}
  register: vpcs

# ... subnets, gateways, route tables, groups, instances, load balancers, RDS likewise

- name: Architecture is drawn
  architecture_diagram:
    dest: .state/staging
    title: togglemaster staging
    region: sa-east-1
    vpcs: "{{ vpcs.vpcs }}"
    subnets: "{{ subnets.subnets }}"
    internet_gateways: "{{ igws.internet_gateways }}"
    route_tables: "{{ route_tables.route_tables }}"
    security_groups: "{{ groups.security_groups }}"
    instances: "{{ instances.instances }}"
    load_balancers: "{{ lbs.load_balancers }}"
    target_groups: "{{ tgs.target_groups }}"
    db_instances: "{{ rds.instances }}"
"""

RETURN = r"""
files:
  description: The drawings, by format.
  returned: always
  type: dict
  sample: {"png": ".state/staging/architecture.png", "svg": ".state/staging/architecture.svg"}
resource_ids:
  description: The ids of what was drawn, by kind, each list sorted.
  returned: always
  type: dict
  sample:
    vpcs: [vpc-0a1b]
    subnets: [subnet-01, subnet-02]
    internet_gateways: [igw-0c]
    route_tables: [rtb-0d, rtb-0e]
    security_groups: [sg-01, sg-02]
    instances: [i-0f]
    load_balancers: [togglemaster-staging]
    target_groups: [togglemaster-staging-web]
    db_instances: [togglemaster-staging-db]
flows:
  description: The allowed flows drawn as edges, one per source, target and group.
  returned: always
  type: list
  elements: dict
  sample:
    - {"source": "internet", "target": "i-0f", "ports": "80, 443", "group": "sg-01"}
    - {"source": "203.0.113.7/32", "target": "i-0f", "ports": "22", "group": "sg-01"}
    - {"source": "i-0f", "target": "togglemaster-staging-db", "ports": "5432", "group": "sg-02"}
public_subnets:
  description: The subnets drawn as public (their route table routes to an internet gateway).
  returned: always
  type: list
  elements: str
"""

import base64
import filecmp
import os
import re
import shutil
import tempfile
import traceback
from collections import defaultdict

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

try:
    from diagrams import Cluster, Diagram, Edge, Node
    from diagrams.aws.compute import EC2
    from diagrams.aws.database import RDS
    from diagrams.aws.network import (
        VPC,
        ElbApplicationLoadBalancer,
        InternetGateway,
        PrivateSubnet,
        PublicSubnet,
        RouteTable,
    )
    from diagrams.generic.network import Firewall
    from diagrams.onprem.client import Client, Users

    HAS_DIAGRAMS = True
    DIAGRAMS_ERROR = None
except ImportError:
    HAS_DIAGRAMS = False
    DIAGRAMS_ERROR = traceback.format_exc()

INTERNET = "internet"
ANYWHERE = ("0.0.0.0/0", "::/0")
FLOW_COLOR = "#C0392B"
WIRING_COLOR = "#7B8894"


def name_tag(resource: dict) -> str:
    return (resource.get("tags") or {}).get("Name", "")


def label(*lines: str) -> str:
    return "\n".join(line for line in lines if line)


def lb_suffix(arn: str) -> str:
    """app/<name>/<id>, the part of the ARN the console and CloudWatch name a load balancer by."""
    return arn.split(":loadbalancer/", 1)[-1] if arn else ""


def safe_id(key: str) -> str:
    """A Graphviz node name: a colon would start a port name (IPv6 CIDRs have them)."""
    return key.replace(":", "_")


def box(title: str, name: str, **graph_attr: str) -> "Cluster":
    """A Cluster named by a resource id: diagrams names clusters by their label, and Graphviz merges
    clusters of the same name (each VPC's sa-east-1a box would become one)."""
    cluster = Cluster(title, graph_attr=graph_attr)
    cluster.dot.name = f"cluster_{name}"
    return cluster


def port_text(permission: dict) -> tuple[tuple[int, int, str], str]:
    """A sort key and the text of one ingress permission's ports."""
    proto = str(permission.get("ip_protocol", "-1"))
    if proto in ("-1", "all"):
        return (0, 0, "all"), "all"
    low, high = permission.get("from_port"), permission.get("to_port")
    if low is None or low in (-1, 0) and high in (-1, 65535):
        ports = "all ports"
        key = (0, 65535, proto)
    elif low == high:
        ports, key = str(low), (int(low), int(low), proto)
    else:
        ports, key = f"{low}-{high}", (int(low), int(high), proto)
    return key, ports if proto == "tcp" else f"{proto} {ports}"


class Model:
    """The resources in the shape the drawing needs: who is where, who may reach whom."""

    def __init__(self, params: dict):
        def by_id(items: list[dict], key: str) -> list[dict]:
            return sorted(items, key=lambda item: str(item.get(key, "")))

        self.vpcs = by_id(params["vpcs"], "vpc_id")
        self.subnets = by_id(params["subnets"], "subnet_id")
        self.igws = by_id(params["internet_gateways"], "internet_gateway_id")
        self.route_tables = by_id(params["route_tables"], "route_table_id")
        self.groups = {g["group_id"]: g for g in params["security_groups"]}
        self.instances = by_id(params["instances"], "instance_id")
        self.lbs = by_id(params["load_balancers"], "load_balancer_name")
        self.target_groups = by_id(params["target_groups"], "target_group_name")
        self.dbs = by_id(params["db_instances"], "db_instance_identifier")

        self.subnet_table = self._subnet_tables()
        self.public = {s["subnet_id"] for s in self.subnets if self._routes_to_igw(self.subnet_table.get(s["subnet_id"]))}
        # Drawn resources each security group is attached to: node ids.
        self.members: dict[str, list[str]] = defaultdict(list)
        for inst in self.instances:
            for group in inst.get("security_groups") or []:
                self.members[group["group_id"]].append(inst["instance_id"])
        for lb in self.lbs:
            for group_id in lb.get("security_groups") or []:
                self.members[group_id].append(lb["load_balancer_name"])
        for db in self.dbs:
            for group in db.get("vpc_security_groups") or []:
                self.members[group["vpc_security_group_id"]].append(db["db_instance_identifier"])
        self.flows = self._flows()

    def _subnet_tables(self) -> dict[str, dict]:
        tables: dict[str, dict] = {}
        main: dict[str, dict] = {}
        for table in self.route_tables:
            for assoc in table.get("associations") or []:
                if assoc.get("main"):
                    main[table.get("vpc_id")] = table
                elif assoc.get("subnet_id"):
                    tables[assoc["subnet_id"]] = table
        for subnet in self.subnets:
            if subnet["subnet_id"] not in tables and subnet.get("vpc_id") in main:
                tables[subnet["subnet_id"]] = main[subnet["vpc_id"]]
        return tables

    @staticmethod
    def _routes_to_igw(table: dict | None) -> bool:
        return any(str(route.get("gateway_id") or "").startswith("igw-") for route in (table or {}).get("routes") or [])

    def _flows(self) -> list[dict]:
        """One flow per (source, target, group holding the rule), its ports joined."""
        ports: dict[tuple[str, str, str], dict] = defaultdict(dict)
        for group_id in sorted(self.groups):
            targets = self.members.get(group_id, [])
            for permission in self.groups[group_id].get("ip_permissions") or []:
                key, text = port_text(permission)
                sources = [INTERNET if r.get("cidr_ip") in ANYWHERE else r["cidr_ip"] for r in permission.get("ip_ranges") or []]
                sources += [INTERNET if r.get("cidr_ipv6") in ANYWHERE else r["cidr_ipv6"] for r in permission.get("ipv6_ranges") or []]
                sources += [p["prefix_list_id"] for p in permission.get("prefix_list_ids") or []]
                for pair in permission.get("user_id_group_pairs") or []:
                    sources += self.members.get(pair.get("group_id"), []) or [pair.get("group_id")]
                for source in sources:
                    for target in targets:
                        if source != target:
                            ports[(source, target, group_id)][key] = text
        return [
            {"source": s, "target": t, "group": g, "ports": ", ".join(text for _, text in sorted(found.items()))}
            for (s, t, g), found in sorted(ports.items())
        ]

    def zone_of_db(self, db: dict) -> str | None:
        """The drawn subnet the database's primary is in: its subnet group's subnet in its zone."""
        zone = db.get("availability_zone")
        group_subnets = {s.get("subnet_identifier") for s in (db.get("db_subnet_group") or {}).get("subnets") or []}
        for subnet in self.subnets:
            if subnet["subnet_id"] in group_subnets and subnet.get("availability_zone") == zone:
                return subnet["subnet_id"]
        return None


def draw(model: Model, title: str, region: str, folder: str, name: str, formats: list[str]) -> dict:
    """Draws into folder; returns the ids drawn by kind."""
    drawn: dict[str, set] = defaultdict(set)
    nodes: dict[str, Node] = {}
    graph_attr = {"fontsize": "20", "labelloc": "t", "pad": "0.5", "splines": "spline", "nodesep": "0.8", "ranksep": "1.4"}
    subnet_ids = {s["subnet_id"] for s in model.subnets}
    instances_in = defaultdict(list)
    for inst in model.instances:
        instances_in[inst.get("subnet_id") if inst.get("subnet_id") in subnet_ids else inst.get("vpc_id")].append(inst)
    dbs_in = defaultdict(list)
    for db in model.dbs:
        dbs_in[model.zone_of_db(db) or (db.get("db_subnet_group") or {}).get("vpc_id")].append(db)
    groups_on_edges = {flow["group"] for flow in model.flows}

    def quiet_groups(member_groups: list[str]) -> str:
        """Groups of a node that hold no drawn rule: named on the node instead of an edge."""
        rest = sorted(set(member_groups) - groups_on_edges)
        drawn["security_groups"].update(rest)
        return " ".join(rest)

    def instance_node(inst: dict) -> None:
        iid = inst["instance_id"]
        addresses = " / ".join(a for a in (inst.get("private_ip_address"), inst.get("public_ip_address")) if a)
        state = (inst.get("state") or {}).get("name", "")
        nodes[iid] = EC2(
            label(name_tag(inst), iid, addresses, "" if state == "running" else state,
                  quiet_groups([g["group_id"] for g in inst.get("security_groups") or []])),
            nodeid=iid,
        )
        drawn["instances"].add(iid)

    def db_node(db: dict) -> None:
        ident = db["db_instance_identifier"]
        engine = label(" ".join(str(db.get(k, "")) for k in ("engine", "engine_version")).strip())
        standby = f"Multi-AZ, standby {db['secondary_availability_zone']}" if db.get("multi_az") and db.get("secondary_availability_zone") else ""
        endpoint = (db.get("endpoint") or {}).get("port")
        nodes[ident] = RDS(
            label(ident, engine, f"port {endpoint}" if endpoint else "", standby,
                  quiet_groups([g["vpc_security_group_id"] for g in db.get("vpc_security_groups") or []])),
            nodeid=ident,
        )
        drawn["db_instances"].add(ident)

    filename = os.path.join(folder, name)
    with Diagram(title, filename=filename, outformat=formats, show=False, direction="LR", graph_attr=graph_attr):
        internet_needed = model.igws or any(flow["source"] == INTERNET for flow in model.flows)
        if internet_needed:
            nodes[INTERNET] = Users("Internet\n0.0.0.0/0", nodeid=INTERNET)
        for flow in model.flows:
            source = flow["source"]
            if source in nodes or source == INTERNET:
                continue
            if source.startswith("sg-"):
                group = model.groups.get(source, {})
                nodes[source] = Firewall(label(source, group.get("group_name", ""), "(no member drawn)"), nodeid=safe_id(source))
                drawn["security_groups"].add(source)
            else:
                nodes[source] = Client(f"Clients\n{source}", nodeid=safe_id(source))

        with box(region or "region", "region", fontsize="16"):
            for vpc in model.vpcs:
                vpc_id = vpc["vpc_id"]
                with box(f"VPC {vpc_id}  {vpc.get('cidr_block', '')}  {name_tag(vpc)}", vpc_id, fontsize="14"):
                    nodes[vpc_id] = VPC(label(name_tag(vpc), vpc_id, vpc.get("cidr_block", "")), nodeid=vpc_id)
                    drawn["vpcs"].add(vpc_id)
                    for igw in model.igws:
                        if vpc_id in {a.get("vpc_id") for a in igw.get("attachments") or []}:
                            igw_id = igw["internet_gateway_id"]
                            nodes[igw_id] = InternetGateway(label(name_tag(igw), igw_id), nodeid=igw_id)
                            drawn["internet_gateways"].add(igw_id)
                    used_tables = {model.subnet_table[s["subnet_id"]]["route_table_id"]
                                   for s in model.subnets if s.get("vpc_id") == vpc_id and s["subnet_id"] in model.subnet_table}
                    for table in model.route_tables:
                        rtb = table["route_table_id"]
                        if rtb in used_tables:
                            main = any(a.get("main") for a in table.get("associations") or [])
                            nodes[rtb] = RouteTable(label(name_tag(table), rtb, "main" if main else ""), nodeid=rtb)
                            drawn["route_tables"].add(rtb)
                    for lb in model.lbs:
                        if lb.get("vpc_id") == vpc_id:
                            lb_name = lb["load_balancer_name"]
                            listeners = ", ".join(sorted(f"{li.get('protocol')}:{li.get('port')}" for li in lb.get("listeners") or []))
                            tgs = [f"TG {tg['target_group_name']} {tg.get('protocol', '')}:{tg.get('port', '')}"
                                   for tg in model.target_groups if lb.get("load_balancer_arn") in (tg.get("load_balancer_arns") or [])]
                            drawn["target_groups"].update(tg["target_group_name"] for tg in model.target_groups
                                                          if lb.get("load_balancer_arn") in (tg.get("load_balancer_arns") or []))
                            nodes[lb_name] = ElbApplicationLoadBalancer(
                                label(lb_name, lb_suffix(lb.get("load_balancer_arn", "")), lb.get("scheme", ""),
                                      listeners and f"listeners {listeners}", *tgs,
                                      quiet_groups(lb.get("security_groups") or [])),
                                nodeid=lb_name,
                            )
                            drawn["load_balancers"].add(lb_name)
                    for inst in instances_in.get(vpc_id, []):
                        instance_node(inst)
                    for db in dbs_in.get(vpc_id, []):
                        db_node(db)
                    zones = sorted({s.get("availability_zone", "") for s in model.subnets if s.get("vpc_id") == vpc_id})
                    for zone in zones:
                        with box(zone or "zone unknown", f"{vpc_id}_{zone}", fontsize="13"):
                            for subnet in model.subnets:
                                if subnet.get("vpc_id") != vpc_id or subnet.get("availability_zone", "") != zone:
                                    continue
                                sid = subnet["subnet_id"]
                                public = sid in model.public
                                tier = "public" if public else "private"
                                with box(f"{tier} subnet {sid}  {subnet.get('cidr_block', '')}", sid,
                                         bgcolor="#EBF3E7" if public else "#E5E8F0"):
                                    icon = PublicSubnet if public else PrivateSubnet
                                    nodes[sid] = icon(label(name_tag(subnet), sid, subnet.get("cidr_block", "")), nodeid=sid)
                                    drawn["subnets"].add(sid)
                                    for inst in instances_in.get(sid, []):
                                        instance_node(inst)
                                    for db in dbs_in.get(sid, []):
                                        db_node(db)

        # How the network is wired: gateways, route tables and their subnets (grey, dashed).
        wiring = {"color": WIRING_COLOR, "style": "dashed"}
        for igw_id in sorted(drawn["internet_gateways"]):
            if INTERNET in nodes:
                nodes[INTERNET] - Edge(**wiring) - nodes[igw_id]
        for table in model.route_tables:
            rtb = table["route_table_id"]
            if rtb not in nodes:
                continue
            for route in table.get("routes") or []:
                target = route.get("gateway_id") or ""
                if target in nodes:
                    dest = route.get("destination_cidr_block") or route.get("destination_ipv6_cidr_block") or ""
                    nodes[rtb] >> Edge(label=dest, **wiring) >> nodes[target]
        for subnet_id, table in sorted(model.subnet_table.items()):
            if subnet_id in nodes and table["route_table_id"] in nodes:
                nodes[subnet_id] - Edge(**wiring) - nodes[table["route_table_id"]]

        # What the security groups allow (red, labelled with the ports and the group).
        for flow in model.flows:
            if flow["source"] in nodes and flow["target"] in nodes:
                nodes[flow["source"]] >> Edge(label=f"{flow['ports']}\n{flow['group']}", color=FLOW_COLOR,
                                              fontcolor=FLOW_COLOR) >> nodes[flow["target"]]
                drawn["security_groups"].add(flow["group"])
    return {kind: sorted(ids) for kind, ids in drawn.items()}


TEXT = re.compile(r"(<text\b[^>]*>)([^<]*)(</text>)")
IMAGE = re.compile(r'xlink:href="([^"]+\.png)"')


def finish_svg(path: str) -> None:
    """Plain hyphens in texts (Graphviz escapes them everywhere for its comments' sake) and the
    icons embedded, so the file is greppable and stands alone."""
    with open(path, encoding="utf-8") as handle:
        svg = handle.read()
    svg = TEXT.sub(lambda m: m.group(1) + m.group(2).replace("&#45;", "-") + m.group(3), svg)

    def embed(match: re.Match) -> str:
        with open(match.group(1), "rb") as icon:
            return f'xlink:href="data:image/png;base64,{base64.b64encode(icon.read()).decode("ascii")}"'

    svg = IMAGE.sub(embed, svg)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(svg)


def main() -> None:
    resources = {"type": "list", "elements": "dict", "default": []}
    module = AnsibleModule(
        argument_spec={
            "dest": {"type": "path", "required": True},
            "name": {"type": "str", "default": "architecture"},
            "formats": {"type": "list", "elements": "str", "choices": ["png", "svg"], "default": ["png", "svg"]},
            "title": {"type": "str", "default": "AWS architecture"},
            "region": {"type": "str", "default": ""},
            **{kind: dict(resources) for kind in ("vpcs", "subnets", "internet_gateways", "route_tables", "security_groups",
                                                  "instances", "load_balancers", "target_groups", "db_instances")},
        },
        supports_check_mode=True,
    )
    if not HAS_DIAGRAMS:
        module.fail_json(msg=missing_required_lib("diagrams"), exception=DIAGRAMS_ERROR)
    params = module.params
    formats = sorted(set(params["formats"]))
    dest = params["dest"]
    files = {fmt: os.path.join(dest, f"{params['name']}.{fmt}") for fmt in formats}
    try:
        model = Model(params)
    except (KeyError, TypeError, AttributeError) as error:
        module.fail_json(msg=f"A resource lacks a field the drawing needs ({error!r}): pass the *_info modules' lists as they return them.",
                         exception=traceback.format_exc())

    with tempfile.TemporaryDirectory(prefix="architecture_diagram.") as scratch:
        try:
            resource_ids = draw(model, params["title"], params["region"], scratch, params["name"], formats)
        except Exception as error:  # graphviz.ExecutableNotFound, CalledProcessError: say what is missing
            hint = " Install Graphviz (Debian: apt-get install graphviz; macOS: brew install graphviz)." if "ExecutableNotFound" in type(error).__name__ else ""
            module.fail_json(msg=f"Drawing failed: {error}.{hint}", exception=traceback.format_exc())
        if "svg" in files:
            finish_svg(os.path.join(scratch, f"{params['name']}.svg"))
        drawn = {fmt: os.path.join(scratch, os.path.basename(path)) for fmt, path in files.items()}
        stale = [fmt for fmt, path in files.items() if not os.path.isfile(path) or not filecmp.cmp(drawn[fmt], path, shallow=False)]
        if stale and not module.check_mode:
            if not os.path.isdir(dest):
                os.makedirs(dest, mode=0o700)
            for fmt in stale:
                # Same file system as the destination first, then an atomic rename.
                staged = files[fmt] + ".tmp"
                shutil.copyfile(drawn[fmt], staged)
                os.replace(staged, files[fmt])

    module.exit_json(
        changed=bool(stale),
        files=files,
        resource_ids=resource_ids,
        flows=model.flows,
        public_subnets=sorted(model.public),
    )


if __name__ == "__main__":
    main()
