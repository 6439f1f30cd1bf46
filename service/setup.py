"""Build hook: bake the release identity into the wheel.

`TOGGLEMASTER_BUILD_ID=<id> pip wheel ./service` writes togglemaster/_build.py into the
build directory only (never into the source tree). Without the variable the build id is
"dev". Everything else about the package lives in pyproject.toml.
"""
import os
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPyWithIdentity(build_py):
    def run(self) -> None:
        super().run()
        build_id = os.environ.get("TOGGLEMASTER_BUILD_ID", "").strip() or "dev"
        version = self.distribution.get_version()
        target = Path(self.build_lib) / "togglemaster" / "_build.py"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(
            "# Generated at build time by setup.py; not in the source tree.\n"
            f"VERSION = {version!r}\n"
            f"BUILD_ID = {build_id!r}\n",
            encoding="utf-8",
        )


setup(cmdclass={"build_py": BuildPyWithIdentity})
