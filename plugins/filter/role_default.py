"""A role's default for a variable, for a play that does not run the role.

Project-wide filter (ansible.cfg: filter_plugins = plugins/filter). The cost estimate
(playbooks/cost.yml) prices the sizes provisioning would use: an environment's own value, else
the provisioning role's default, read from that role's defaults/main.yml rather than copied.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from ansible.errors import AnsibleFilterError

ROLES = Path(__file__).resolve().parent.parent.parent / "roles"


def role_default(role: str, variable: str) -> Any:
    """The default of variable in roles/<role>/defaults/main.yml; an error names a missing one."""
    defaults = yaml.safe_load((ROLES / role / "defaults" / "main.yml").read_text()) or {}
    if variable not in defaults:
        raise AnsibleFilterError(f"role {role} has no default for {variable}")
    return defaults[variable]


class FilterModule:
    """role_default."""

    def filters(self) -> dict[str, Any]:
        return {"role_default": role_default}
