"""The one build step pyproject.toml cannot declare: ship the top-level ``conf/`` inside the package.

``conf/`` stays where a user of the checkout edits it (and the only copy in git); a wheel gets it as
``ssa_experiments/conf``, where ``ssa_experiments/config/paths.py`` finds it from any directory. An editable
install (``make install``) copies nothing: paths.py finds the checkout's ``conf/`` beside the package.
"""

from __future__ import annotations

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

CONF = Path(__file__).resolve().parent / "conf"


class BuildPyWithConf(build_py):
    """setuptools' build_py, then every file of ``conf/`` copied to ``<build_lib>/ssa_experiments/conf``."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        for src in sorted(p for p in CONF.rglob("*") if p.is_file()):
            target = Path(self.build_lib, "ssa_experiments", "conf", src.relative_to(CONF))
            self.mkpath(str(target.parent))
            self.copy_file(str(src), str(target))

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        outputs = super().get_outputs(include_bytecode)
        if self.editable_mode:
            return outputs
        conf = Path(self.build_lib, "ssa_experiments", "conf")
        return [*outputs, *(str(conf / p.relative_to(CONF)) for p in CONF.rglob("*") if p.is_file())]


setup(cmdclass={"build_py": BuildPyWithConf})
