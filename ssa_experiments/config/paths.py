"""Where the Hydra configs are: the one answer every entry point, test and benchmark uses.

The repository's top-level ``conf/`` is the only copy kept in git. A built wheel carries it inside the package
as ``ssa_experiments/conf`` (``setup.py`` copies it there at build time), so an installed package finds its
configs next to its code, from any directory; a checkout (``pip install -e .``, or ``PYTHONPATH`` pointing at
it) has no such copy and finds ``conf/`` beside the package instead. The packaged copy is looked for first:
an installed package must never read a ``conf/`` that happens to lie next to ``site-packages``' contents.

Torch-free and Hydra-free: the CLI resolves the path while its imports must not start torch (``numerics``).
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent
CONFIG_NAME = "config"  # conf/config.yaml: the primary config


class ConfigDirNotFound(FileNotFoundError):
    """Neither an installed copy of the configs nor a checkout's ``conf/``: a broken installation."""


def candidates(package_dir: Path = PACKAGE_DIR) -> tuple[Path, Path]:
    """Where the configs may be, in the order they are looked for: inside the package (a wheel), then
    beside it (a checkout)."""
    return package_dir / "conf", package_dir.parent / "conf"


def conf_dir(package_dir: Path = PACKAGE_DIR) -> Path:
    """The directory holding ``config.yaml`` and the config groups (model/, data/, method/, ...), absolute."""
    for path in candidates(package_dir):
        if (path / f"{CONFIG_NAME}.yaml").is_file():
            return path
    looked = " or ".join(str(p) for p in candidates(package_dir))
    raise ConfigDirNotFound(
        f"the configs of ssa_experiments are missing (looked for {CONFIG_NAME}.yaml in {looked}): "
        "reinstall the package (its wheel, or pip install -e . in a checkout)"
    )
